// The sending half: records enter the ring in posting order. A message up to the eager
// size (or any message on a copy channel) is copied in, in pieces as the ring frees up,
// and is done once all of it is in; a larger message on a CMA channel puts its header in
// and is done when the receiver has read it (done_seq passes it).
#include <algorithm>
#include <bit>

#include "transports/shm/shm_channel.h"

namespace ciuic::transport::shm {
namespace {

// Head is published at least this often while a large message streams in, so the
// receiver copies out while the sender still copies in.
constexpr uint64_t kPublishBytes = 64 * 1024;

}  // namespace

ShmSendChannel::ShmSendChannel(ChannelSetup setup)
    : ChannelOver(std::move(setup), /*is_sender=*/true),
      eager_bytes_(configured_eager_bytes()),
      free_mask_(kMaxRequests >= 32 ? ~0u : (1u << kMaxRequests) - 1) {}

void ShmSendChannel::fail(Status s) {
  if (!failed_.ok()) return;
  failed_ = std::move(s);
  send_abort(failed_.message());
}

void ShmSendChannel::abort(std::string_view reason) { abort_channel(reason); }

bool ShmSendChannel::waiting_on_receiver() const {
  return !write_queue_.empty() || !awaiting_read_.empty();
}

void ShmSendChannel::collect_poll_fds(std::vector<pollfd>* fds) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return;
  // The socket hears the receiver's ABORT or close (once: an ended stream stays readable).
  if (!peer_gone_ && !receiver_closed_) fds->push_back(pollfd{socket_.get(), POLLIN, 0});
  if (pidfd_.valid() && !peer_exited_) fds->push_back(pollfd{pidfd_.get(), POLLIN, 0});
  slept_ = true;
  if (!waiting_on_receiver()) return;
  announce_sleep();
  fds->push_back(pollfd{my_bell_.get(), POLLIN, 0});
  // Look again after announcing: what the receiver freed or read before it could see
  // the flag would otherwise never ring.
  const bool freed =
      !write_queue_.empty() && ctl()->tail.load(std::memory_order_seq_cst) != tail_seen_;
  const bool read = !awaiting_read_.empty() &&
                    ctl()->done_seq.load(std::memory_order_seq_cst) > awaiting_read_.front()->seq;
  if (freed || read) ring_doorbell(my_bell_.get());
}

Status ShmSendChannel::isend(const void* data, size_t size, int tag, MemoryRegion*,
                             Request** request) {
  *request = nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return failed_;
  CIUIC_RETURN_IF_ERROR(common::check_isend(data, size));
  if (receiver_closed_) return receiver_gone_error();
  if (outstanding_ >= kMaxRequests) return Status::Ok();  // caller retries after a test()
  const int index = std::countr_zero(free_mask_);
  free_mask_ &= ~(1u << index);
  SendRequest* r = &pool_[static_cast<size_t>(index)];
  r->data = static_cast<const uint8_t*>(data);
  r->size = size;
  r->tag = tag;
  r->seq = next_seq_++;
  r->cma = path_ == Path::kCma && size > eager_bytes_;
  r->written = 0;
  r->wire_done = false;
  r->reported = false;
  write_queue_.push_back(r);
  ++outstanding_;
  *request = r;
  Status s = progress();
  if (!s.ok()) *request = nullptr;  // it stays with the failed channel and dies with it
  return s;
}

Status ShmSendChannel::test(Request* request, bool* done, size_t* size) {
  *done = false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto* r = static_cast<SendRequest*>(request);
  if (failed_.ok() && !r->wire_done) (void)progress();
  if (r->wire_done && !r->reported) {
    *done = true;
    if (size != nullptr) *size = r->size;
    r->reported = true;
    --outstanding_;
    free_mask_ |= 1u << (r - pool_.data());
    return Status::Ok();
  }
  return failed_.ok() ? Status::Ok() : failed_;
}

Status ShmSendChannel::progress() {
  if (!failed_.ok()) return failed_;
  end_sleep();
  // An abort or close of the receiver shows in its state at once; its reason (on the
  // socket) is read then.
  const bool receiver_left = peer_state() != kLive;
  bool moved = false;
  bool blocked = false;
  if (!receiver_left) push(&moved, &blocked);
  moved |= reap_reads();
  if (!failed_.ok()) return failed_;  // push() found the ring corrupt
  Status s = receiver_left || !moved ? check_receiver() : Status::Ok();
  if (!s.ok()) fail(s);
  return failed_;
}

