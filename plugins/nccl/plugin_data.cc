// Registration and the data path: isend / irecv / iflush / test / close.
#include <climits>
#include <cstring>

#include "base/log.h"
#include "plugins/nccl/plugin_comm.h"
#include "plugins/nccl/plugin_core.h"

namespace ciuic::nccl_plugin {
namespace {

DataComm* as_data_comm(void* comm) {
  auto* c = static_cast<DataComm*>(comm);
  if (c == nullptr || (c->magic != kSendMagic && c->magic != kRecvMagic)) return nullptr;
  return c;
}

DataComm* as_comm(void* comm, uint32_t magic) {
  auto* c = static_cast<DataComm*>(comm);
  return c != nullptr && c->magic == magic ? c : nullptr;
}

// Returns the region behind an mhandle (nullptr for a NULL mhandle), or false if the
// pointer is not one of ours.
bool region_of(void* mhandle, transport::MemoryRegion** out) {
  *out = nullptr;
  if (mhandle == nullptr) return true;
  auto* r = static_cast<PluginRegion*>(mhandle);
  if (r->magic != kRegionMagic) return false;
  *out = r->region.get();
  return true;
}

// A failed comm is usually polled for every request it had in flight: warn once, then
// return the code quietly.
ncclResult_t fail(DataComm* comm, const Status& status, const char* operation) {
  if (comm->first_failure()) return report(status, operation);
  return report_quietly(status);
}

Status check_size(size_t size, const char* what) {
  if (size > static_cast<size_t>(INT_MAX))
    return invalid_argument(std::string(what) + " of " + std::to_string(size) +
                            " bytes exceeds the per-transfer limit (maxP2pBytes " +
                            std::to_string(kMaxTransferBytes) + ")");
  return Status::Ok();
}

}  // namespace

ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mhandle) {
  return guarded("regMr", [&] {
    DataComm* c = as_data_comm(comm);
    if (c == nullptr || mhandle == nullptr)
      return report(invalid_argument("not a send/recv comm, or mhandle is NULL"), "regMr");
    *mhandle = nullptr;
    if (type != NCCL_PTR_HOST)
      return report(unsupported("pointer type " + std::to_string(type) +
                                " (GPU memory) cannot be registered: this plugin moves host "
                                "memory only and advertises ptrSupport=HOST, so NCCL should "
                                "stage GPU data through host buffers"),
                    "regMr");
    // The transport allows registration from another thread than the data path's.
    auto region = std::make_unique<PluginRegion>();
    Status s = c->channel()->register_memory(data, size, type, &region->region);
    if (!s.ok()) return report(s, "regMr");
    *mhandle = region.release();
    return ncclSuccess;
  });
}

ncclResult_t dereg_mr(void* comm, void* mhandle) {
  return guarded("deregMr", [&] {
    if (mhandle == nullptr) return ncclSuccess;
    auto* r = static_cast<PluginRegion*>(mhandle);
    if (r->magic != kRegionMagic)
      return report(invalid_argument("not a memory handle (deregistered twice?)"), "deregMr");
    r->magic = kDeadMagic;
    delete r;
    return ncclSuccess;
  });
}

ncclResult_t isend(void* send_comm, void* data, size_t size, int tag, void* mhandle,
                   void** request) {
  return guarded("isend", [&] {
    DataComm* c = as_comm(send_comm, kSendMagic);
    transport::MemoryRegion* region = nullptr;
    if (c == nullptr || request == nullptr || !region_of(mhandle, &region))
      return report(invalid_argument("not a send comm, request is NULL, or bad mhandle"), "isend");
    *request = nullptr;
    if (Status s = check_size(size, "a send"); !s.ok()) return report(s, "isend");
    std::lock_guard<std::mutex> lock(c->mutex());
    PluginRequest* r = c->acquire();
    if (r == nullptr) return ncclSuccess;  // all slots in flight: NCCL retries
    Status s = c->send_channel()->isend(data, size, tag, region, &r->inner);
    if (!s.ok() || r->inner == nullptr) {
      c->release(r);
      return s.ok() ? ncclSuccess : fail(c, s, "isend");
    }
    r->buffers = 1;
    *request = r;
    return ncclSuccess;
  });
}

