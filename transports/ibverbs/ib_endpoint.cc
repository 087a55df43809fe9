#include "transports/ibverbs/ib_endpoint.h"

#include <fcntl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/net.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

namespace {
constexpr int kSendDepth = 1024;
constexpr int kRecvDepth = 2 * kFifoSlots;
constexpr int kWantedInline = 256;
}  // namespace

Endpoint::~Endpoint() {
  const VerbsApi* api = device ? device->hca->api : nullptr;
  if (api == nullptr) return;
  for (ibv_qp* qp : qps)
    if (qp != nullptr) api->destroy_qp(qp);
  if (cq != nullptr) api->destroy_cq(cq);
  if (channel != nullptr) api->destroy_comp_channel(channel);
  if (control_mr != nullptr) api->dereg_mr(control_mr);
  std::free(control);
}

Status Endpoint::create(std::shared_ptr<Device> device, const IbParams& params, int qp_count,
                        std::unique_ptr<Endpoint>* out) {
  auto ep = std::make_unique<Endpoint>();
  ep->device = device;
  ep->params = params;
  const VerbsApi* api = device->hca->api;
  const std::string where = "ibverbs on " + device->hca->name;
  int max_wr = device->hca->attr.max_qp_wr > 0 ? device->hca->attr.max_qp_wr : kSendDepth;
  ep->send_depth = std::min(kSendDepth, max_wr);
  ep->recv_depth = std::min(kRecvDepth, max_wr);
  ep->channel = api->create_comp_channel(device->hca->context);
  if (ep->channel == nullptr) return errno_error(where + ": ibv_create_comp_channel", errno);
  CIUIC_RETURN_IF_ERROR(net::set_nonblocking(ep->channel->fd));
  int cqe = qp_count * (ep->send_depth + ep->recv_depth);
  if (device->hca->attr.max_cqe > 0) cqe = std::min(cqe, device->hca->attr.max_cqe);
  ep->cq = api->create_cq(device->hca->context, cqe, nullptr, ep->channel, 0);
  if (ep->cq == nullptr) return errno_error(where + ": ibv_create_cq of " + std::to_string(cqe), errno);
  void* block = nullptr;
  if (posix_memalign(&block, 4096, sizeof(ControlBlock)) != 0)
    return system_error(where + ": out of memory for the control block");
  std::memset(block, 0, sizeof(ControlBlock));
  ep->control = static_cast<ControlBlock*>(block);
  ep->control_mr = api->reg_mr(device->hca->pd, block, sizeof(ControlBlock),
                               IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  if (ep->control_mr == nullptr)
    return errno_error(where + ": ibv_reg_mr of the control block (ulimit -l too low?)", errno);
  int inline_bytes = kWantedInline;
  for (int i = 0; i < qp_count; ++i) {
    ibv_qp* qp = nullptr;
    while (true) {
      ibv_qp_init_attr init{};
      init.send_cq = ep->cq;
      init.recv_cq = ep->cq;
      init.qp_type = IBV_QPT_RC;
      init.cap.max_send_wr = static_cast<uint32_t>(ep->send_depth);
      init.cap.max_recv_wr = static_cast<uint32_t>(ep->recv_depth);
      init.cap.max_send_sge = 1;
      init.cap.max_recv_sge = 1;
      init.cap.max_inline_data = static_cast<uint32_t>(inline_bytes);
      qp = api->create_qp(device->hca->pd, &init);
      if (qp != nullptr) {
        inline_bytes = static_cast<int>(init.cap.max_inline_data);
        break;
      }
      if (inline_bytes == 0) return errno_error(where + ": ibv_create_qp", errno);
      inline_bytes = inline_bytes > 64 ? 64 : 0;  // some adapters take less inline data
    }
    ep->qps.push_back(qp);
  }
  ep->max_inline = inline_bytes;
  uint32_t psn = 0;
  net::random_bytes(&psn, sizeof(psn));
  ep->psn = psn & 0xffffff;
  *out = std::move(ep);
  return Status::Ok();
}

void Endpoint::fill_record(ConnRecord* out) const {
  *out = ConnRecord{};
  out->qp_count = static_cast<uint8_t>(qps.size());
  out->link_layer = device->port_attr.link_layer;
  out->mtu = static_cast<uint8_t>(device->port_attr.active_mtu);
  out->gid_index = static_cast<uint8_t>(device->gid_index);
  out->lid = device->port_attr.lid;
  out->psn = psn;
  std::memcpy(out->gid, device->gid, 16);
  for (size_t i = 0; i < qps.size(); ++i) out->qpn[i] = qps[i]->qp_num;
  out->fifo_addr = reinterpret_cast<uintptr_t>(&control->fifo[0][0]);
  out->fifo_rkey = control_mr->rkey;
  out->sizes_addr = reinterpret_cast<uintptr_t>(&control->sizes[0]);
  out->sizes_rkey = control_mr->rkey;
}

Status Endpoint::post_recv(int qp) {
  ibv_recv_wr wr{};
  wr.wr_id = static_cast<uint64_t>(qp);
  wr.num_sge = 0;  // RDMA WRITE WITH IMM consumes a WQE but places no data through it
  ibv_recv_wr* bad = nullptr;
  int rc = ibv_post_recv(qps[static_cast<size_t>(qp)], &wr, &bad);
  if (rc != 0) return errno_error("ibv_post_recv on " + describe(), rc);
  return Status::Ok();
}

Status Endpoint::connect_to(const ConnRecord& p) {
  peer = p;
  const VerbsApi* api = device->hca->api;
  if (p.qp_count != qps.size())
    return invalid_argument("the peer has " + std::to_string(p.qp_count) + " queue pairs, this side " +
                            std::to_string(qps.size()));
  if ((p.link_layer == IBV_LINK_LAYER_ETHERNET) != device->is_ethernet())
    return invalid_argument("the peer's port is " +
                            std::string(p.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand") +
                            ", this side's is not: check CIUIC_IB_HCA on both sides");
  path_mtu = static_cast<ibv_mtu>(std::min<int>(p.mtu, device->port_attr.active_mtu));
  for (size_t i = 0; i < qps.size(); ++i) {
    std::string which = describe() + " (queue pair " + std::to_string(i) + ")";
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = 0;
    a.port_num = static_cast<uint8_t>(device->port);
    a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    int rc = api->modify_qp(qps[i], &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc != 0) return errno_error(which + ": to INIT", rc);
    // Receive WQEs may be posted from INIT on; they must be there before the peer's first IMM.
    for (int k = 0; k < recv_depth; ++k) CIUIC_RETURN_IF_ERROR(post_recv(static_cast<int>(i)));
    a = ibv_qp_attr{};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = path_mtu;
    a.dest_qp_num = p.qpn[i];
    a.rq_psn = p.psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12;
    a.ah_attr.port_num = static_cast<uint8_t>(device->port);
    a.ah_attr.sl = static_cast<uint8_t>(params.service_level);
    if (device->is_ethernet()) {
      a.ah_attr.is_global = 1;
      std::memcpy(a.ah_attr.grh.dgid.raw, p.gid, 16);
      a.ah_attr.grh.sgid_index = static_cast<uint8_t>(device->gid_index);
      a.ah_attr.grh.hop_limit = 255;
      a.ah_attr.grh.traffic_class = static_cast<uint8_t>(params.traffic_class);
    } else {
      a.ah_attr.dlid = p.lid;
    }
    rc = api->modify_qp(qps[i], &a,
                        IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                            IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc != 0)
      return errno_error(which + ": to RTR toward QPN " + std::to_string(p.qpn[i]) +
                             " (wrong GID index? set CIUIC_IB_GID_INDEX)", rc);
    a = ibv_qp_attr{};
    a.qp_state = IBV_QPS_RTS;
    a.timeout = static_cast<uint8_t>(params.timeout);
    a.retry_cnt = static_cast<uint8_t>(params.retry_count);
    a.rnr_retry = 7;  // receive WQEs are always replenished; 7 = retry forever
    a.sq_psn = psn;
    a.max_rd_atomic = 1;
    rc = api->modify_qp(qps[i], &a,
                        IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                            IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc != 0) return errno_error(which + ": to RTS", rc);
  }
  return Status::Ok();
}

int Endpoint::qp_index(uint32_t qp_num) const {
  for (size_t i = 0; i < qps.size(); ++i)
    if (qps[i]->qp_num == qp_num) return static_cast<int>(i);
  return -1;
}

void Endpoint::set_error_state() {
  for (ibv_qp* qp : qps) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_ERR;
    device->hca->api->modify_qp(qp, &a, IBV_QP_STATE);
  }
}

std::string Endpoint::describe() const {
  std::string out = device->hca->name + ":" + std::to_string(device->port);
  if (!qps.empty()) out += " QPN " + std::to_string(qps[0]->qp_num);
  if (peer.qp_count > 0) out += " -> peer QPN " + std::to_string(peer.qpn[0]);
  return out;
}

#endif

}  // namespace ciuic::transport::ib
