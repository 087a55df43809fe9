// The receiving half: takes each record's header from the ring, matches the message to
// the oldest grouped receive by tag, then copies its payload out of the ring or reads it
// from the sender's buffer with process_vm_readv, straight into the caller's buffer.
#include <sys/uio.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "transports/shm/shm_channel.h"

namespace ciuic::transport::shm {
namespace {

// Tail is published at least this often while a large message streams out, so the
// sender refills the ring while the receiver still copies.
constexpr uint64_t kPublishBytes = 64 * 1024;
// One process_vm_readv reads at most this much; abort() is heard between pieces.
constexpr uint64_t kCmaPieceBytes = 8 * 1024 * 1024;

}  // namespace

ShmRecvChannel::ShmRecvChannel(ChannelSetup setup)
    : ChannelOver(std::move(setup), /*is_sender=*/false),
      free_mask_(kMaxRequests >= 32 ? ~0u : (1u << kMaxRequests) - 1) {
  posted_.reserve(kMaxRequests);
}

void ShmRecvChannel::fail(Status s) {
  if (!failed_.ok()) return;
  failed_ = std::move(s);
  // Tell the sender why (a size or tag mismatch is its business too) rather than let it
  // wait on a ring nobody empties.
  send_abort(failed_.message());
}

void ShmRecvChannel::abort(std::string_view reason) { abort_channel(reason); }

RecvRequest* ShmRecvChannel::first_unmatched() const {
  for (RecvRequest* r : posted_) {
    if (r->needs_message()) return r;
  }
  return nullptr;
}

bool ShmRecvChannel::can_progress() const { return in_message_ || first_unmatched() != nullptr; }

void ShmRecvChannel::collect_poll_fds(std::vector<pollfd>* fds) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return;
  if (!peer_gone_) fds->push_back(pollfd{socket_.get(), POLLIN, 0});
  if (pidfd_.valid() && !peer_exited_) fds->push_back(pollfd{pidfd_.get(), POLLIN, 0});
  slept_ = true;
  announce_sleep();
  fds->push_back(pollfd{my_bell_.get(), POLLIN, 0});
  // Look again after announcing: what the sender published before it could see the
  // flag would otherwise never ring.
  if (can_progress() && ctl()->head.load(std::memory_order_seq_cst) != head_seen_)
    ring_doorbell(my_bell_.get());
}

Status ShmRecvChannel::irecv(int n, void* const* data, const size_t* sizes, const int* tags,
                             MemoryRegion* const*, Request** request) {
  *request = nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return failed_;
  CIUIC_RETURN_IF_ERROR(common::check_irecv(n, data, sizes));
  if (static_cast<int>(posted_.size()) >= kMaxRequests) return Status::Ok();
  const int index = std::countr_zero(free_mask_);
  free_mask_ &= ~(1u << index);
  RecvRequest* r = &pool_[static_cast<size_t>(index)];
  r->post(n, data, sizes, tags);
  posted_.push_back(r);
  *request = r;
  (void)progress();  // a held header may match now; a failure is kept for test()
  return Status::Ok();
}

Status ShmRecvChannel::test(Request* request, bool* done, size_t* sizes) {
  *done = false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto* r = static_cast<RecvRequest*>(request);
  if (failed_.ok() && !r->complete()) (void)progress();
  if (r->complete()) {
    *done = true;
    r->report(sizes);
    auto it = std::find(posted_.begin(), posted_.end(), r);
    if (it != posted_.end()) {
      posted_.erase(it);
      free_mask_ |= 1u << (r - pool_.data());
    }
    return Status::Ok();
  }
  return failed_.ok() ? Status::Ok() : failed_;
}

Status ShmRecvChannel::progress() {
  if (!failed_.ok()) return failed_;
  // Idle (no half-taken message, the sender live and nothing new published): only the
  // paced peer watch has anything to do. This is every call of a spinning test().
  if (!in_message_ && !announced_ && head_seen_ - tail_ < kLine && peer_state() == kLive &&
      ctl()->head.load(std::memory_order_acquire) == head_seen_) {
    Status s = watch_peer(/*force=*/false);
    if (!s.ok()) {
      fail(std::move(s));
      return failed_;
    }
    if (!peer_aborted() && !peer_gone_) return Status::Ok();
  }
  end_sleep();
  const uint64_t tail_before = tail_;
  bool any = false;
  Status s;
  // The sender's abort shows in its state at once; its reason is on the socket.
  if (peer_state() == kAborted) s = watch_peer(/*force=*/true);
  for (bool moved = true; s.ok() && moved && !peer_aborted();) {
    moved = false;
    s = step(&moved);
    any |= moved;
  }
  if (tail_ != tail_before && failed_.ok()) {
    ctl()->tail.store(tail_, std::memory_order_seq_cst);
    wake_peer();
  }
  if (s.ok() && !any) s = watch_peer(/*force=*/false);
  if (s.ok() && peer_aborted())
    s = remote_error("the sender " + describe() + " aborted the connection: " + peer_reason());
  if (s.ok() && peer_gone_ && can_progress()) {
    // Whatever the sender published before it went is still delivered; only a receive
    // that needs more than that fails.
    head_seen_ = ctl()->head.load(std::memory_order_acquire);
    bool moved = true;
    while (s.ok() && moved) {
      moved = false;
      s = step(&moved);
    }
    if (s.ok() && can_progress()) s = sender_gone_error();
  }
  if (!s.ok()) fail(s);
  return failed_;
}

Status ShmRecvChannel::step(bool* moved) {
  if (!in_message_) return take_header(moved);
  if (header_.marker_type == (kRingMarker | static_cast<uint32_t>(RecordType::kRingCma)))
    return read_cma(moved);
  return copy_payload(moved);
}

