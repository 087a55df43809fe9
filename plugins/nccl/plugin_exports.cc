// The tables NCCL looks up by name: ncclNetPlugin_v11 (NCCL 2.28+), _v10 (2.26-2.27),
// _v9 (2.24-2.25) and _v8 (2.20-2.23). Each NCCL takes the newest it knows. Every table
// points at the one core (plugin_core.h); the adapters here only convert arguments.
//
// Members left NULL on purpose: regMrDmaBuf (ptrSupport has no DMABUF), getDeviceMr and
// irecvConsumed (host plugin, no device-side networking), makeVDevice (no NIC fusion),
// setNetAttr (no use for the hints yet).
#include "plugins/nccl/nccl_net_abi.h"
#include "plugins/nccl/plugin_core.h"
#include "transports/transport.h"

namespace ciuic::nccl_plugin {
namespace {

constexpr const char* kPluginName = "ciuic";

// ---- v11 (NCCL 2.28): per-communicator context ----
ncclResult_t init_v11(void** ctx, uint64_t comm_id, ncclNetCommConfig_v11_t* config,
                      ncclDebugLogger_t logger, ncclProfilerCallback_t) {
  return init_context(ctx, comm_id,
                      config != nullptr ? config->trafficClass : NCCL_NET_TRAFFIC_CLASS_UNDEF,
                      logger);
}
ncclResult_t connect_v11(void* ctx, int dev, void* handle, void** send_comm,
                         ncclNetDeviceHandle_v11_t**) {
  return connect(ctx, dev, handle, send_comm);
}
ncclResult_t accept_v11(void* listen_comm, void** recv_comm, ncclNetDeviceHandle_v11_t**) {
  return accept(listen_comm, recv_comm);
}
ncclResult_t isend_v11(void* comm, void* data, size_t size, int tag, void* mhandle, void*,
                       void** request) {
  return isend(comm, data, size, tag, mhandle, request);
}
ncclResult_t irecv_v11(void* comm, int n, void** data, size_t* sizes, int* tags, void** mhandles,
                       void**, void** request) {
  return irecv(comm, n, data, sizes, tags, mhandles, request);
}

// ---- before 2.28: init once, no context (the core's shared one) ----
ncclResult_t init_v8(ncclDebugLogger_t logger) { return init_legacy(logger); }
ncclResult_t init_v10(ncclDebugLogger_t logger, ncclProfilerCallback_t) {
  return init_legacy(logger);
}
ncclResult_t listen_legacy(int dev, void* handle, void** listen_comm) {
  return listen(nullptr, dev, handle, listen_comm);
}
ncclResult_t connect_legacy(int dev, void* handle, void** send_comm, ncclNetDeviceHandle_v8_t**) {
  return connect(nullptr, dev, handle, send_comm);
}
ncclResult_t connect_v10(int dev, ncclNetCommConfig_v10_t*, void* handle, void** send_comm,
                         ncclNetDeviceHandle_v10_t**) {
  return connect(nullptr, dev, handle, send_comm);
}
ncclResult_t isend_v9(void* comm, void* data, size_t size, int tag, void* mhandle, void** request) {
  return isend(comm, data, size, tag, mhandle, request);
}
ncclResult_t irecv_v9(void* comm, int n, void** data, size_t* sizes, int* tags, void** mhandles,
                      void** request) {
  return irecv(comm, n, data, sizes, tags, mhandles, request);
}

// v8 sizes are int.
ncclResult_t isend_v8(void* comm, void* data, int size, int tag, void* mhandle, void** request) {
  return guarded("isend", [&] {
    if (size >= 0) return isend(comm, data, static_cast<size_t>(size), tag, mhandle, request);
    if (request != nullptr) *request = nullptr;
    return report(invalid_argument("negative send size " + std::to_string(size)), "isend");
  });
}
ncclResult_t irecv_v8(void* comm, int n, void** data, int* sizes, int* tags, void** mhandles,
                      void** request) {
  return guarded("irecv", [&] {
    if (request != nullptr) *request = nullptr;
    if (n < 1 || n > transport::kMaxGroupedRecvs || sizes == nullptr)
      return report(invalid_argument("grouped receive of " + std::to_string(n) +
                                     " buffers, or sizes is NULL"),
                    "irecv");
    size_t wide[transport::kMaxGroupedRecvs];
    for (int i = 0; i < n; ++i) {
      if (sizes[i] < 0)
        return report(invalid_argument("negative receive size " + std::to_string(sizes[i])),
                      "irecv");
      wide[i] = static_cast<size_t>(sizes[i]);
    }
    return irecv(comm, n, data, wide, tags, mhandles, request);
  });
}

// Older property structs are filled from the v11 one, field by field.
ncclResult_t get_properties_v9(int dev, ncclNetProperties_v9_t* props) {
  ncclNetProperties_v11_t full;
  ncclResult_t result = get_properties(dev, &full);
  if (result != ncclSuccess || props == nullptr) return result;
  props->name = full.name;
  props->pciPath = full.pciPath;
  props->guid = full.guid;
  props->ptrSupport = full.ptrSupport;
  props->regIsGlobal = full.regIsGlobal;
  props->forceFlush = full.forceFlush;
  props->speed = full.speed;
  props->port = full.port;
  props->latency = full.latency;
  props->maxComms = full.maxComms;
  props->maxRecvs = full.maxRecvs;
  props->netDeviceType = full.netDeviceType;
  props->netDeviceVersion = full.netDeviceVersion;
  props->vProps = full.vProps;
  props->maxP2pBytes = full.maxP2pBytes;
  props->maxCollBytes = full.maxCollBytes;
  return ncclSuccess;
}

ncclResult_t get_properties_v8(int dev, ncclNetProperties_v8_t* props) {
  ncclNetProperties_v11_t full;
  ncclResult_t result = get_properties(dev, &full);
  if (result != ncclSuccess || props == nullptr) return result;
  props->name = full.name;
  props->pciPath = full.pciPath;
  props->guid = full.guid;
  props->ptrSupport = full.ptrSupport;
  props->regIsGlobal = full.regIsGlobal;
  props->speed = full.speed;
  props->port = full.port;
  props->latency = full.latency;
  props->maxComms = full.maxComms;
  props->maxRecvs = full.maxRecvs;
  props->netDeviceType = full.netDeviceType;
  props->netDeviceVersion = full.netDeviceVersion;
  return ncclSuccess;
}

}  // namespace
}  // namespace ciuic::nccl_plugin

