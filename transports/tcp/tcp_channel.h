// Striped TCP channels: one logical, unidirectional channel over S sockets ("stripes").
//
// Stripe 0 carries a 16-byte frame header before every message and, unless the sender
// keeps pieces off stripe 0 (a sender with I/O threads does), that message's first piece;
// the other stripes carry the pieces of each message large enough to be split (tcp_wire.h).
// Each stripe is an ordered stream, so both sides walk the message list per stripe with
// a cursor and no per-piece framing is needed. Payload moves straight between the
// user's buffers and the kernel (sendmsg / recv), never through a staging copy.
//
// A sender's ABORT frame starts at a frame boundary of stripe 0: abort() reaches one by
// finishing the message or piece under way there (a wait of at most kAbortFrameWaitMs). The reverse direction of stripe 0
// carries only an ABORT frame from the receiver, so a sender learns why its peer gave up.
// All public calls take the channel's mutex: it is held only for non-blocking work (and
// by a sender's abort() for at most kAbortFrameWaitMs), so every call waits boundedly.
//
// With CIUIC_TCP_THREADS > 0 the pieces on stripes 1..S-1 move on I/O threads
// (tcp_workers.h) while the caller's thread keeps stripe 0: headers and small messages.
// The workers never take the channel's mutex; they count pieces down in the requests and
// post to an eventfd that collect_poll_fds() includes.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/net.h"
#include "transports/common/abort_frame.h"
#include "transports/common/channel.h"
#include "transports/common/requests.h"
#include "transports/tcp/tcp_wire.h"
#include "transports/tcp/tcp_workers.h"
#include "transports/transport.h"

namespace ciuic::transport::tcp {

// How long a sender's abort() waits for stripe 0 to take the rest of the message or piece
// under way and the ABORT frame: ample for a receiver that reads (a 16 MiB piece over
// loopback takes about 10 ms), short for a caller that aborts because its peer stopped.
constexpr int64_t kAbortFrameWaitMs = 200;

// What every channel of this transport shares: the sockets, the sticky failure, abort.
class StripedChannel {
 public:
  StripedChannel(std::vector<net::Fd> stripes, std::string peer, uint64_t min_stripe_bytes,
                 bool pieces_off_stripe0, StripeWorkers::Direction direction, int threads);

  int stripe_count() const { return static_cast<int>(stripes_.size()); }
  std::string describe() const;
  // The stripes a message of `size` bytes takes (the sender's rules, from its handshake).
  StripeLayout layout_of(uint64_t size) const {
    return split_message(size, stripe_count(), min_stripe_bytes_, pieces_off_stripe0_);
  }
  // Sockets need no registration: trivial regions for host memory, others refused.
  Status register_region(void* data, size_t size, int pointer_kind,
                         std::unique_ptr<MemoryRegion>* out);
  // Writes an ABORT frame carrying `reason` on stripe 0, waiting for room in the socket
  // until `room_until` (a past deadline: no wait; a socket still full then drops the
  // reason, or the end of it), then shuts every stripe down. Only the first call does
  // anything.
  void send_abort_and_shutdown(std::string_view reason, const Deadline& room_until);
  // Shuts every stripe down, then stops and joins the I/O threads (bounded: their I/O
  // never blocks and the shut-down sockets end it at once).
  void shutdown_all();
  // Stripes this thread moves itself: all of them, or stripe 0 only when workers run.
  int caller_stripes() const { return workers_ ? 1 : stripe_count(); }
  // The completion eventfd, drained; the workers' failure, if any, as *failure.
  bool reap_workers(WorkerFailure* failure);
  // Reads the peer's ABORT frame from stripe 0 without waiting: *complete once all of it
  // arrived (peer_abort_ holds the reason), *closed when the peer closed the stream.
  // Anything else on that stream is an error.
  Status read_abort_frame(bool* complete, bool* closed);

 protected:
  std::vector<net::Fd> stripes_;
  std::string peer_;
  uint64_t min_stripe_bytes_;
  bool pieces_off_stripe0_;  // split messages leave stripe 0 out (kHelloPiecesOffStripe0)
  std::unique_ptr<StripeWorkers> workers_;  // null: no I/O threads (CIUIC_TCP_THREADS=0)
  mutable std::mutex mutex_;
  Status failed_;           // sticky: once set every later call returns it
  bool shut_down_ = false;  // the sockets were shut down (abort or failure)
  common::AbortFrameReader peer_abort_;  // the peer's ABORT frame, as it arrives
};

// One isend: its frame header, where its pieces go, and how much of each stripe's segment
// (stripe 0: header + piece 0; stripe k: piece k) is written.
struct SendRequest final : Request {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  uint8_t header[kFrameHeaderBytes] = {};
  StripeLayout layout;
  uint64_t sent[kMaxStripes] = {};  // bytes of each stripe's segment already written
  std::atomic<int> stripes_left{0};  // stripes whose segment is not fully written
  bool reported = false;            // test() said done: freed once at the queue's front

