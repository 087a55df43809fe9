// The receiving half: a receive announces its buffers in the sender's FIFO and completes
// once every QP delivered the IMM that closes its group.
#include <arpa/inet.h>

#include <cstring>

#include "base/config.h"
#include "transports/common/requests.h"
#include "transports/ibverbs/ib_channel.h"
#include "transports/ibverbs/ib_errors.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

IbRecvChannel::IbRecvChannel(std::unique_ptr<Endpoint> endpoint, net::Fd side,
                             std::string peer_address)
    : ChannelOver(std::move(endpoint), std::move(side), std::move(peer_address), "sender"),
      imms_(static_cast<int>(ep_->qps.size())) {}

IbRecvChannel::~IbRecvChannel() {
  flush_ep_.reset();
  close_endpoint();
  for (IbRecvRequest& r : requests_)
    if (r.in_use && !r.done)
      for (int i = 0; i < r.n; ++i) release(&r.placement[i]);
}

Status IbRecvChannel::register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                      std::unique_ptr<MemoryRegion>* out) {
  return register_dmabuf_region(data, size, offset, fd, out);
}

void IbRecvChannel::abort(std::string_view reason) { abort_core(reason, "receive channel from"); }

void IbRecvChannel::collect_poll_fds(std::vector<pollfd>* fds) const {
  collect_core(fds);
  std::lock_guard<std::mutex> lock(mutex_);
  if (flush_ep_ == nullptr || !failed_.ok()) return;
  for (const IbFlushRequest& f : flushes_) {
    if (f.in_use && !f.done) {
      fds->push_back(pollfd{flush_ep_->channel->fd, POLLIN, 0});
      return;
    }
  }
}

bool IbRecvChannel::has_unfinished() const { return completed_seq_ < posted_seq_; }

Status IbRecvChannel::on_completion(const ibv_wc& wc) {
  int qp = ep_->qp_index(wc.qp_num);
  if (qp < 0) return internal_error("completion for an unknown QPN " + std::to_string(wc.qp_num));
  if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
    ClosedGroup closed;
    CIUIC_RETURN_IF_ERROR(imms_.arrived(qp, ntohl(wc.imm_data), &closed));
    if (closed.has_size) {
      if (qp != 0)
        return internal_error("a size arrived in an IMM on queue pair " + std::to_string(qp) +
                              " (only queue pair 0 carries sizes)");
      const size_t slot = static_cast<size_t>(closed.seq % kFifoSlots);
      size_in_imm_[slot] = true;
      imm_size_[slot] = closed.size;
    }
    return ep_->post_recv(qp);
  }
  --sq_used_[qp];  // a FIFO write left
  return Status::Ok();
}

Status IbRecvChannel::finish_ready() {
  while (completed_seq_ < posted_seq_ && imms_.complete(completed_seq_)) {
    int slot = static_cast<int>(completed_seq_ % kFifoSlots);
    IbRecvRequest* r = by_slot_[slot];
    const SizesRecord& sizes = ep_->control->sizes[slot];
    // A group of one buffer may have its size in the closing IMM instead of the record.
    const bool size_in_imm = size_in_imm_[slot];
    size_in_imm_[slot] = false;
    if (size_in_imm && r->n != 1)
      return internal_error("receive #" + std::to_string(r->seq) + " of " + std::to_string(r->n) +
                            " buffers was closed with a single size in its IMM: the peer is out of step");
    for (int i = 0; i < r->n; ++i) {
      uint64_t got = size_in_imm ? imm_size_[slot] : sizes.size[i];
      if (got > r->capacity[i])
        return internal_error("receive #" + std::to_string(r->seq) + ": the sender reports " +
                              std::to_string(got) + " bytes in a " + std::to_string(r->capacity[i]) +
                              "-byte buffer");
      r->received[i] = got;
      if (r->placement[i].bounce != nullptr && got > 0)
        std::memcpy(r->data[i], r->placement[i].bounce->data, got);
      release(&r->placement[i]);
    }
    r->done = true;
    by_slot_[slot] = nullptr;
    ++completed_seq_;
  }
  return Status::Ok();
}