namespace plugin = ciuic::nccl_plugin;

extern "C" {

__attribute__((visibility("default"))) extern const ncclNet_v11_t ncclNetPlugin_v11;
__attribute__((visibility("default"))) extern const ncclNet_v10_t ncclNetPlugin_v10;
__attribute__((visibility("default"))) extern const ncclNet_v9_t ncclNetPlugin_v9;
__attribute__((visibility("default"))) extern const ncclNet_v8_t ncclNetPlugin_v8;

const ncclNet_v11_t ncclNetPlugin_v11 = {
    .name = plugin::kPluginName,
    .init = plugin::init_v11,
    .devices = plugin::devices,
    .getProperties = plugin::get_properties,
    .listen = plugin::listen,
    .connect = plugin::connect_v11,
    .accept = plugin::accept_v11,
    .regMr = plugin::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = plugin::dereg_mr,
    .isend = plugin::isend_v11,
    .irecv = plugin::irecv_v11,
    .iflush = plugin::iflush,
    .test = plugin::test,
    .closeSend = plugin::close_send,
    .closeRecv = plugin::close_recv,
    .closeListen = plugin::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
    .makeVDevice = nullptr,
    .finalize = plugin::finalize_context,
    .setNetAttr = nullptr,
};

const ncclNet_v10_t ncclNetPlugin_v10 = {
    .name = plugin::kPluginName,
    .init = plugin::init_v10,
    .devices = plugin::devices,
    .getProperties = plugin::get_properties_v9,
    .listen = plugin::listen_legacy,
    .connect = plugin::connect_v10,
    .accept = plugin::accept_v11,
    .regMr = plugin::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = plugin::dereg_mr,
    .isend = plugin::isend_v11,
    .irecv = plugin::irecv_v11,
    .iflush = plugin::iflush,
    .test = plugin::test,
    .closeSend = plugin::close_send,
    .closeRecv = plugin::close_recv,
    .closeListen = plugin::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
    .makeVDevice = nullptr,
};

const ncclNet_v9_t ncclNetPlugin_v9 = {
    .name = plugin::kPluginName,
    .init = plugin::init_v8,
    .devices = plugin::devices,
    .getProperties = plugin::get_properties_v9,
    .listen = plugin::listen_legacy,
    .connect = plugin::connect_legacy,
    .accept = plugin::accept_v11,
    .regMr = plugin::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = plugin::dereg_mr,
    .isend = plugin::isend_v9,
    .irecv = plugin::irecv_v9,
    .iflush = plugin::iflush,
    .test = plugin::test,
    .closeSend = plugin::close_send,
    .closeRecv = plugin::close_recv,
    .closeListen = plugin::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
    .makeVDevice = nullptr,
};

const ncclNet_v8_t ncclNetPlugin_v8 = {
    .name = plugin::kPluginName,
    .init = plugin::init_v8,
    .devices = plugin::devices,
    .getProperties = plugin::get_properties_v8,
    .listen = plugin::listen_legacy,
    .connect = plugin::connect_legacy,
    .accept = plugin::accept_v11,
    .regMr = plugin::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = plugin::dereg_mr,
    .isend = plugin::isend_v8,
    .irecv = plugin::irecv_v8,
    .iflush = plugin::iflush,
    .test = plugin::test,
    .closeSend = plugin::close_send,
    .closeRecv = plugin::close_recv,
    .closeListen = plugin::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
};

}  // extern "C"
