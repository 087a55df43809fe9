// The sending half: messages leave in posting order; each stripe writes its segments of
// consecutive messages with one gathering sendmsg (header and payload straight from the
// caller's buffer), as far as the socket takes without blocking.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "transports/tcp/tcp_channel.h"

namespace ciuic::transport::tcp {
namespace {

constexpr int kMaxIov = 64;

}  // namespace

TcpSendChannel::TcpSendChannel(std::vector<net::Fd> stripes, std::string peer,
                               uint64_t min_stripe_bytes, bool pieces_off_stripe0)
    : ChannelOver(std::move(stripes), std::move(peer), min_stripe_bytes, pieces_off_stripe0,
                  StripeWorkers::Direction::kSend, configured_threads()) {}

TcpSendChannel::~TcpSendChannel() {
  if (workers_) workers_->stop_and_join();
}

void TcpSendChannel::abort(std::string_view reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (shut_down_) return;
  if (failed_.ok())
    failed_ = aborted_error("send channel to " + describe() + " aborted: " + std::string(reason));
  const Deadline room_until = Deadline::after_ms(kAbortFrameWaitMs);
  if (finish_stripe0_message(room_until)) {
    send_abort_and_shutdown(reason, room_until);
  } else {
    shutdown_all();
  }
}

bool TcpSendChannel::finish_stripe0_message(const Deadline& room_until) {
  const uint64_t seq = std::max(cursor_[0], base_seq_);
  if (seq >= end_seq()) return true;
  const SendRequest* r = at(seq);
  const uint64_t segment = r->segment(0);
  uint64_t done = r->sent[0];
  if (done == 0 || done == segment) return true;
  // What is left here is a header, a small message, or (without I/O threads) the rest of a
  // piece: bounded either way by room_until, which a receiver that reads meets at once.
  // The rest of this message only (not the messages behind it), and the channel's
  // bookkeeping stays as it was: every request of an aborted channel fails.
  const int fd = stripes_[0].get();
  if (done < kFrameHeaderBytes &&
      !net::send_all(fd, r->header + done, kFrameHeaderBytes - done, room_until,
                     kAbortFrameWaitMs, "a frame header").ok())
    return false;
  const uint64_t off = done > kFrameHeaderBytes ? done - kFrameHeaderBytes : 0;
  return net::send_all(fd, r->data + r->layout.offset(0) + off, segment - kFrameHeaderBytes - off,
                       room_until, kAbortFrameWaitMs, "a message")
      .ok();
}

void TcpSendChannel::collect_poll_fds(std::vector<pollfd>* fds) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return;
  if (workers_) fds->push_back(pollfd{workers_->completion_fd(), POLLIN, 0});
  for (int s = 0; s < caller_stripes(); ++s) {
    // Stripe 0 also hears the receiver's ABORT or close (once: a closed end stays readable).
    short events = s == 0 && !receiver_closed_ ? POLLIN : 0;
    for (uint64_t q = std::max(cursor_[s], base_seq_); q < end_seq(); ++q) {
      if (at(q)->sent[s] < at(q)->segment(s)) {
        events |= POLLOUT;
        break;
      }
    }
    if (events != 0) fds->push_back(pollfd{stripes_[s].get(), events, 0});
  }
}

Status TcpSendChannel::isend(const void* data, size_t size, int tag, MemoryRegion*,
                             Request** request) {
  *request = nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return failed_;
  CIUIC_RETURN_IF_ERROR(common::check_isend(data, size));
  if (receiver_closed_) return peer_gone("closed");
  if (outstanding_ >= kMaxRequests) return Status::Ok();  // caller retries after a test()
  auto r = std::make_unique<SendRequest>();
  r->data = static_cast<const uint8_t*>(data);
  r->size = size;
  encode_frame({FrameType::kData, tag, size}, r->header);
  r->layout = layout_of(size);
  for (int s = 0; s < stripe_count(); ++s) r->stripes_left += r->segment(s) > 0 ? 1 : 0;
  // Pieces 1.. go to the I/O threads now; stripe 0 (header and piece 0) leaves below.
  if (workers_) {
    for (int s = std::max(1, r->layout.first); s < r->layout.end(); ++s) {
      if (r->layout.length(s) == 0) continue;
      workers_->submit(s, PieceJob{const_cast<uint8_t*>(r->data) + r->layout.offset(s),
                                   r->layout.length(s), r->size, &r->stripes_left});
    }
  }
  *request = r.get();
  queue_.push_back(std::move(r));
  ++outstanding_;
  // Start at once: small messages usually leave here. Then look whether the receiver
  // failed or left (after, so that the look costs the message no latency). A failure is
  // kept for test().
  if (failed_.ok()) (void)progress();
  Status peer = failed_.ok() ? check_peer() : Status::Ok();
  if (!peer.ok() && failed_.ok()) {
    failed_ = peer;
    shutdown_all();
  }
  // Sent into a connection the receiver had already given up: that send failed too.
  if (!peer.ok()) {
    *request = nullptr;  // it stays queued with the failed channel and dies with it
    return peer;
  }
  return Status::Ok();
}

