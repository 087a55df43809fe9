// Shared-memory channels: one sealed memfd segment per channel (shm_segment.h) holding a
// single-producer, single-consumer ring, plus the Unix socket the channel was set up on,
// kept open for the channel's life to carry ABORT frames and to hear the peer go away,
// and a pidfd of the peer process that becomes readable when it exits.
//
// Small messages (<= CIUIC_SHM_EAGER_BYTES) are copied into the ring at isend and out of
// it into the receive buffer; the send is done as soon as its bytes are in the ring.
// Larger ones on a CMA channel put only a header in the ring: the receiver reads the
// sender's buffer with process_vm_readv straight into its own (one copy) and then
// publishes done_seq, which completes the send. On a copy channel they stream through
// the ring in chunks, both sides copying at once.
//
// Waiting: a side about to sleep sets its flag in the segment (collect_poll_fds); the
// other side rings its eventfd doorbell only when it sees that flag. Peer death: the
// socket's end of stream and the pidfd; both are polled at most every 100 µs (and every
// 64th idle call, the clock being read only then) while a caller spins, and at once after
// it slept in poll().
//
// Locking: every public call takes the channel's mutex, held only for non-blocking work
// (a CMA read is cut into pieces and stops between them when abort() is called).
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/net.h"
#include "transports/common/channel.h"
#include "transports/common/requests.h"
#include "transports/shm/shm_segment.h"
#include "transports/shm/shm_wire.h"
#include "transports/transport.h"

namespace ciuic::transport::shm {

// Runtime parameters (shm_transport.cc).
uint64_t configured_ring_bytes();
uint64_t configured_eager_bytes();
CmaSetting configured_cma();

// What connection setup hands to a channel.
struct ChannelSetup {
  std::shared_ptr<Segment> segment;
  net::Fd socket;
  net::Fd bell_to_receiver;  // the sender rings it, the receiver sleeps on it
  net::Fd bell_to_sender;    // the other way
  pid_t peer_pid = 0;        // 0: unknown (another pid namespace)
  Path path = Path::kCopy;
};

// What both directions share: the socket, the pidfd, the sticky failure, abort.
class ShmChannelBase {
 public:
  ShmChannelBase(ChannelSetup setup, bool is_sender);
  ~ShmChannelBase();

 protected:
  std::string describe() const;
  // Shared memory and CMA need no registration: trivial regions for host memory, others
  // refused.
  Status register_region(void* data, size_t size, int pointer_kind,
                         std::unique_ptr<MemoryRegion>* out);
  ControlBlock* ctl() const { return segment_->control(); }
  // Rings the peer's doorbell if it announced it is going to sleep. Call after a release
  // store of head / tail / done_seq.
  void wake_peer();
  // This side's doorbell and sleep flag, for collect_poll_fds: announce, then look again.
  void announce_sleep() const;
  void end_sleep();
  // Reads the socket without waiting (an ABORT frame, or the end of the stream) and polls
  // the pidfd; unless `force` or after a sleep in poll(), at most every 100 µs and only on
  // every 64th call (the clock is read only then). Sets peer_reason_ / peer_gone_.
  Status watch_peer(bool force);
  // Sends an ABORT frame with `reason` (best effort), marks this side aborted in the
  // segment and shuts the socket's write side. Only the first call does anything.
  void send_abort(std::string_view reason);
  // abort(): stops a CMA read between pieces, fails the channel with `reason` (unless it
  // failed already) and tells the peer.
  void abort_channel(std::string_view reason);
  // The peer's abort as an error, if it sent one.
  bool peer_aborted() const { return peer_abort_.complete(); }
  std::string peer_reason() const { return peer_abort_.reason(); }
  uint32_t peer_state() const;
  // "the sender pid N (shm, cma) ... : <why it is gone>" for errors.
  std::string gone_text() const;