Status IbRecvChannel::irecv(int n, void* const* data, const size_t* sizes, const int* tags,
                            MemoryRegion* const* regions, Request** request) {
  *request = nullptr;
  CIUIC_RETURN_IF_ERROR(common::check_irecv(n, data, sizes));
  std::lock_guard<std::mutex> lock(mutex_);
  CIUIC_RETURN_IF_ERROR(progress_core());
  Status finished = finish_ready();
  if (!finished.ok()) {
    fail(finished.prefix("ibverbs channel from the sender " + describe()));
    return failed_;
  }
  if (peer_closed_) {
    fail(peer_closed_error());
    return failed_;
  }
  if (posted_seq_ - completed_seq_ >= kFifoSlots || sq_used_[0] >= ep_->send_depth)
    return Status::Ok();  // call again
  IbRecvRequest* r = nullptr;
  for (IbRecvRequest& candidate : requests_) {
    if (!candidate.in_use) {
      r = &candidate;
      break;
    }
  }
  if (r == nullptr) return Status::Ok();
  *r = IbRecvRequest{};
  r->seq = posted_seq_;
  r->n = n;
  int slot = static_cast<int>(r->seq % kFifoSlots);
  FifoEntry* entries = ep_->control->fifo_staging[slot];
  for (int i = 0; i < n; ++i) {
    r->data[i] = data[i];
    r->capacity[i] = sizes[i];
    Status s = place(data[i], sizes[i], regions ? regions[i] : nullptr, true, &r->placement[i]);
    if (!s.ok()) {
      for (int k = 0; k < i; ++k) release(&r->placement[k]);
      return s.prefix("ibverbs receive from " + describe());
    }
    entries[i] = FifoEntry{r->placement[i].addr, sizes[i],  r->placement[i].key,
                           tags[i],              static_cast<uint32_t>(r->seq),
                           static_cast<uint16_t>(n), static_cast<uint16_t>(i)};
  }
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(entries);
  sge.length = static_cast<uint32_t>(n * sizeof(FifoEntry));
  sge.lkey = ep_->control_mr->lkey;
  ibv_send_wr wr{};
  wr.wr_id = 0;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
  wr.imm_data = htonl(static_cast<uint32_t>(r->seq));
  wr.send_flags = IBV_SEND_SIGNALED;
  if (sge.length <= static_cast<uint32_t>(ep_->max_inline)) wr.send_flags |= IBV_SEND_INLINE;
  wr.wr.rdma.remote_addr = ep_->peer.fifo_addr + static_cast<uint64_t>(slot) * sizeof(ep_->control->fifo[0]);
  wr.wr.rdma.rkey = ep_->peer.fifo_rkey;
  Status s = post_send(0, &wr);
  if (!s.ok()) {
    for (int i = 0; i < n; ++i) release(&r->placement[i]);
    return s;
  }
  r->in_use = true;
  by_slot_[slot] = r;
  ++posted_seq_;
  *request = r;
  return Status::Ok();
}

namespace {
const config::BoolParam kFlushHost{
    "CIUIC_IB_FLUSH_HOST", false,
    "ibverbs: iflush reads through the loopback QP for host buffers too (host memory needs "
    "no flush; this exercises the GPUDirect flush path where no GPU is present)"};
}  // namespace

