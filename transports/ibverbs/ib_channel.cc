// What both directions of an ibverbs channel share: registration, staging, completion
// polling, the side socket, failure and abort.
#include "transports/ibverbs/ib_channel.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "transports/ibverbs/ib_errors.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

namespace {
// After the peer closed the side socket, requests still unfinished get this long for their
// last completions (an ACK may trail the peer's exit) before they fail.
constexpr int64_t kClosedGraceNs = 200'000'000;
// How often a busy caller's progress reads the completion channel and the side socket.
constexpr int64_t kCheckIntervalNs = 1'000'000;
}  // namespace

// ---- regions ----

IbRegion::IbRegion(std::shared_ptr<Hca> hca, RegistrationCache::Entry* entry, ibv_mr* own, int kind)
    : hca_(std::move(hca)), entry_(entry), own_(own), kind_(kind) {
  if (entry_ != nullptr) {
    start_ = entry_->start;
    length_ = entry_->length;
    lkey_ = entry_->lkey;
    rkey_ = entry_->rkey;
  } else {
    start_ = reinterpret_cast<uintptr_t>(own_->addr);
    length_ = own_->length;
    lkey_ = own_->lkey;
    rkey_ = own_->rkey;
  }
}

IbRegion::~IbRegion() {
  if (entry_ != nullptr) hca_->cache->release(entry_);
  if (own_ != nullptr) hca_->api->dereg_mr(own_);
}

bool IbRegion::contains(const void* data, size_t size) const {
  uintptr_t p = reinterpret_cast<uintptr_t>(data);
  return p >= start_ && p - start_ <= length_ && size <= length_ - (p - start_);
}

// ---- core ----

IbChannelCore::IbChannelCore(std::unique_ptr<Endpoint> endpoint, net::Fd side,
                             std::string peer_address, const char* role)
    : ep_(std::move(endpoint)),
      side_(std::move(side)),
      peer_address_(std::move(peer_address)),
      role_(role),
      device_(ep_->device),
      description_(describe_endpoint()),
      bounce_bytes_(ep_->params.bounce_bytes) {}

IbChannelCore::~IbChannelCore() {
  close_endpoint();
  for (auto& b : bounce_all_) {
    device_->hca->api->dereg_mr(b->mr);
    std::free(b->data);
  }
}

void IbChannelCore::close_endpoint() {
  // QPs and CQ go first, so that nothing still writes into buffers released after this.
  std::lock_guard<std::mutex> lock(mutex_);
  ep_.reset();
}

std::string IbChannelCore::describe_endpoint() const {
  return peer_address_ + " (ibverbs " + ep_->describe() + ", " + std::to_string(ep_->qps.size()) +
         (ep_->qps.size() == 1 ? " QP)" : " QPs)");
}

Status IbChannelCore::peer_closed_error() const {
  return remote_error("connection to " + describe() + " closed by the " + role_ +
                      " (the peer process exited or aborted)");
}

Status IbChannelCore::register_region(void* data, size_t size, int kind,
                                      std::unique_ptr<MemoryRegion>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->reset();
  if (kind != kHostMemory && kind != kCudaMemory)
    return invalid_argument("register_memory: pointer kind " + std::to_string(kind) +
                            " (use register_dmabuf for dmabuf memory)");
  if (data == nullptr && size > 0) return invalid_argument("register_memory of a null buffer");
  RegistrationCache::Entry* entry = nullptr;
  CIUIC_RETURN_IF_ERROR(ep_->device->hca->cache->acquire(data, size, kind, &entry));
  *out = std::make_unique<IbRegion>(ep_->device->hca, entry, nullptr, kind);
  return Status::Ok();
}