  std::shared_ptr<Segment> segment_;
  net::Fd socket_;
  net::Fd my_bell_;    // I sleep on it
  net::Fd peer_bell_;  // I ring it
  net::Fd pidfd_;      // the peer process; readable once it exited
  pid_t peer_pid_;
  Path path_;
  bool is_sender_;
  std::atomic<bool> abort_requested_{false};  // stops a CMA read between pieces
  mutable std::mutex mutex_;
  Status failed_;                   // sticky: once set every later call returns it
  bool abort_sent_ = false;         // this side sent its ABORT frame / marked itself aborted
  bool peer_gone_ = false;          // end of stream on the socket, or the pidfd fired
  bool peer_exited_ = false;        // the pidfd fired: the process is gone, not just the channel
  mutable bool announced_ = false;  // this side set its sleep flag
  mutable bool slept_ = false;      // collect_poll_fds was called: look at the socket next
  int64_t last_watch_ns_ = 0;
  uint32_t idle_watch_calls_ = 0;  // paces the clock reads of watch_peer
  common::AbortFrameReader peer_abort_{kAbortHeaderBytes, &decode_abort_header};
};

// A FIFO of at most N entries in place: a std::deque of the send requests allocated a
// block every 64 messages as its head moved on.
template <typename T, size_t N>
class FixedQueue {
 public:
  bool empty() const { return size_ == 0; }
  T front() const { return slots_[head_]; }
  void push_back(T v) {  // callers keep size() < N (one entry per outstanding request)
    slots_[(head_ + size_) % N] = v;
    ++size_;
  }
  void pop_front() {
    head_ = (head_ + 1) % N;
    --size_;
  }

 private:
  std::array<T, N> slots_{};
  size_t head_ = 0;
  size_t size_ = 0;
};

struct SendRequest final : Request {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  int tag = 0;
  uint64_t seq = 0;
  bool cma = false;
  uint64_t written = 0;  // bytes of its record in the ring (header, payload, padding)
  bool wire_done = false;
  bool reported = false;
};

class ShmSendChannel final : public common::ChannelOver<SendChannel, ShmChannelBase> {
 public:
  explicit ShmSendChannel(ChannelSetup setup);

  void abort(std::string_view reason) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;
  Status isend(const void* data, size_t size, int tag, MemoryRegion* region,
               Request** request) override;
  Status test(Request* request, bool* done, size_t* size) override;

 private:
  Status progress();
  // Writes queued records into the ring as far as it has room; *blocked when it is full.
  void push(bool* moved, bool* blocked);
  // Completes CMA sends the receiver has read.
  bool reap_reads();
  Status check_receiver();
  Status receiver_gone_error() const;
  bool has_pending() const { return !write_queue_.empty() || !awaiting_read_.empty(); }
  bool waiting_on_receiver() const;  // the ring is full or a read is awaited
  void fail(Status s);

  uint64_t eager_bytes_;
  std::array<SendRequest, kMaxRequests> pool_;
  uint32_t free_mask_;
  int outstanding_ = 0;
  // Each outstanding request is in at most one of them, so neither outgrows kMaxRequests.
  FixedQueue<SendRequest*, kMaxRequests> write_queue_;    // posting order, not fully in the ring
  FixedQueue<SendRequest*, kMaxRequests> awaiting_read_;  // CMA headers in the ring, not yet read
  uint64_t next_seq_ = 0;
  uint64_t head_ = 0;       // our head (only we write it)
  uint64_t tail_seen_ = 0;  // the receiver's tail, as last loaded
  mutable uint64_t tail_at_sleep_ = 0;
  mutable uint64_t done_at_sleep_ = 0;
  bool receiver_closed_ = false;  // gone after taking all we had sent
};

struct RecvRequest final : Request, common::GroupedRecv {};

class ShmRecvChannel final : public common::ChannelOver<RecvChannel, ShmChannelBase> {
 public:
  explicit ShmRecvChannel(ChannelSetup setup);

  void abort(std::string_view reason) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;
  Status irecv(int n, void* const* data, const size_t* sizes, const int* tags,
               MemoryRegion* const* regions, Request** request) override;
  Status test(Request* request, bool* done, size_t* sizes) override;

 private:
  Status progress();
  // One step: takes a header, copies payload, or reads a CMA piece. *moved if it did.
  Status step(bool* moved);
  Status take_header(bool* moved);
  Status copy_payload(bool* moved);
  Status read_cma(bool* moved);
  void finish_message();
  RecvRequest* first_unmatched() const;
  bool can_progress() const;  // something could move without the sender
  Status sender_gone_error();
  void fail(Status s);

  std::array<RecvRequest, kMaxRequests> pool_;
  uint32_t free_mask_;
  std::vector<RecvRequest*> posted_;  // posting order, not yet reported
  // The message being received.
  bool in_message_ = false;
  RingHeader header_{};
  RecvRequest* target_ = nullptr;
  int slot_ = 0;
  uint64_t got_ = 0;  // payload bytes taken (padding included once the payload is done)
  uint64_t tail_ = 0;
  uint64_t head_seen_ = 0;
  uint64_t expected_seq_ = 0;
  mutable uint64_t head_at_sleep_ = 0;
};

}  // namespace ciuic::transport::shm