void ShmSendChannel::push(bool* moved, bool* blocked) {
  const uint64_t capacity = segment_->ring_bytes();
  uint64_t published = head_;
  auto publish = [&] {
    ctl()->head.store(head_, std::memory_order_seq_cst);
    published = head_;
    wake_peer();
  };
  while (!write_queue_.empty()) {
    SendRequest* r = write_queue_.front();
    const uint64_t record = kLine + (r->cma ? 0 : round_up_line(r->size));
    while (r->written < record) {
      const uint64_t need = r->written == 0 ? kLine : 1;
      uint64_t room = capacity - (head_ - tail_seen_);
      if (room < need) {
        tail_seen_ = ctl()->tail.load(std::memory_order_acquire);
        if (head_ - tail_seen_ > capacity) {
          failed_ =
              internal_error("the shm ring to " + describe() + " is corrupt (head " +
                             std::to_string(head_) + ", tail " + std::to_string(tail_seen_) + ")");
          send_abort(failed_.message());
          return;
        }
        room = capacity - (head_ - tail_seen_);
        if (room < need) {
          *blocked = true;
          if (head_ != published) publish();
          return;
        }
      }
      if (r->written == 0) {
        RingHeader h{};
        h.marker_type = kRingMarker | static_cast<uint32_t>(r->cma ? RecordType::kRingCma
                                                                   : RecordType::kRingData);
        h.tag = r->tag;
        h.size = r->size;
        h.seq = r->seq;
        h.address = r->cma ? reinterpret_cast<uint64_t>(r->data) : 0;
        segment_->write(head_, &h, kLine);
        head_ += kLine;
        r->written = kLine;
      } else {
        const uint64_t offset = r->written - kLine;
        const uint64_t n = std::min({room, record - r->written, kPublishBytes});
        if (offset < r->size)
          segment_->write(head_, r->data + offset,
                          static_cast<size_t>(std::min(n, r->size - offset)));
        head_ += n;  // the bytes past the payload are padding: skipped, not written
        r->written += n;
        if (head_ - published >= kPublishBytes) publish();
      }
      *moved = true;
    }
    write_queue_.pop_front();
    if (r->cma) {
      awaiting_read_.push_back(r);
    } else {
      r->wire_done = true;
    }
  }
  if (head_ != published) publish();
}

bool ShmSendChannel::reap_reads() {
  if (awaiting_read_.empty()) return false;
  const uint64_t done = ctl()->done_seq.load(std::memory_order_acquire);
  bool any = false;
  while (!awaiting_read_.empty() && awaiting_read_.front()->seq < done) {
    awaiting_read_.front()->wire_done = true;
    awaiting_read_.pop_front();
    any = true;
  }
  return any;
}

Status ShmSendChannel::check_receiver() {
  CIUIC_RETURN_IF_ERROR(watch_peer(/*force=*/peer_state() != kLive));
  if (peer_aborted())
    return remote_error("the receiver " + describe() + " aborted the connection: " + peer_reason());
  if (peer_state() == kAborted)
    return remote_error("the receiver " + describe() + " aborted the connection");
  if (peer_gone_ || peer_state() == kClosed) {
    // A receiver that leaves after taking everything sent so far is no error yet (it
    // finished); a message still on its way, or a later one, is.
    if (has_pending()) return receiver_gone_error();
    receiver_closed_ = true;
  }
  return Status::Ok();
}

Status ShmSendChannel::receiver_gone_error() const {
  const SendRequest* r = !awaiting_read_.empty() ? awaiting_read_.front()
                         : !write_queue_.empty() ? write_queue_.front()
                                                 : nullptr;
  if (r != nullptr)
    return remote_error("connection to " + describe() + " lost during a " +
                        std::to_string(r->size) + "-byte send: " + gone_text());
  return remote_error("connection to " + describe() + " lost: " + gone_text());
}

}  // namespace ciuic::transport::shm