Status IbChannelCore::register_dmabuf_region(void* data, size_t size, uint64_t offset, int fd,
                                             std::unique_ptr<MemoryRegion>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->reset();
  const Hca& hca = *ep_->device->hca;
  if (hca.api->reg_dmabuf_mr == nullptr)
    return unsupported("this libibverbs has no ibv_reg_dmabuf_mr (rdma-core >= 34 needed)");
  ibv_mr* mr = hca.api->reg_dmabuf_mr(
      hca.pd, offset, size, reinterpret_cast<uintptr_t>(data), fd,
      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
  if (mr == nullptr)
    return errno_error("ibv_reg_dmabuf_mr of " + std::to_string(size) + " bytes on " + hca.name +
                           " (does the adapter and its driver support dmabuf?)",
                       errno);
  *out = std::make_unique<IbRegion>(ep_->device->hca, nullptr, mr, kDmabufMemory);
  return Status::Ok();
}

Status IbChannelCore::get_bounce(Bounce** out) {
  if (!bounce_free_.empty()) {
    *out = bounce_free_.back();
    bounce_free_.pop_back();
    return Status::Ok();
  }
  auto b = std::make_unique<Bounce>();
  if (posix_memalign(&b->data, 4096, bounce_bytes_) != 0)
    return system_error("out of memory for a " + std::to_string(bounce_bytes_) + "-byte staging buffer");
  const Hca& hca = *ep_->device->hca;
  b->mr = hca.api->reg_mr(hca.pd, b->data, bounce_bytes_,
                          IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  if (b->mr == nullptr) {
    int err = errno;
    std::free(b->data);
    return errno_error("ibv_reg_mr of a staging buffer on " + hca.name + " (ulimit -l too low?)", err);
  }
  *out = b.get();
  bounce_all_.push_back(std::move(b));
  return Status::Ok();
}

Status IbChannelCore::place(const void* data, size_t size, MemoryRegion* region, bool remote,
                            BufferPlacement* out) {
  *out = BufferPlacement{};
  if (size == 0) return Status::Ok();
  auto* r = dynamic_cast<IbRegion*>(region);
  if (r != nullptr && r->contains(data, size)) {
    out->addr = reinterpret_cast<uintptr_t>(data);
    out->key = remote ? r->rkey() : r->lkey();
    return Status::Ok();
  }
  if (size <= bounce_bytes_) {
    CIUIC_RETURN_IF_ERROR(get_bounce(&out->bounce));
    out->addr = reinterpret_cast<uintptr_t>(out->bounce->data);
    out->key = remote ? out->bounce->mr->rkey : out->bounce->mr->lkey;
    return Status::Ok();
  }
  CIUIC_RETURN_IF_ERROR(
      ep_->device->hca->cache->acquire(data, size, kHostMemory, &out->transient));
  out->addr = reinterpret_cast<uintptr_t>(data);
  out->key = remote ? out->transient->rkey : out->transient->lkey;
  return Status::Ok();
}

void IbChannelCore::release(BufferPlacement* p) {
  if (p->bounce != nullptr) bounce_free_.push_back(p->bounce);
  if (p->transient != nullptr) device_->hca->cache->release(p->transient);
  *p = BufferPlacement{};
}

Status IbChannelCore::post_send(int qp, ibv_send_wr* wr, int count) {
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(ep_->qps[static_cast<size_t>(qp)], wr, &bad);
  if (rc != 0) {
    fail(errno_error("ibv_post_send to " + describe(), rc));
    return failed_;
  }
  sq_used_[qp] += count;
  return Status::Ok();
}

void IbChannelCore::fail(Status s) {
  if (!failed_.ok()) return;
  failed_ = std::move(s);
  // Nothing more may land in buffers whose requests now fail.
  ep_->set_error_state();
  if (!aborted_ && side_.valid()) {
    // Tell the peer why, so its pending requests fail with the cause, not a timeout.
    std::string reason = failed_.message().substr(0, kMaxAbortReason);
    uint8_t frame[kSideHeaderBytes + kMaxAbortReason];
    encode_side_header(SideFrame::kAbort, static_cast<uint32_t>(reason.size()), frame);
    std::memcpy(frame + kSideHeaderBytes, reason.data(), reason.size());
    (void)::send(side_.get(), frame, kSideHeaderBytes + reason.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(side_.get(), SHUT_WR);
    aborted_ = true;
  }
}

void IbChannelCore::abort_core(std::string_view reason, const char* what) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (aborted_) return;
  if (failed_.ok()) {
    std::string r(reason.substr(0, kMaxAbortReason));
    // The frame carries the caller's reason, not our wording around it.
    uint8_t frame[kSideHeaderBytes + kMaxAbortReason];
    encode_side_header(SideFrame::kAbort, static_cast<uint32_t>(r.size()), frame);
    std::memcpy(frame + kSideHeaderBytes, r.data(), r.size());
    if (side_.valid()) {
      (void)::send(side_.get(), frame, kSideHeaderBytes + r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::shutdown(side_.get(), SHUT_WR);
    }
    aborted_ = true;
    failed_ = aborted_error(std::string(what) + " " + describe() + " aborted: " + std::string(reason));
    ep_->set_error_state();
  }
  aborted_ = true;
}

Status IbChannelCore::read_side() {
  if (peer_closed_ || !side_.valid()) return Status::Ok();
  while (true) {
    size_t got = 0;
    Status s;
    if (!side_in_reason_) {
      s = net::recv_some(side_.get(), side_header_ + side_header_got_,
                         kSideHeaderBytes - side_header_got_, &got);
      side_header_got_ += got;
    } else {
      s = net::recv_some(side_.get(), side_reason_ + side_reason_got_,
                         side_reason_size_ - side_reason_got_, &got);
      side_reason_got_ += got;
    }
    if (!s.ok()) {
      peer_closed_ = true;
      peer_closed_ns_ = now_ns();
      return Status::Ok();
    }
    if (got == 0 && (side_in_reason_ ? side_reason_got_ < side_reason_size_
                                     : side_header_got_ < kSideHeaderBytes))
      return Status::Ok();  // nothing more now
    if (!side_in_reason_ && side_header_got_ == kSideHeaderBytes) {
      SideFrame type;
      CIUIC_RETURN_IF_ERROR(decode_side_header(side_header_, &type, &side_reason_size_)
                                .prefix(std::string("from the ") + role_ + " " + describe()));
      side_header_got_ = 0;
      if (type == SideFrame::kReady) continue;
      side_in_reason_ = true;
      side_reason_got_ = 0;
    }
    if (side_in_reason_ && side_reason_got_ == side_reason_size_) {
      return remote_error("the " + std::string(role_) + " " + describe() +
                          " aborted the connection: " + std::string(side_reason_, side_reason_got_));
    }
  }
}

Status IbChannelCore::poll_cq(int* handled) {
  ibv_wc wc[16];
  while (true) {
    int n = ibv_poll_cq(ep_->cq, 16, wc);
    if (n < 0) {
      fail(internal_error("ibv_poll_cq failed on " + describe()));
      return failed_;
    }
    for (int i = 0; i < n; ++i) {
      if (wc[i].status != IBV_WC_SUCCESS) {
        int qp = ep_->qp_index(wc[i].qp_num);
        fail(remote_error("ibverbs channel to the " + std::string(role_) + " " + describe() +
                          ": a work request on QPN " + std::to_string(wc[i].qp_num) +
                          (qp >= 0 ? " (queue pair " + std::to_string(qp) + ")" : "") +
                          " failed: " + describe_wc_status(wc[i].status) +
                          " (vendor error " + std::to_string(wc[i].vendor_err) + ")"));
        return failed_;
      }
      Status s = on_completion(wc[i]);
      if (!s.ok()) {
        fail(s.prefix("ibverbs channel to the " + std::string(role_) + " " + describe()));
        return failed_;
      }
    }
    *handled += n;
    if (n < 16) return Status::Ok();
  }
}

Status IbChannelCore::progress_core() {
  if (!failed_.ok()) return failed_;
  int handled = 0;
  CIUIC_RETURN_IF_ERROR(poll_cq(&handled));
  // The completion channel and the side socket cost a system call each, so they are read
  // only when the caller slept in poll() since (collect_poll_fds was called), or the CQ is
  // not armed, or nothing completed for kCheckIntervalNs (a caller that never sleeps still
  // hears of a dead peer). Skipping them never loses a wakeup: an unread event keeps the
  // channel's descriptor readable, and a CQ is disarmed only by an event.
  if (armed_ && !woke_from_poll_ && (handled > 0 || ++idle_polls_ % 64 != 0)) return Status::Ok();
  int64_t now = now_ns();
  if (armed_ && !woke_from_poll_ && (handled > 0 || now - last_check_ns_ < kCheckIntervalNs)) {
    if (peer_closed_ && has_unfinished() && now - peer_closed_ns_ > kClosedGraceNs) {
      fail(peer_closed_error());
      return failed_;
    }
    return Status::Ok();
  }
  last_check_ns_ = now;
  woke_from_poll_ = false;
  const VerbsApi* api = ep_->device->hca->api;
  unsigned events = 0;
  ibv_cq* event_cq = nullptr;
  void* event_context = nullptr;
  while (api->get_cq_event(ep_->channel, &event_cq, &event_context) == 0) ++events;
  if (events > 0) {
    api->ack_cq_events(ep_->cq, events);
    armed_ = false;
  }
  if (!armed_) {
    int rc = ibv_req_notify_cq(ep_->cq, 0);
    if (rc != 0) {
      fail(errno_error("ibv_req_notify_cq on " + describe(), rc));
      return failed_;
    }
    armed_ = true;
    // What completed before the CQ was armed raises no event: collect it now.
    CIUIC_RETURN_IF_ERROR(poll_cq(&handled));
  }
  Status side = read_side();
  if (!side.ok()) {
    aborted_ = true;  // the peer gave up: nothing to tell it
    fail(side);
    return failed_;
  }
  if (peer_closed_ && has_unfinished() && now_ns() - peer_closed_ns_ > kClosedGraceNs) {
    fail(peer_closed_error());
    return failed_;
  }
  return Status::Ok();
}

void IbChannelCore::collect_core(std::vector<pollfd>* fds) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return;
  woke_from_poll_ = true;  // the next progress reads the channel and the side socket
  fds->push_back(pollfd{ep_->channel->fd, POLLIN, 0});
  // After the peer closed, the socket stays readable: the caller comes back within the
  // grace period to fail what is unfinished.
  if (side_.valid() && (!peer_closed_ || has_unfinished()))
    fds->push_back(pollfd{side_.get(), POLLIN, 0});
}

#endif

}  // namespace ciuic::transport::ib
