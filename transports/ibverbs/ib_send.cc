// The sending half: a send waits for its receive's FIFO entry, matches it by tag, RDMA
// WRITEs the payload, and the group's last send closes it with one WRITE WITH IMM per QP.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "transports/common/requests.h"
#include "transports/ibverbs/ib_channel.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

namespace {
// Below twice this a payload stays on QP 0; above, it is cut into up to qps pieces.
constexpr size_t kMinStripeBytes = 128 * 1024;
}  // namespace

IbSendChannel::IbSendChannel(std::unique_ptr<Endpoint> endpoint, net::Fd side,
                             std::string peer_address)
    : ChannelOver(std::move(endpoint), std::move(side), std::move(peer_address), "receiver") {}

IbSendChannel::~IbSendChannel() {
  close_endpoint();
  for (IbSendRequest& r : requests_)
    if (r.in_use) release(&r.placement);
}

Status IbSendChannel::register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                      std::unique_ptr<MemoryRegion>* out) {
  return register_dmabuf_region(data, size, offset, fd, out);
}

void IbSendChannel::abort(std::string_view reason) { abort_core(reason, "send channel to"); }

void IbSendChannel::collect_poll_fds(std::vector<pollfd>* fds) const { collect_core(fds); }

bool IbSendChannel::has_unfinished() const {
  for (const IbSendRequest& r : requests_)
    if (r.in_use && r.pending_wrs > 0) return true;
  return false;
}

Status IbSendChannel::refuse_send(Status why) {
  fail(why);  // also sends the reason to the receiver, whose receive fails with it
  return failed_;
}

Status IbSendChannel::on_completion(const ibv_wc& wc) {
  int qp = ep_->qp_index(wc.qp_num);
  if (qp < 0) return internal_error("completion for an unknown QPN " + std::to_string(wc.qp_num));
  if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
    if (qp != 0) return internal_error("a receive announcement arrived on queue pair " + std::to_string(qp));
    CIUIC_RETURN_IF_ERROR(fifo_.fifo_arrived(ntohl(wc.imm_data)));
    return ep_->post_recv(qp);
  }
  --sq_used_[qp];
  auto* r = reinterpret_cast<IbSendRequest*>(static_cast<uintptr_t>(wc.wr_id));
  if (r != nullptr) --r->pending_wrs;
  return Status::Ok();
}

