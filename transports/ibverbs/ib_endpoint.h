// One side of a connection's RDMA resources: a completion channel (the descriptor poll()
// sleeps on), one CQ, the reliable-connected QPs, and the registered control block the
// peer writes FIFO entries / sizes into. Built before the handshake (its record goes in
// the handshake), connected to the peer's record after.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "transports/ibverbs/ib_device.h"
#include "transports/ibverbs/ib_wire.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

struct Endpoint {
  std::shared_ptr<Device> device;
  IbParams params;
  ibv_comp_channel* channel = nullptr;
  ibv_cq* cq = nullptr;
  std::vector<ibv_qp*> qps;
  ControlBlock* control = nullptr;
  ibv_mr* control_mr = nullptr;
  uint32_t psn = 0;
  int send_depth = 0;     // work requests each QP's send queue holds
  int recv_depth = 0;     // receive WQEs kept posted on each QP
  int max_inline = 0;     // bytes a work request may carry inline
  ibv_mtu path_mtu = IBV_MTU_1024;
  ConnRecord peer;        // filled by connect_to()

  Endpoint() = default;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;
  ~Endpoint();

  static Status create(std::shared_ptr<Device> device, const IbParams& params, int qp_count,
                       std::unique_ptr<Endpoint>* out);
  void fill_record(ConnRecord* out) const;
  // Posts the receive WQEs and moves every QP through INIT, RTR and RTS toward the peer.
  Status connect_to(const ConnRecord& peer);
  Status post_recv(int qp);
  int qp_index(uint32_t qp_num) const;
  void set_error_state();  // flushes outstanding work (abort)
  std::string describe() const;  // "rxe0:1 QPN 17"
};

#endif

}  // namespace ciuic::transport::ib
