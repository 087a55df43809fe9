// The receiving half: stripe 0 reads each frame header, matches the message to the
// oldest grouped receive by tag, and reads its first piece; the other stripes read their
// pieces of the messages whose headers are known, straight into the caller's buffers.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "transports/tcp/tcp_channel.h"

namespace ciuic::transport::tcp {

TcpRecvChannel::TcpRecvChannel(std::vector<net::Fd> stripes, std::string peer,
                               uint64_t min_stripe_bytes, bool pieces_off_stripe0)
    : ChannelOver(std::move(stripes), std::move(peer), min_stripe_bytes, pieces_off_stripe0,
                  StripeWorkers::Direction::kReceive, configured_threads()) {}

TcpRecvChannel::~TcpRecvChannel() {
  if (workers_) workers_->stop_and_join();
}

void TcpRecvChannel::abort(std::string_view reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_.ok())
    failed_ = aborted_error("receive channel from " + describe() + " aborted: " + std::string(reason));
  // Nothing else travels back on stripe 0, so the frame always starts on a boundary and
  // finds the socket empty: no wait.
  send_abort_and_shutdown(reason, Deadline::after_ms(0));
}

void TcpRecvChannel::collect_poll_fds(std::vector<pollfd>* fds) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return;
  bool holding_header = stripe0_ == Stripe0::kHeader && header_got_ == kFrameHeaderBytes;
  if (!holding_header && !stripe0_ended_) fds->push_back(pollfd{stripes_[0].get(), POLLIN, 0});
  if (workers_) fds->push_back(pollfd{workers_->completion_fd(), POLLIN, 0});
  for (int s = 1; s < caller_stripes(); ++s) {
    for (uint64_t q = std::max(cursor_[s], base_seq_); q < end_seq(); ++q) {
      const IncomingMessage& m = incoming_[q - base_seq_];
      if (m.got[s] < m.layout.length(s)) {
        fds->push_back(pollfd{stripes_[s].get(), POLLIN, 0});
        break;
      }
    }
  }
}

Status TcpRecvChannel::irecv(int n, void* const* data, const size_t* sizes, const int* tags,
                             MemoryRegion* const*, Request** request) {
  *request = nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failed_.ok()) return failed_;
  CIUIC_RETURN_IF_ERROR(common::check_irecv(n, data, sizes));
  if (static_cast<int>(requests_.size()) >= kMaxRequests) return Status::Ok();
  auto r = std::make_unique<RecvRequest>();
  r->post(n, data, sizes, tags);
  *request = r.get();
  requests_.push_back(std::move(r));
  (void)progress();  // a held header may match now; a failure is kept for test()
  return Status::Ok();
}

Status TcpRecvChannel::test(Request* request, bool* done, size_t* sizes) {
  *done = false;
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_.ok()) (void)progress();
  auto* r = static_cast<RecvRequest*>(request);
  if (r->complete()) {
    *done = true;
    r->report(sizes);
    // All of its messages are complete, so no IncomingMessage points at it any more.
    auto it = std::find_if(requests_.begin(), requests_.end(),
                           [r](const std::unique_ptr<RecvRequest>& p) { return p.get() == r; });
    if (it != requests_.end()) requests_.erase(it);
    return Status::Ok();
  }
  return failed_;
}

Status TcpRecvChannel::progress() {
  Status s;
  for (;;) {
    bool moved = false;
    s = pull_stripe0(&moved);
    for (int stripe = 1; s.ok() && stripe < caller_stripes(); ++stripe) s = pull_stripe(stripe, &moved);
    if (!s.ok() || !moved) break;
  }
  if (s.ok() && workers_) s = reap_worker_pieces();
  if (!s.ok() && failed_.ok()) {
    failed_ = s;
    // Tell the sender why (a size or tag mismatch is its business too) rather than let it
    // wait on a stream nobody reads.
    send_abort_and_shutdown(s.message(), Deadline::after_ms(0));
  }
  return failed_;
}