Status IbSendChannel::isend(const void* data, size_t size, int tag, MemoryRegion* region,
                            Request** request) {
  *request = nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  CIUIC_RETURN_IF_ERROR(progress_core());
  CIUIC_RETURN_IF_ERROR(common::check_isend(data, size));
  if (peer_closed_) {
    fail(peer_closed_error());
    return failed_;
  }
  IbSendRequest* r = nullptr;
  for (IbSendRequest& candidate : requests_) {
    if (!candidate.in_use) {
      r = &candidate;
      break;
    }
  }
  if (r == nullptr || !fifo_.group_ready()) return Status::Ok();  // call again
  uint64_t g = fifo_.group_seq();
  int slot = static_cast<int>(g % kFifoSlots);
  if (!fifo_.group_loaded()) {
    Status s = fifo_.load_group(ep_->control->fifo[slot]);
    if (!s.ok()) return refuse_send(s.prefix("ibverbs channel to the receiver " + describe()));
  }
  int index = fifo_.match(tag);
  if (index < 0)
    return refuse_send(invalid_argument(
        "ibverbs send to " + describe() + ": tag " + std::to_string(tag) +
        " matches none of receive #" + std::to_string(g) + "'s unfilled buffers (tags " +
        fifo_.tags_left() + ")"));
  const FifoEntry& e = fifo_.entry(index);
  if (size > e.size)
    return refuse_send(invalid_argument(
        "ibverbs send of " + std::to_string(size) + " bytes (tag " + std::to_string(tag) +
        ") to " + describe() + " is larger than the " + std::to_string(e.size) +
        "-byte buffer of receive #" + std::to_string(g)));
  const int qps = static_cast<int>(ep_->qps.size());
  const bool last = fifo_.unused() == 1;
  const size_t max_wr_bytes = ep_->device->port_attr.max_msg_sz > 0
                                  ? ep_->device->port_attr.max_msg_sz
                                  : size_t{1} << 30;
  // Pieces: striped over the QPs when large, each cut to the port's message limit.
  int stripes = 1;
  if (size >= 2 * kMinStripeBytes && qps > 1)
    stripes = static_cast<int>(std::min<size_t>(qps, size / kMinStripeBytes));
  size_t stripe_bytes = size == 0 ? 0 : (size + stripes - 1) / stripes;
  stripe_bytes = (stripe_bytes + 4095) & ~size_t{4095};
  const size_t wr_bytes = max_wr_bytes;
  int need[kMaxQps] = {};
  for (size_t off = 0, k = 0; off < size; ++k) {
    size_t stripe_end = std::min(size, off + stripe_bytes);
    need[k % stripes] += static_cast<int>((stripe_end - off + wr_bytes - 1) / wr_bytes);
    off = stripe_end;
  }
  for (int q = 0; q < qps; ++q) {
    if (last) ++need[q];
    if (need[q] > std::min(ep_->send_depth, kMaxWrsPerSend + 1))
      return invalid_argument("ibverbs send of " + std::to_string(size) + " bytes to " + describe() +
                              " needs more than " + std::to_string(kMaxWrsPerSend) +
                              " work requests: split it (max_message_bytes of the device)");
    if (sq_used_[q] + need[q] > ep_->send_depth) return Status::Ok();  // call again
  }
  const bool use_inline = size > 0 && size <= static_cast<size_t>(ep_->max_inline);
  BufferPlacement placement;
  if (!use_inline) {
    CIUIC_RETURN_IF_ERROR(place(data, size, region, false, &placement)
                              .prefix("ibverbs send to " + describe()));
    if (placement.bounce != nullptr) std::memcpy(placement.bounce->data, data, size);
  }
  *r = IbSendRequest{};
  r->in_use = true;
  r->size = size;
  r->placement = placement;
  const uint64_t wr_id = reinterpret_cast<uintptr_t>(r);
  // Every QP's work requests go in one chain, one ibv_post_send (one doorbell) per QP.
  int chain_length[kMaxQps] = {};
  auto append = [&](int q) -> std::pair<ibv_send_wr*, ibv_sge*> {
    int i = chain_length[q]++;
    ibv_send_wr* wr = &chain_wrs_[q][static_cast<size_t>(i)];
    ibv_sge* sge = &chain_sges_[q][static_cast<size_t>(i)];
    *wr = ibv_send_wr{};
    *sge = ibv_sge{};
    if (i > 0) chain_wrs_[q][static_cast<size_t>(i) - 1].next = wr;
    wr->wr_id = wr_id;
    wr->send_flags = IBV_SEND_SIGNALED;
    return {wr, sge};
  };
  // Payload.
  size_t off = 0;
  for (int k = 0; off < size; ++k) {
    size_t stripe_end = std::min(size, off + stripe_bytes);
    int q = k % stripes;
    while (off < stripe_end) {
      size_t len = std::min(wr_bytes, stripe_end - off);
      auto [wr, sge] = append(q);
      sge->addr = use_inline ? reinterpret_cast<uintptr_t>(data) + off : placement.addr + off;
      sge->length = static_cast<uint32_t>(len);
      sge->lkey = placement.key;
      wr->sg_list = sge;
      wr->num_sge = 1;
      wr->opcode = IBV_WR_RDMA_WRITE;
      if (use_inline) wr->send_flags |= IBV_SEND_INLINE;
      wr->wr.rdma.remote_addr = e.addr + off;
      wr->wr.rdma.rkey = e.rkey;
      off += len;
    }
  }
  SizesRecord& sizes = ep_->control->sizes_staging[slot];
  sizes.size[index] = size;
  int group_count = fifo_.count();
  fifo_.consume(index);
  if (last) {
    // A group of one buffer whose payload is at most one work request on QP 0: that
    // request becomes the WRITE WITH IMM that closes the group on QP 0, its IMM carrying
    // the size (ib_fifo.h), so the message is one work request. Otherwise QP 0's closing
    // IMM carries the sizes record.
    uint32_t sized_imm = 0;
    const bool size_in_imm = group_count == 1 && stripes == 1 && chain_length[0] <= 1 &&
                             close_imm_with_size(g, size, &sized_imm);
    // Every QP's IMM follows its payload.
    for (int q = 0; q < qps; ++q) {
      if (q == 0 && size_in_imm && chain_length[0] == 1) {
        ibv_send_wr* wr = &chain_wrs_[0][0];
        wr->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
        wr->imm_data = htonl(sized_imm);
        continue;
      }
      auto [wr, sge] = append(q);
      wr->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
      wr->wr.rdma.remote_addr = ep_->peer.sizes_addr + static_cast<uint64_t>(slot) * sizeof(SizesRecord);
      wr->wr.rdma.rkey = ep_->peer.sizes_rkey;
      if (q == 0 && size_in_imm) {  // an empty message: a zero-length write with its IMM
        wr->imm_data = htonl(sized_imm);
        continue;
      }
      wr->imm_data = htonl(close_imm(g));
      if (q == 0) {
        size_t bytes = static_cast<size_t>(group_count) * sizeof(uint64_t);
        sge->addr = reinterpret_cast<uintptr_t>(&sizes);
        sge->length = static_cast<uint32_t>(bytes);
        sge->lkey = ep_->control_mr->lkey;
        wr->sg_list = sge;
        wr->num_sge = 1;
        if (bytes <= static_cast<size_t>(ep_->max_inline)) wr->send_flags |= IBV_SEND_INLINE;
      }
    }
  }
  for (int q = 0; q < qps; ++q) {
    if (chain_length[q] == 0) continue;
    CIUIC_RETURN_IF_ERROR(post_send(q, chain_wrs_[q].data(), chain_length[q]));
    r->pending_wrs += chain_length[q];
  }
  *request = r;
  return Status::Ok();
}

Status IbSendChannel::test(Request* request, bool* done, size_t* size) {
  *done = false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto* r = static_cast<IbSendRequest*>(request);
  if (r < requests_.data() || r >= requests_.data() + requests_.size() || !r->in_use)
    return invalid_argument("test() of a request this send channel does not hold");
  if (r->pending_wrs > 0) CIUIC_RETURN_IF_ERROR(progress_core());
  if (!failed_.ok()) return failed_;
  if (r->pending_wrs > 0) return Status::Ok();
  *done = true;
  if (size != nullptr) *size = r->size;
  release(&r->placement);
  r->in_use = false;
  return Status::Ok();
}

#endif

}  // namespace ciuic::transport::ib