ncclResult_t irecv(void* recv_comm, int n, void** data, const size_t* sizes, const int* tags,
                   void** mhandles, void** request) {
  return guarded("irecv", [&] {
    DataComm* c = as_comm(recv_comm, kRecvMagic);
    if (c == nullptr || request == nullptr)
      return report(invalid_argument("not a recv comm, or request is NULL"), "irecv");
    // NCCL may have stored NCCL_NET_OPTIONAL_RECV_COMPLETION here: never read, always set.
    *request = nullptr;
    if (n < 1 || n > c->max_recvs() || data == nullptr || sizes == nullptr || tags == nullptr)
      return report(invalid_argument("grouped receive of " + std::to_string(n) +
                                     " buffers (this device takes 1.." +
                                     std::to_string(c->max_recvs()) + ") or NULL arrays"),
                    "irecv");
    transport::MemoryRegion* regions[transport::kMaxGroupedRecvs] = {};
    for (int i = 0; i < n; ++i) {
      if (Status s = check_size(sizes[i], "a receive"); !s.ok()) return report(s, "irecv");
      if (mhandles != nullptr && !region_of(mhandles[i], &regions[i]))
        return report(invalid_argument("mhandle " + std::to_string(i) + " is not ours"), "irecv");
    }
    std::lock_guard<std::mutex> lock(c->mutex());
    PluginRequest* r = c->acquire();
    if (r == nullptr) return ncclSuccess;
    Status s = c->recv_channel()->irecv(n, data, sizes, tags, regions, &r->inner);
    if (!s.ok() || r->inner == nullptr) {
      c->release(r);
      return s.ok() ? ncclSuccess : fail(c, s, "irecv");
    }
    r->buffers = n;
    *request = r;
    return ncclSuccess;
  });
}

ncclResult_t iflush(void* recv_comm, int n, void** data, int* sizes, void** mhandles,
                    void** request) {
  return guarded("iflush", [&] {
    DataComm* c = as_comm(recv_comm, kRecvMagic);
    if (c == nullptr || request == nullptr)
      return report(invalid_argument("not a recv comm, or request is NULL"), "iflush");
    *request = nullptr;  // for iflush, NULL means "nothing to wait for"
    if (n < 1 || n > c->max_recvs() || data == nullptr || sizes == nullptr)
      return report(invalid_argument("flush of " + std::to_string(n) + " buffers"), "iflush");
    size_t wide[transport::kMaxGroupedRecvs] = {};
    transport::MemoryRegion* regions[transport::kMaxGroupedRecvs] = {};
    for (int i = 0; i < n; ++i) {
      wide[i] = sizes[i] < 0 ? 0 : static_cast<size_t>(sizes[i]);
      if (mhandles != nullptr && !region_of(mhandles[i], &regions[i]))
        return report(invalid_argument("mhandle " + std::to_string(i) + " is not ours"), "iflush");
    }
    std::lock_guard<std::mutex> lock(c->mutex());
    PluginRequest* r = c->acquire();
    if (r == nullptr)  // NULL would mean "done" here, so running out is an error
      return report(internal_error("no request slot left for a flush"), "iflush");
    Status s = c->recv_channel()->iflush(n, data, wide, regions, &r->inner);
    if (!s.ok() || r->inner == nullptr) {
      c->release(r);
      return s.ok() ? ncclSuccess : fail(c, s, "iflush");
    }
    r->buffers = n;
    *request = r;
    return ncclSuccess;
  });
}

ncclResult_t test(void* request, int* done, int* sizes) {
  return guarded("test", [&] {
    auto* r = static_cast<PluginRequest*>(request);
    if (r == nullptr || done == nullptr || r->magic != kRequestMagic || !r->in_use)
      return report(invalid_argument("not a live request (already completed or closed?)"), "test");
    *done = 0;
    DataComm* c = r->comm;
    std::lock_guard<std::mutex> lock(c->mutex());
    bool finished = false;
    size_t got[transport::kMaxGroupedRecvs] = {};
    Status s = c->is_send() ? c->send_channel()->test(r->inner, &finished, got)
                            : c->recv_channel()->test(r->inner, &finished, got);
    if (!s.ok()) return fail(c, s, c->is_send() ? "test (send)" : "test (receive)");
    if (!finished) return ncclSuccess;
    if (sizes != nullptr)
      for (int i = 0; i < r->buffers; ++i)
        sizes[i] = got[i] > static_cast<size_t>(INT_MAX) ? INT_MAX : static_cast<int>(got[i]);
    c->release(r);
    *done = 1;
    return ncclSuccess;
  });
}

ncclResult_t close_send(void* send_comm) {
  return guarded("closeSend", [&] {
    if (send_comm == nullptr) return ncclSuccess;
    DataComm* c = as_comm(send_comm, kSendMagic);
    if (c == nullptr)
      return report(invalid_argument("not a send comm (closed twice?)"), "closeSend");
    delete c;
    return ncclSuccess;
  });
}

ncclResult_t close_recv(void* recv_comm) {
  return guarded("closeRecv", [&] {
    if (recv_comm == nullptr) return ncclSuccess;
    DataComm* c = as_comm(recv_comm, kRecvMagic);
    if (c == nullptr)
      return report(invalid_argument("not a recv comm (closed twice?)"), "closeRecv");
    delete c;
    return ncclSuccess;
  });
}

}  // namespace ciuic::nccl_plugin
