// I/O workers for a striped channel: threads that move the payload pieces of stripes
// 1..S-1, so that the pieces of a large message are copied by several cores at once.
//
// Stripe 0 (frame headers, small messages, the ABORT frames, tag matching) stays with the
// caller's thread, so a small message never waits for a thread hop. The caller
// hands over one PieceJob per piece; each stripe belongs to one worker, which walks that
// stripe's jobs in order with one gathering sendmsg / scattering recvmsg per call, without
// the channel's mutex. Finished pieces are counted down in the job's counter and posted to
// an eventfd, which the caller polls (collect_poll_fds) and drains (reap).
//
// Waits: a worker that runs out of jobs, or whose sockets are all full (send) or empty
// (receive), keeps trying for kIdleSpinMicros, yielding the core between tries (a
// message stream hands it the next piece or bytes sooner than a sleeping thread wakes),
// then sleeps in poll() on its sockets and its wake eventfd for at most kWorkerPollMs at a time, so stop() is seen
// at once and join() is bounded by one non-blocking system call.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/net.h"
#include "base/status.h"
#include "transports/tcp/tcp_wire.h"

namespace ciuic::transport::tcp {

// CIUIC_TCP_THREADS as configured (0 = every byte moves on the caller's thread).
int configured_threads();

// One piece of one message on one stripe.
struct PieceJob {
  uint8_t* data = nullptr;  // send: the source; receive: the destination
  uint64_t length = 0;
  uint64_t message_size = 0;                // for error messages
  std::atomic<int>* pieces_left = nullptr;  // counted down (release) once the piece moved
};

// Why a worker stopped moving bytes: `error` is an errno, or 0 for an orderly end of stream.
struct WorkerFailure {
  int stripe = 0;
  int error = 0;
  uint64_t message_size = 0;  // the message whose piece was moving
};

class StripeWorkers {
 public:
  enum class Direction { kSend, kReceive };

  // Starts min(threads, S-1) workers over stripes 1..S-1 (stripe k to worker (k-1) % n).
  // On failure *out stays null and the reason is returned.
  static Status start(Direction direction, const std::vector<net::Fd>& stripes, int threads,
                      std::unique_ptr<StripeWorkers>* out);
  ~StripeWorkers();  // stop() and join: bounded, see above

  int thread_count() const { return static_cast<int>(workers_.size()); }
  // Caller side: queue a piece on its stripe (>= 1) and wake the stripe's worker.
  void submit(int stripe, const PieceJob& job);
  // Asks every worker to stop and joins them. Jobs still queued are dropped: only after
  // this may their buffers and counters go away.
  void stop_and_join();

  // Readable while finished pieces or a failure were posted and not yet reaped.
  int completion_fd() const { return completion_fd_.get(); }
  // Caller side: drains the completion eventfd if anything was posted since last time.
  void reap();
  // The first failure any worker met, if one did.
  bool failure(WorkerFailure* out) const;

 private:
  struct StripeQueue {
    int stripe = 0;
    int fd = -1;
    std::deque<PieceJob> jobs;  // in stripe order; the front one is partly moved
    uint64_t front_moved = 0;   // bytes of jobs.front() already moved
  };
  struct Worker {
    std::mutex mutex;  // guards the queues, sleeping, stop (never held across I/O)
    std::vector<StripeQueue> queues;
    bool sleeping = false;
    bool stop = false;
    uint64_t submitted = 0;  // jobs ever queued here
    std::atomic<uint64_t> submitted_seen{0};  // `submitted`, readable without the mutex
    std::atomic<bool> stop_requested{false};  // `stop`, readable without the mutex
    net::Fd wake_fd;         // eventfd: new work while sleeping, or stop
    std::thread thread;
  };

  StripeWorkers(Direction direction) : direction_(direction) {}
  void run(Worker* w);
  // Spins while no job arrives after the `seen`-th, for at most kIdleSpinMicros; true if
  // one arrived.
  static bool spin_for_job(Worker* w, uint64_t seen);
  // Moves what one stripe's socket takes now. *progress: bytes moved; *would_block: the
  // socket is full (send) or empty (receive). Returns false after a failure.
  bool move_some(Worker* w, StripeQueue* q, bool* progress, bool* would_block);
  void post_completion();
  void record_failure(int stripe, int error, uint64_t message_size);

  Direction direction_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> owner_;  // per stripe: its worker (null for stripe 0)
  net::Fd completion_fd_;
  std::atomic<uint64_t> posted_{0};  // completions posted (one eventfd write each)
  uint64_t reaped_ = 0;              // caller side: eventfd counts read back
  mutable std::mutex failure_mutex_;
  bool failed_ = false;
  WorkerFailure failure_;
  bool stopped_ = false;
};

}  // namespace ciuic::transport::tcp