Status ShmRecvChannel::take_header(bool* moved) {
  const uint64_t capacity = segment_->ring_bytes();
  if (head_seen_ - tail_ < kLine) {
    head_seen_ = ctl()->head.load(std::memory_order_acquire);
    if (head_seen_ - tail_ > capacity)
      return internal_error("the shm ring from " + describe() + " is corrupt (head " +
                            std::to_string(head_seen_) + ", tail " + std::to_string(tail_) + ")");
    if (head_seen_ - tail_ < kLine) return Status::Ok();
  }
  RecvRequest* r = first_unmatched();
  if (r == nullptr) return Status::Ok();  // no receive posted: the message waits in the ring
  RingHeader h;
  segment_->read(tail_, &h, kLine);
  const uint32_t type = h.marker_type & 0xffffu;
  if ((h.marker_type & 0xffff0000u) != kRingMarker ||
      (type != static_cast<uint32_t>(RecordType::kRingData) &&
       type != static_cast<uint32_t>(RecordType::kRingCma)) ||
      h.seq != expected_seq_)
    return internal_error("the shm ring from " + describe() + " is out of step: expected message " +
                          std::to_string(expected_seq_) + ", found record 0x" +
                          [&] {
                            char hex[9];
                            std::snprintf(hex, sizeof(hex), "%08x", h.marker_type);
                            return std::string(hex);
                          }() +
                          " numbered " + std::to_string(h.seq));
  if (type == static_cast<uint32_t>(RecordType::kRingCma) && path_ != Path::kCma)
    return internal_error("a CMA record from " + describe() + " on a channel without CMA");
  int slot = -1;
  // describe() builds a string: only for the error, not on every message.
  if (!r->try_match(h.tag, h.size, &slot))
    CIUIC_RETURN_IF_ERROR(r->match(h.tag, h.size, describe(), &slot));
  header_ = h;
  target_ = r;
  slot_ = slot;
  got_ = 0;
  in_message_ = true;
  tail_ += kLine;
  ++expected_seq_;
  *moved = true;
  if (type == static_cast<uint32_t>(RecordType::kRingData) && h.size == 0) finish_message();
  return Status::Ok();
}

Status ShmRecvChannel::copy_payload(bool* moved) {
  const uint64_t span = round_up_line(header_.size);
  while (got_ < span) {
    uint64_t available = head_seen_ - tail_;
    if (available == 0) {
      head_seen_ = ctl()->head.load(std::memory_order_acquire);
      available = head_seen_ - tail_;
      if (available > segment_->ring_bytes())
        return internal_error("the shm ring from " + describe() + " is corrupt");
      if (available == 0) return Status::Ok();
    }
    const uint64_t n = std::min({available, span - got_, kPublishBytes});
    if (got_ < header_.size)
      segment_->read(tail_, target_->data[slot_] + got_,
                     static_cast<size_t>(std::min(n, header_.size - got_)));
    tail_ += n;
    got_ += n;
    *moved = true;
    if (got_ < span && n == kPublishBytes) {
      ctl()->tail.store(tail_, std::memory_order_seq_cst);
      wake_peer();
    }
  }
  finish_message();
  return Status::Ok();
}

Status ShmRecvChannel::read_cma(bool* moved) {
  uint8_t* dst = target_->data[slot_];
  while (got_ < header_.size) {
    if (abort_requested_.load(std::memory_order_relaxed)) return Status::Ok();
    const uint64_t n = std::min(header_.size - got_, kCmaPieceBytes);
    iovec local{dst + got_, static_cast<size_t>(n)};
    iovec remote{reinterpret_cast<void*>(header_.address + got_), static_cast<size_t>(n)};
    ssize_t r = ::process_vm_readv(peer_pid_, &local, 1, &remote, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = r < 0 ? errno : EFAULT;
      CIUIC_RETURN_IF_ERROR(watch_peer(/*force=*/true));
      if (peer_aborted() || peer_gone_ || peer_state() != kLive || err == ESRCH)
        return sender_gone_error();
      return errno_error("process_vm_readv of " + std::to_string(n) + " bytes at offset " +
                             std::to_string(got_) + " of a " + std::to_string(header_.size) +
                             "-byte message from " + describe(),
                         err);
    }
    got_ += static_cast<uint64_t>(r);
    *moved = true;
  }
  // The bytes came from the sender's buffer: they are its message only if the sender still
  // owned that buffer when they were read. A sender that aborted, closed or died since it
  // posted the send may have freed it (or its pid may have gone to another process).
  CIUIC_RETURN_IF_ERROR(watch_peer(/*force=*/true));
  if (peer_aborted() || peer_gone_ || peer_state() != kLive) return sender_gone_error();
  const uint64_t seq = header_.seq;
  finish_message();
  ctl()->done_seq.store(seq + 1, std::memory_order_seq_cst);
  wake_peer();
  return Status::Ok();
}

void ShmRecvChannel::finish_message() {
  target_->received[slot_] = header_.size;
  ++target_->completed;
  in_message_ = false;
  target_ = nullptr;
}

Status ShmRecvChannel::sender_gone_error() {
  if (peer_aborted())
    return remote_error("the sender " + describe() + " aborted the connection: " + peer_reason());
  if (peer_state() == kAborted)
    return remote_error("the sender " + describe() + " aborted the connection");
  if (in_message_)
    return remote_error("connection to " + describe() + " lost during a " +
                        std::to_string(header_.size) + "-byte receive: " + gone_text());
  return remote_error("connection to " + describe() +
                      " lost with a receive posted: " + gone_text());
}

}  // namespace ciuic::transport::shm