Status TcpRecvChannel::read_into(int stripe, uint8_t* data, size_t size, size_t* got, bool* eof) {
  *got = 0;
  *eof = false;
  while (*got < size) {
    if (stripe == 0 && inbox_begin_ < inbox_end_) {
      const size_t n = std::min(size - *got, inbox_end_ - inbox_begin_);
      std::memcpy(data + *got, inbox_ + inbox_begin_, n);
      inbox_begin_ += n;
      *got += n;
      continue;
    }
    const bool staged = stripe == 0 && size - *got < sizeof(inbox_);
    ssize_t n = staged ? ::recv(stripes_[0].get(), inbox_, sizeof(inbox_), MSG_DONTWAIT)
                       : ::recv(stripes_[stripe].get(), data + *got, size - *got, MSG_DONTWAIT);
    if (n > 0) {
      if (staged) {
        inbox_begin_ = 0;
        inbox_end_ = static_cast<size_t>(n);
      } else {
        *got += static_cast<size_t>(n);
      }
      continue;
    }
    if (n == 0 || errno == ECONNRESET) {
      *eof = true;
      end_was_reset_ = n < 0;
      return Status::Ok();
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Ok();
    return net::connection_error("recv from " + describe() + " (stripe " + std::to_string(stripe) + ")",
                       errno);
  }
  return Status::Ok();
}

Status TcpRecvChannel::pull_stripe0(bool* moved) {
  for (;;) {
    size_t got = 0;
    bool eof = false;
    switch (stripe0_) {
      case Stripe0::kHeader: {
        if (stripe0_ended_) return waiting_for_header() ? closed_by_peer(0) : Status::Ok();
        if (header_got_ < kFrameHeaderBytes) {
          CIUIC_RETURN_IF_ERROR(read_into(0, header_ + header_got_,
                                          kFrameHeaderBytes - header_got_, &got, &eof));
          header_got_ += got;
          *moved |= got > 0;
          if (header_got_ == 0 && eof) {
            // A clean end between messages: the sender sent its last message and left.
            // Pieces of that message may still be on their way on the other sockets.
            stripe0_ended_ = true;
            continue;
          }
          if (header_got_ < kFrameHeaderBytes) return eof ? closed_by_peer(0) : Status::Ok();
        }
        bool held = false;
        CIUIC_RETURN_IF_ERROR(accept_header(&held));
        if (held) return Status::Ok();  // no receive posted yet: wait for irecv()
        *moved = true;
        break;
      }
      case Stripe0::kPiece: {
        IncomingMessage* m = message(stripe0_seq_);
        uint64_t length = m->layout.length(0);
        CIUIC_RETURN_IF_ERROR(read_into(0, m->request->data[m->slot] + m->got[0],
                                        length - m->got[0], &got, &eof));
        m->got[0] += got;
        *moved |= got > 0;
        if (m->got[0] < length) return eof ? closed_by_peer(0) : Status::Ok();
        stripe0_ = Stripe0::kHeader;
        piece_done(m);
        break;
      }
      case Stripe0::kAbortReason: {
        CIUIC_RETURN_IF_ERROR(read_into(0, reinterpret_cast<uint8_t*>(peer_abort_.reason_space()),
                                        peer_abort_.reason_missing(), &got, &eof));
        peer_abort_.reason_arrived(got);
        *moved |= got > 0;
        if (peer_abort_.reason_missing() > 0 && !eof) return Status::Ok();
        peer_aborted_ = true;
        return remote_error("the sender " + describe() + " aborted the connection: " +
                            peer_abort_.reason());
      }
    }
  }
}

Status TcpRecvChannel::accept_header(bool* held) {
  *held = false;
  FrameHeader h;
  Status s = decode_frame(header_, &h);
  if (!s.ok()) return s.prefix("from " + describe());
  if (h.type == FrameType::kAbort) {
    header_got_ = 0;
    peer_abort_.header_read(h.size);
    stripe0_ = Stripe0::kAbortReason;
    return Status::Ok();
  }
  RecvRequest* r = nullptr;
  for (const auto& p : requests_) {
    if (p->needs_message()) {
      r = p.get();
      break;
    }
  }
  if (r == nullptr) {
    *held = true;
    return Status::Ok();
  }
  int slot = -1;
  CIUIC_RETURN_IF_ERROR(r->match(h.tag, h.size, describe(), &slot));
  header_got_ = 0;
  IncomingMessage m;
  m.request = r;
  m.slot = slot;
  m.size = h.size;
  m.layout = layout_of(h.size);
  int worker_pieces = 0;
  if (workers_) {
    for (int i = 1; i < m.layout.end(); ++i) worker_pieces += m.layout.length(i) > 0 ? 1 : 0;
    m.stripes_left = (m.layout.length(0) > 0 ? 1 : 0) + (worker_pieces > 0 ? 1 : 0);
    m.on_workers = worker_pieces > 0;
  } else {
    for (int i = 0; i < stripe_count(); ++i) m.stripes_left += m.layout.length(i) > 0 ? 1 : 0;
  }
  if (m.stripes_left == 0) {  // an empty message is complete with its header
    r->received[slot] = 0;
    ++r->completed;
    return Status::Ok();
  }
  if (worker_pieces > 0) {
    r->worker_pieces[slot].store(worker_pieces, std::memory_order_relaxed);
    for (int i = 1; i < m.layout.end(); ++i) {
      if (m.layout.length(i) == 0) continue;
      workers_->submit(i, PieceJob{r->data[slot] + m.layout.offset(i), m.layout.length(i), h.size,
                                   &r->worker_pieces[slot]});
    }
  }
  incoming_.push_back(m);
  if (m.layout.length(0) > 0) {
    stripe0_ = Stripe0::kPiece;
    stripe0_seq_ = end_seq() - 1;
  }
  return Status::Ok();
}

void TcpRecvChannel::piece_done(IncomingMessage* m) {
  if (--m->stripes_left == 0) {
    m->request->received[m->slot] = m->size;
    ++m->request->completed;
  }
  while (!incoming_.empty() && incoming_.front().stripes_left == 0) {
    incoming_.pop_front();
    ++base_seq_;
  }
}

Status TcpRecvChannel::pull_stripe(int stripe, bool* moved) {
  for (;;) {
    uint64_t& cursor = cursor_[stripe];
    cursor = std::max(cursor, base_seq_);
    while (cursor < end_seq() && message(cursor)->got[stripe] == message(cursor)->layout.length(stripe))
      ++cursor;
    if (cursor == end_seq()) return Status::Ok();
    IncomingMessage* m = message(cursor);
    uint64_t length = m->layout.length(stripe);
    size_t got = 0;
    bool eof = false;
    CIUIC_RETURN_IF_ERROR(read_into(
        stripe, m->request->data[m->slot] + m->layout.offset(stripe) + m->got[stripe],
        length - m->got[stripe], &got, &eof));
    m->got[stripe] += got;
    *moved |= got > 0;
    if (m->got[stripe] < length) return eof ? closed_by_peer(stripe) : Status::Ok();
    ++cursor;
    piece_done(m);
  }
}

uint64_t TcpRecvChannel::bytes_in_flight(int stripe) const {
  if (stripe == 0 && stripe0_ == Stripe0::kPiece) return incoming_[stripe0_seq_ - base_seq_].size;
  uint64_t from = stripe == 0 ? base_seq_ : std::max(cursor_[stripe], base_seq_);
  if (from < end_seq()) return incoming_[from - base_seq_].size;
  for (const auto& r : requests_) {
    if (!r->needs_message()) continue;
    uint64_t largest = 0;
    for (int i = 0; i < r->n; ++i) {
      if (!r->matched[i]) largest = std::max<uint64_t>(largest, r->capacity[i]);
    }
    return largest;
  }
  return 0;
}

bool TcpRecvChannel::waiting_for_header() const {
  for (const auto& r : requests_)
    if (r->needs_message()) return true;
  return false;
}

Status TcpRecvChannel::reap_worker_pieces() {
  WorkerFailure f;
  if (reap_workers(&f)) {
    if (f.error == 0 || f.error == ECONNRESET) {
      end_was_reset_ = f.error == ECONNRESET;
      return closed_by_peer(f.stripe, f.message_size);
    }
    return net::connection_error("recv from " + describe() + " (stripe " + std::to_string(f.stripe) + ")",
                       f.error);
  }
  // piece_done() retires finished messages from the front, so re-read base_seq_.
  for (uint64_t q = base_seq_; q < end_seq(); q = std::max(q + 1, base_seq_)) {
    IncomingMessage* m = message(q);
    if (!m->on_workers ||
        m->request->worker_pieces[m->slot].load(std::memory_order_acquire) != 0)
      continue;
    m->on_workers = false;
    piece_done(m);
  }
  return Status::Ok();
}

Status TcpRecvChannel::closed_by_peer(int stripe, uint64_t in_flight) {
  // The sender may have aborted: its reason sits on stripe 0, perhaps behind payload.
  if (stripe != 0 && !draining_for_abort_) {
    draining_for_abort_ = true;
    bool moved = false;
    Status s = pull_stripe0(&moved);
    draining_for_abort_ = false;
    if (peer_aborted_) return s;
  }
  bool receiving = !requests_.empty() || !incoming_.empty();
  if (!receiving)
    return remote_error("connection to " + describe() +
                        " closed by the peer (no receive in flight; the peer process exited or "
                        "closed its send channel)");
  return remote_error("connection to " + describe() + (end_was_reset_ ? " reset" : " closed") +
                      " by the peer during a " +
                      std::to_string(in_flight != UINT64_MAX ? in_flight : bytes_in_flight(stripe)) +
                      "-byte receive, socket " + std::to_string(stripe) +
                      " (the peer process exited or aborted)");
}

}  // namespace ciuic::transport::tcp