Status TcpSendChannel::test(Request* request, bool* done, size_t* size) {
  *done = false;
  std::lock_guard<std::mutex> lock(mutex_);
  auto* r = static_cast<SendRequest*>(request);
  if (failed_.ok() && r->stripes_left > 0) (void)progress();
  if (r->stripes_left == 0 && !r->reported) {
    *done = true;
    if (size != nullptr) *size = r->size;
    r->reported = true;
    --outstanding_;
    while (!queue_.empty() && queue_.front()->reported) {
      queue_.pop_front();
      ++base_seq_;
    }
    return Status::Ok();
  }
  return failed_;
}

Status TcpSendChannel::progress() {
  Status s;
  bool stalled = false;
  for (int stripe = 0; s.ok() && stripe < caller_stripes(); ++stripe) {
    bool moved = false;
    s = push_stripe(stripe, &moved);
  }
  WorkerFailure f;
  if (s.ok() && reap_workers(&f)) {
    if (f.error == EPIPE || f.error == ECONNRESET || f.error == 0) {
      // The receiver may have said why before it went: prefer its reason.
      Status why = check_peer();
      s = why.ok() ? peer_gone(f.error == ECONNRESET ? "reset" : "closed") : why;
    } else {
      s = net::connection_error("send to " + describe() + " (socket " + std::to_string(f.stripe) + ")",
                      f.error);
    }
  }
  for (uint64_t q = base_seq_; q < end_seq() && !stalled; ++q) stalled = at(q)->stripes_left > 0;
  // While a send cannot leave, look for the receiver's ABORT or close (isend looks too);
  // polling a send that left whole costs no recv(), and sendmsg reports a closed peer.
  if (s.ok() && stalled) s = check_peer();
  if (!s.ok() && failed_.ok()) {
    failed_ = s;
    shutdown_all();  // the peer sees the end instead of waiting on a stream that stopped
  }
  return failed_;
}

Status TcpSendChannel::check_peer() {
  bool complete = false;
  bool closed = false;
  CIUIC_RETURN_IF_ERROR(read_abort_frame(&complete, &closed));
  if (complete)
    return remote_error("the receiver " + describe() + " aborted the connection: " +
                        peer_abort_.reason());
  if (closed) {
    // A receiver that closes after taking everything sent so far is not an error yet
    // (it finished and left); a message still on its way, or a later one, is.
    for (uint64_t q = base_seq_; q < end_seq(); ++q)
      if (at(q)->stripes_left > 0) return peer_gone("closed");
    receiver_closed_ = true;
  }
  return Status::Ok();
}

Status TcpSendChannel::peer_gone(const char* how) {
  for (uint64_t q = base_seq_; q < end_seq(); ++q) {
    if (at(q)->stripes_left > 0)
      return remote_error("connection to " + describe() + " " + how + " by the peer during a " +
                          std::to_string(at(q)->size) +
                          "-byte send (the peer process exited or aborted)");
  }
  return remote_error("connection to " + describe() + " " + how +
                      " by the peer (the peer process exited or closed its receive channel)");
}

Status TcpSendChannel::push_stripe(int stripe, bool* moved) {
  int fd = stripes_[stripe].get();
  // A cursor resting on a message with nothing for this stripe may fall behind the
  // queue's front once that message is reported and freed.
  cursor_[stripe] = std::max(cursor_[stripe], base_seq_);
  for (;;) {
    iovec iov[kMaxIov];
    int count = 0;
    for (uint64_t q = cursor_[stripe]; q < end_seq() && count + 2 <= kMaxIov; ++q) {
      SendRequest* r = at(q);
      uint64_t done = r->sent[stripe];
      uint64_t prefix = stripe == 0 ? kFrameHeaderBytes : 0;
      if (done < prefix) iov[count++] = {r->header + done, prefix - done};
      uint64_t off = done > prefix ? done - prefix : 0;
      uint64_t piece = r->layout.length(stripe);
      if (off < piece) {
        iov[count++] = {const_cast<uint8_t*>(r->data) + r->layout.offset(stripe) + off,
                        static_cast<size_t>(piece - off)};
      }
    }
    if (count == 0) return Status::Ok();
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Ok();
      if (errno == EPIPE || errno == ECONNRESET) {
        // The receiver may have said why before it went: prefer its reason.
        Status why = check_peer();
        return why.ok() ? peer_gone(errno == EPIPE ? "closed" : "reset") : why;
      }
      return net::connection_error("send to " + describe(), errno);
    }
    *moved = true;
    uint64_t left = static_cast<uint64_t>(n);
    while (cursor_[stripe] < end_seq()) {
      SendRequest* r = at(cursor_[stripe]);
      uint64_t take = std::min(left, r->segment(stripe) - r->sent[stripe]);
      r->sent[stripe] += take;
      left -= take;
      if (r->sent[stripe] < r->segment(stripe)) break;
      if (r->segment(stripe) > 0) --r->stripes_left;
      ++cursor_[stripe];
    }
  }
}

}  // namespace ciuic::transport::tcp
