// libibverbs, loaded at run time. ciuic does not link libibverbs: dlopen("libibverbs.so.1")
// happens on first use, so the library loads and works (over TCP) where rdma-core is absent,
// and "auto" can say why ibverbs was not taken.
//
// Only exported functions go through this table. The data-path calls of <infiniband/verbs.h>
// (ibv_post_send, ibv_post_recv, ibv_poll_cq, ibv_req_notify_cq) are inline functions that
// call through the context's ops and need no symbol; ibv_reg_mr is a macro onto
// ibv_reg_mr_iova2; ibv_query_port is an inline over the context's query_port op with the
// exported ibv_query_port as its fallback (VerbsApi::query_port does the same).
#pragma once

#if __has_include(<infiniband/verbs.h>)
#include <infiniband/verbs.h>
#define CIUIC_HAVE_VERBS_H 1
#else
#define CIUIC_HAVE_VERBS_H 0
#endif

#include "base/status.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

struct VerbsApi {
  ibv_device** (*get_device_list)(int*) = nullptr;
  void (*free_device_list)(ibv_device**) = nullptr;
  const char* (*get_device_name)(ibv_device*) = nullptr;
  __be64 (*get_device_guid)(ibv_device*) = nullptr;
  ibv_context* (*open_device)(ibv_device*) = nullptr;
  int (*close_device)(ibv_context*) = nullptr;
  int (*query_device)(ibv_context*, ibv_device_attr*) = nullptr;
  int (*query_port_compat)(ibv_context*, uint8_t, ibv_port_attr*) = nullptr;
  int (*query_gid)(ibv_context*, uint8_t, int, ibv_gid*) = nullptr;
  ibv_pd* (*alloc_pd)(ibv_context*) = nullptr;
  int (*dealloc_pd)(ibv_pd*) = nullptr;
  ibv_mr* (*reg_mr_iova2)(ibv_pd*, void*, size_t, uint64_t, unsigned int) = nullptr;
  // Absent before rdma-core 34: dmabuf registration is then not offered.
  ibv_mr* (*reg_dmabuf_mr)(ibv_pd*, uint64_t, size_t, uint64_t, int, int) = nullptr;
  int (*dereg_mr)(ibv_mr*) = nullptr;
  ibv_comp_channel* (*create_comp_channel)(ibv_context*) = nullptr;
  int (*destroy_comp_channel)(ibv_comp_channel*) = nullptr;
  ibv_cq* (*create_cq)(ibv_context*, int, void*, ibv_comp_channel*, int) = nullptr;
  int (*destroy_cq)(ibv_cq*) = nullptr;
  int (*get_cq_event)(ibv_comp_channel*, ibv_cq**, void**) = nullptr;
  void (*ack_cq_events)(ibv_cq*, unsigned int) = nullptr;
  ibv_qp* (*create_qp)(ibv_pd*, ibv_qp_init_attr*) = nullptr;
  int (*modify_qp)(ibv_qp*, ibv_qp_attr*, int) = nullptr;
  int (*destroy_qp)(ibv_qp*) = nullptr;
  int (*fork_init)() = nullptr;

  // ibv_query_port as the header's inline does it, without the symbol.
  int query_port(ibv_context* context, uint8_t port, ibv_port_attr* out) const;
  ibv_mr* reg_mr(ibv_pd* pd, void* addr, size_t length, unsigned int access) const {
    return reg_mr_iova2(pd, addr, length, reinterpret_cast<uintptr_t>(addr), access);
  }
};

#else
struct VerbsApi {};
#endif

// The loaded table, or an error that says why there is none ("libibverbs.so.1 not found:
// install rdma-core (libibverbs1)"). Loads once; thread-safe. ibv_fork_init() runs right
// after loading when CIUIC_IB_FORK_INIT is on (before any registration, as it requires).
Status verbs_api(const VerbsApi** out);

}  // namespace ciuic::transport::ib