  uint64_t segment(int stripe) const {
    return (stripe == 0 ? kFrameHeaderBytes : 0) + layout.length(stripe);
  }
};

class TcpSendChannel final : public common::ChannelOver<SendChannel, StripedChannel> {
 public:
  TcpSendChannel(std::vector<net::Fd> stripes, std::string peer, uint64_t min_stripe_bytes,
                 bool pieces_off_stripe0);
  ~TcpSendChannel() override;  // joins the I/O threads before the requests go

  void abort(std::string_view reason) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;
  Status isend(const void* data, size_t size, int tag, MemoryRegion* region,
               Request** request) override;
  Status test(Request* request, bool* done, size_t* size) override;

 private:
  Status progress();
  Status push_stripe(int stripe, bool* moved);
  Status check_peer();  // reads the reverse direction of stripe 0: ABORT or close
  // Writes the rest of the message stripe 0 is in the middle of, so that an ABORT frame
  // can follow; waits for room until `room_until` only when little is left (a header or
  // an unsplit message). False: stripe 0 is still mid-message.
  bool finish_stripe0_message(const Deadline& room_until);
  bool receiver_closed_ = false;  // the receiver closed after taking all we had sent
  Status peer_gone(const char* how);
  SendRequest* at(uint64_t seq) const { return queue_[seq - base_seq_].get(); }
  uint64_t end_seq() const { return base_seq_ + queue_.size(); }

  std::deque<std::unique_ptr<SendRequest>> queue_;  // posting order
  uint64_t base_seq_ = 0;                           // sequence number of queue_.front()
  uint64_t cursor_[kMaxStripes] = {};               // per stripe: first unfinished message
  int outstanding_ = 0;                             // posted, not yet reported done
};

struct RecvRequest final : Request, common::GroupedRecv {
  // Per buffer: pieces of its message still moving on I/O threads.
  std::atomic<int> worker_pieces[kMaxGroupedRecvs] = {};
};

// A message whose header arrived: where its pieces go and how much of each came.
struct IncomingMessage {
  RecvRequest* request = nullptr;
  int slot = 0;
  uint64_t size = 0;
  StripeLayout layout;
  uint64_t got[kMaxStripes] = {};
  int stripes_left = 0;     // stripe 0 counts as one, all the workers' pieces as one more
  bool on_workers = false;  // pieces of stripes >= 1 are with the I/O threads
};

class TcpRecvChannel final : public common::ChannelOver<RecvChannel, StripedChannel> {
 public:
  TcpRecvChannel(std::vector<net::Fd> stripes, std::string peer, uint64_t min_stripe_bytes,
                 bool pieces_off_stripe0);
  ~TcpRecvChannel() override;  // joins the I/O threads before the requests go

  void abort(std::string_view reason) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;
  Status irecv(int n, void* const* data, const size_t* sizes, const int* tags,
               MemoryRegion* const* regions, Request** request) override;
  Status test(Request* request, bool* done, size_t* sizes) override;

 private:
  enum class Stripe0 { kHeader, kPiece, kAbortReason };

  Status progress();
  Status pull_stripe0(bool* moved);
  Status pull_stripe(int stripe, bool* moved);
  Status accept_header(bool* held);
  void piece_done(IncomingMessage* message);
  // recv() into [data, data+size); *eof when the peer closed.
  Status read_into(int stripe, uint8_t* data, size_t size, size_t* got, bool* eof);
  bool waiting_for_header() const;  // a posted receive still needs a message
  // `in_flight`: size of the message being received on that stripe, if known.
  Status closed_by_peer(int stripe, uint64_t in_flight = UINT64_MAX);
  // Marks messages whose worker pieces all arrived; turns a worker's failure into the
  // channel's error.
  Status reap_worker_pieces();
  uint64_t bytes_in_flight(int stripe) const;
  IncomingMessage* message(uint64_t seq) { return &incoming_[seq - base_seq_]; }
  uint64_t end_seq() const { return base_seq_ + incoming_.size(); }

  std::vector<std::unique_ptr<RecvRequest>> requests_;  // posting order, not yet reported
  std::deque<IncomingMessage> incoming_;                // headers seen, payload unfinished
  uint64_t base_seq_ = 0;
  uint64_t cursor_[kMaxStripes] = {};  // stripes >= 1: next message with a piece for them
  Stripe0 stripe0_ = Stripe0::kHeader;
  uint64_t stripe0_seq_ = 0;  // the message whose first piece stripe 0 is reading
  uint8_t header_[kFrameHeaderBytes] = {};
  size_t header_got_ = 0;
  // Stripe 0 reads small things (headers, small payloads) through this window, so a
  // small message costs one recv() instead of one per field. Large payloads bypass it.
  // Whenever read_into() stops short, the window is empty: poll() on the socket stays true.
  bool end_was_reset_ = false;  // the last end of stream was a reset, not a close
  bool stripe0_ended_ = false;  // the sender closed stripe 0 between two messages
  uint8_t inbox_[4096];
  size_t inbox_begin_ = 0;
  size_t inbox_end_ = 0;
  bool draining_for_abort_ = false;
  bool peer_aborted_ = false;
};

}  // namespace ciuic::transport::tcp