Status IbRecvChannel::iflush(int n, void* const* data, const size_t* sizes,
                             MemoryRegion* const* regions, Request** request) {
  *request = nullptr;
  // Host memory needs no flush: the adapter's writes are visible once the IMM completed.
  // Writes into GPU memory may still sit in the PCIe path: an RDMA READ of the last buffer
  // through a loopback QP (the adapter orders it after those writes) makes them visible.
  const bool flush_host = kFlushHost.get();
  int last = -1;
  for (int i = 0; i < n; ++i) {
    auto* r = dynamic_cast<IbRegion*>(regions ? regions[i] : nullptr);
    if (r != nullptr && sizes[i] > 0 && (r->kind() != kHostMemory || flush_host) &&
        r->contains(data[i], 1))
      last = i;
  }
  if (last < 0) return Status::Ok();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return failed_;
  if (flush_ep_ == nullptr) {
    std::unique_ptr<Endpoint> ep;
    CIUIC_RETURN_IF_ERROR(Endpoint::create(device_, ep_->params, 1, &ep)
                              .prefix("ibverbs flush queue pair"));
    ConnRecord self;
    ep->fill_record(&self);
    CIUIC_RETURN_IF_ERROR(ep->connect_to(self).prefix("ibverbs flush queue pair to itself"));
    flush_ep_ = std::move(ep);
  }
  IbFlushRequest* f = nullptr;
  for (IbFlushRequest& candidate : flushes_) {
    if (!candidate.in_use) {
      f = &candidate;
      break;
    }
  }
  if (f == nullptr) return Status::Ok();  // call again
  auto* region = static_cast<IbRegion*>(regions[last]);
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(&flush_ep_->control->sizes_staging[0]);
  sge.length = 1;
  sge.lkey = flush_ep_->control_mr->lkey;
  ibv_send_wr wr{};
  wr.wr_id = reinterpret_cast<uintptr_t>(f);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_READ;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = reinterpret_cast<uintptr_t>(data[last]);
  wr.wr.rdma.rkey = region->rkey();
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(flush_ep_->qps[0], &wr, &bad);
  if (rc != 0) return errno_error("ibv_post_send of a flush READ on " + describe(), rc);
  *f = IbFlushRequest{};
  f->in_use = true;
  *request = f;
  return Status::Ok();
}

Status IbRecvChannel::flush_progress() {
  // Events are drained and the CQ re-armed first, so that a caller sleeping on the flush
  // channel's descriptor wakes for the READ's completion.
  const VerbsApi* api = device_->hca->api;
  unsigned events = 0;
  ibv_cq* event_cq = nullptr;
  void* event_context = nullptr;
  while (api->get_cq_event(flush_ep_->channel, &event_cq, &event_context) == 0) ++events;
  if (events > 0) api->ack_cq_events(flush_ep_->cq, events);
  int rc = ibv_req_notify_cq(flush_ep_->cq, 0);
  if (rc != 0) return errno_error("ibv_req_notify_cq on the flush queue pair", rc);
  ibv_wc wc[8];
  while (true) {
    int n = ibv_poll_cq(flush_ep_->cq, 8, wc);
    if (n < 0) return internal_error("ibv_poll_cq failed on the flush queue pair");
    for (int i = 0; i < n; ++i) {
      if (wc[i].status != IBV_WC_SUCCESS)
        return remote_error("ibverbs flush READ on " + describe() + " failed: " +
                            describe_wc_status(wc[i].status));
      if (wc[i].opcode == IBV_WC_RDMA_READ)
        reinterpret_cast<IbFlushRequest*>(static_cast<uintptr_t>(wc[i].wr_id))->done = true;
    }
    if (n < 8) return Status::Ok();
  }
}

Status IbRecvChannel::test_flush(IbFlushRequest* f, bool* done) {
  if (!failed_.ok()) return failed_;
  if (!f->done) {
    Status s = flush_progress();
    if (!s.ok()) {
      fail(s);
      return failed_;
    }
  }
  if (!f->done) return Status::Ok();
  *done = true;
  f->in_use = false;
  return Status::Ok();
}

Status IbRecvChannel::test(Request* request, bool* done, size_t* sizes) {
  *done = false;
  std::lock_guard<std::mutex> lock(mutex_);
  for (IbFlushRequest& f : flushes_)
    if (static_cast<Request*>(&f) == request && f.in_use) return test_flush(&f, done);
  auto* r = static_cast<IbRecvRequest*>(request);
  if (r < requests_.data() || r >= requests_.data() + requests_.size() || !r->in_use)
    return invalid_argument("test() of a request this receive channel does not hold");
  if (!r->done) {
    CIUIC_RETURN_IF_ERROR(progress_core());
    Status s = finish_ready();
    if (!s.ok()) {
      fail(s.prefix("ibverbs channel from the sender " + describe()));
      return failed_;
    }
  }
  if (!failed_.ok()) return failed_;
  if (!r->done) return Status::Ok();
  *done = true;
  if (sizes != nullptr)
    for (int i = 0; i < r->n; ++i) sizes[i] = r->received[i];
  r->in_use = false;
  return Status::Ok();
}

#endif

}  // namespace ciuic::transport::ib
