#include "transports/ibverbs/verbs_api.h"

#include <dlfcn.h>

#include <cstring>
#include <mutex>
#include <string>

#include "base/config.h"
#include "base/log.h"

namespace ciuic::transport::ib {
namespace {

const config::BoolParam kForkInit{
    "CIUIC_IB_FORK_INIT", true,
    "ibverbs: call ibv_fork_init() when libibverbs is loaded, so that fork() after "
    "registering memory does not corrupt it (costs a madvise per registration on old kernels)"};

#if CIUIC_HAVE_VERBS_H

template <typename Fn>
bool resolve(void* lib, const char* name, Fn* out, std::string* missing) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    if (missing != nullptr) *missing += std::string(missing->empty() ? "" : ", ") + name;
    return false;
  }
  *out = reinterpret_cast<Fn>(sym);
  return true;
}

Status load(VerbsApi* api) {
  void* lib = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    return unsupported(std::string("cannot load libibverbs.so.1 (") + (err ? err : "not found") +
                       "): install rdma-core's libibverbs1 and a provider package "
                       "(ibverbs-providers) to use RDMA");
  }
  std::string missing;
  resolve(lib, "ibv_get_device_list", &api->get_device_list, &missing);
  resolve(lib, "ibv_free_device_list", &api->free_device_list, &missing);
  resolve(lib, "ibv_get_device_name", &api->get_device_name, &missing);
  resolve(lib, "ibv_get_device_guid", &api->get_device_guid, &missing);
  resolve(lib, "ibv_open_device", &api->open_device, &missing);
  resolve(lib, "ibv_close_device", &api->close_device, &missing);
  resolve(lib, "ibv_query_device", &api->query_device, &missing);
  resolve(lib, "ibv_query_port", &api->query_port_compat, &missing);
  resolve(lib, "ibv_query_gid", &api->query_gid, &missing);
  resolve(lib, "ibv_alloc_pd", &api->alloc_pd, &missing);
  resolve(lib, "ibv_dealloc_pd", &api->dealloc_pd, &missing);
  resolve(lib, "ibv_reg_mr_iova2", &api->reg_mr_iova2, &missing);
  resolve(lib, "ibv_dereg_mr", &api->dereg_mr, &missing);
  resolve(lib, "ibv_create_comp_channel", &api->create_comp_channel, &missing);
  resolve(lib, "ibv_destroy_comp_channel", &api->destroy_comp_channel, &missing);
  resolve(lib, "ibv_create_cq", &api->create_cq, &missing);
  resolve(lib, "ibv_destroy_cq", &api->destroy_cq, &missing);
  resolve(lib, "ibv_get_cq_event", &api->get_cq_event, &missing);
  resolve(lib, "ibv_ack_cq_events", &api->ack_cq_events, &missing);
  resolve(lib, "ibv_create_qp", &api->create_qp, &missing);
  resolve(lib, "ibv_modify_qp", &api->modify_qp, &missing);
  resolve(lib, "ibv_destroy_qp", &api->destroy_qp, &missing);
  resolve(lib, "ibv_fork_init", &api->fork_init, &missing);
  resolve(lib, "ibv_reg_dmabuf_mr", &api->reg_dmabuf_mr, nullptr);  // optional
  if (!missing.empty()) {
    // The library stays loaded: unloading a half-initialised provider is not worth the risk.
    return unsupported("libibverbs.so.1 lacks " + missing +
                       " (rdma-core older than 22?): update rdma-core");
  }
  if (kForkInit.get() && api->fork_init() != 0)
    CIUIC_LOG_WARN(log::kNet, "ibv_fork_init() failed: fork() after registering memory is unsafe");
  return Status::Ok();
}

#endif

}  // namespace

#if CIUIC_HAVE_VERBS_H
int VerbsApi::query_port(ibv_context* context, uint8_t port, ibv_port_attr* out) const {
  verbs_context* vctx = verbs_get_ctx_op(context, query_port);
  if (vctx == nullptr) {
    std::memset(out, 0, sizeof(*out));
    return query_port_compat(context, port, out);
  }
  return vctx->query_port(context, port, out, sizeof(*out));
}
#endif

Status verbs_api(const VerbsApi** out) {
  *out = nullptr;
#if CIUIC_HAVE_VERBS_H
  static VerbsApi api;
  static Status loaded;
  static std::once_flag once;
  std::call_once(once, [] { loaded = load(&api); });
  if (!loaded.ok()) return loaded;
  *out = &api;
  return Status::Ok();
#else
  return unsupported("this ciuic was built without <infiniband/verbs.h> (install "
                     "libibverbs-dev and rebuild to use RDMA)");
#endif
}

}  // namespace ciuic::transport::ib
