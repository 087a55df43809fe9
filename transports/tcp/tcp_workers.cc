#include "transports/tcp/tcp_workers.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <system_error>

#include "base/config.h"
#include "base/log.h"

namespace ciuic::transport::tcp {
namespace {

const config::IntParam kThreads{
    "CIUIC_TCP_THREADS", 0,
    "TCP transport: I/O threads per channel that move the pieces of striped messages "
    "(at most CIUIC_TCP_SOCKETS-1); 0 moves every byte on the caller's thread"};

constexpr int kMaxIov = 64;
// A worker re-checks its state at least this often even if nothing wakes it.
constexpr int kWorkerPollMs = 100;
// How long an idle worker waits for its next job before it sleeps. A thread woken through
// an eventfd takes tens of microseconds to run again on a busy host, and a stream of
// messages (NCCL's steps, a pipeline's chunks) comes back sooner than that.
constexpr int64_t kIdleSpinMicros = 50;

void signal_fd(int fd) {
  uint64_t one = 1;
  while (::write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

uint64_t drain_fd(int fd) {
  uint64_t value = 0;
  while (::read(fd, &value, sizeof(value)) < 0) {
    if (errno != EINTR) return 0;
  }
  return value;
}

Status make_eventfd(net::Fd* out) {
  net::Fd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd.valid()) return errno_error("eventfd for the TCP I/O threads", errno);
  *out = std::move(fd);
  return Status::Ok();
}

}  // namespace

int configured_threads() {
  int64_t v = kThreads.get();
  if (v < 0 || v > kMaxStripes - 1) {
    int use = v < 0 ? 0 : kMaxStripes - 1;
    CIUIC_LOG_WARN(log::kNet, "CIUIC_TCP_THREADS=%" PRId64 " is outside 0..%d; using %d", v,
                   kMaxStripes - 1, use);
    return use;
  }
  return static_cast<int>(v);
}

Status StripeWorkers::start(Direction direction, const std::vector<net::Fd>& stripes, int threads,
                            std::unique_ptr<StripeWorkers>* out) {
  out->reset();
  const int stripe_count = static_cast<int>(stripes.size());
  const int count = std::min(threads, stripe_count - 1);
  if (count <= 0) return Status::Ok();
  std::unique_ptr<StripeWorkers> w(new StripeWorkers(direction));
  CIUIC_RETURN_IF_ERROR(make_eventfd(&w->completion_fd_));
  w->owner_.assign(static_cast<size_t>(stripe_count), nullptr);
  for (int i = 0; i < count; ++i) {
    auto worker = std::make_unique<Worker>();
    CIUIC_RETURN_IF_ERROR(make_eventfd(&worker->wake_fd));
    w->workers_.push_back(std::move(worker));
  }
  for (int s = 1; s < stripe_count; ++s) {
    Worker* worker = w->workers_[static_cast<size_t>((s - 1) % count)].get();
    StripeQueue q;
    q.stripe = s;
    q.fd = stripes[static_cast<size_t>(s)].get();
    worker->queues.push_back(std::move(q));
    w->owner_[static_cast<size_t>(s)] = worker;
  }
  const char* name = direction == Direction::kSend ? "ciuic-tcp-tx" : "ciuic-tcp-rx";
  for (auto& worker : w->workers_) {
    try {
      Worker* raw = worker.get();
      StripeWorkers* self = w.get();
      worker->thread = std::thread([self, raw] { self->run(raw); });
      pthread_setname_np(worker->thread.native_handle(), name);
    } catch (const std::system_error& e) {
      w->stop_and_join();  // the ones already started
      return internal_error(std::string("could not start a TCP I/O thread: ") + e.what());
    }
  }
  *out = std::move(w);
  return Status::Ok();
}

StripeWorkers::~StripeWorkers() { stop_and_join(); }

void StripeWorkers::stop_and_join() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& w : workers_) {
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      w->stop = true;
    }
    w->stop_requested.store(true, std::memory_order_relaxed);
    signal_fd(w->wake_fd.get());
  }
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

void StripeWorkers::submit(int stripe, const PieceJob& job) {
  Worker* w = owner_[static_cast<size_t>(stripe)];
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(w->mutex);
    for (StripeQueue& q : w->queues) {
      if (q.stripe == stripe) {
        q.jobs.push_back(job);
        ++w->submitted;
        w->submitted_seen.store(w->submitted, std::memory_order_release);
        break;
      }
    }
    // A worker about to sleep or sleeping set `sleeping` under this mutex: it either saw
    // this job or will be woken by the write below (the eventfd stays readable).
    wake = w->sleeping;
    w->sleeping = false;
  }
  if (wake) signal_fd(w->wake_fd.get());
}

void StripeWorkers::post_completion() {
  posted_.fetch_add(1, std::memory_order_acq_rel);
  signal_fd(completion_fd_.get());
}

void StripeWorkers::reap() {
  // Every post is one write of 1, so the counts read back catch up with posted_ exactly;
  // a write not landed yet is read by a later reap (and wakes poll() when it lands).
  if (posted_.load(std::memory_order_acquire) == reaped_) return;
  reaped_ += drain_fd(completion_fd_.get());
}

bool StripeWorkers::failure(WorkerFailure* out) const {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  if (failed_) *out = failure_;
  return failed_;
}

void StripeWorkers::record_failure(int stripe, int error, uint64_t message_size) {
  {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    if (!failed_) {
      failed_ = true;
      failure_ = WorkerFailure{stripe, error, message_size};
    }
  }
  post_completion();
}

bool StripeWorkers::move_some(Worker* w, StripeQueue* q, bool* progress, bool* would_block) {
  for (;;) {
    iovec iov[kMaxIov];
    int count = 0;
    size_t wanted = 0;
    uint64_t message_size = 0;
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      for (const PieceJob& job : q->jobs) {
        if (count == kMaxIov) break;
        uint64_t skip = count == 0 ? q->front_moved : 0;
        iov[count++] = {job.data + skip, static_cast<size_t>(job.length - skip)};
        wanted += job.length - skip;
      }
      if (count > 0) message_size = q->jobs.front().message_size;
    }
    if (count == 0) return true;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = direction_ == Direction::kSend ? ::sendmsg(q->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)
                                               : ::recvmsg(q->fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *would_block = true;
        return true;
      }
      record_failure(q->stripe, errno, message_size);
      return false;
    }
    if (n == 0) {  // only a receive gets 0 for a non-empty request: the peer ended the stream
      record_failure(q->stripe, 0, message_size);
      return false;
    }
    *progress = true;
    std::atomic<int>* finished[kMaxIov];
    int finished_count = 0;
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      uint64_t left = static_cast<uint64_t>(n);
      while (left > 0 && !q->jobs.empty()) {
        const PieceJob& front = q->jobs.front();
        uint64_t take = std::min(left, front.length - q->front_moved);
        q->front_moved += take;
        left -= take;
        if (q->front_moved < front.length) break;
        finished[finished_count++] = front.pieces_left;
        q->jobs.pop_front();
        q->front_moved = 0;
      }
    }
    // After this count-down the caller may free the request: touch nothing of it after.
    for (int i = 0; i < finished_count; ++i) finished[i]->fetch_sub(1, std::memory_order_acq_rel);
    if (finished_count > 0) post_completion();
    if (static_cast<size_t>(n) < wanted) {  // the socket is full (send) or empty (receive)
      *would_block = true;
      return true;
    }
  }
}

bool StripeWorkers::spin_for_job(Worker* w, uint64_t seen) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point until = Clock::now() + std::chrono::microseconds(kIdleSpinMicros);
  for (int round = 1;; ++round) {
    if (w->submitted_seen.load(std::memory_order_acquire) != seen) return true;
    if (w->stop_requested.load(std::memory_order_relaxed)) return false;
    if (round % 64 == 0) {
      if (Clock::now() >= until) return false;
      std::this_thread::yield();  // where threads outnumber cores, let the producer run
    }
  }
}

void StripeWorkers::run(Worker* w) {
  using Clock = std::chrono::steady_clock;
  std::vector<pollfd> fds;
  Clock::time_point blocked_since{};  // when every socket with work last stopped moving
  for (;;) {
    bool any_job = false;
    uint64_t seen = 0;
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      if (w->stop) return;
      seen = w->submitted;
      for (const StripeQueue& q : w->queues) any_job |= !q.jobs.empty();
    }
    if (!any_job) {
      if (spin_for_job(w, seen)) continue;
      {
        // A job queued since `seen` was counted under this mutex: go and take it. Later
        // ones see `sleeping` and write the wake eventfd.
        std::lock_guard<std::mutex> lock(w->mutex);
        if (w->stop) return;
        if (w->submitted != seen) continue;
        w->sleeping = true;
      }
      pollfd p{w->wake_fd.get(), POLLIN, 0};
      ::poll(&p, 1, kWorkerPollMs);
      if (p.revents != 0) drain_fd(w->wake_fd.get());
      std::lock_guard<std::mutex> lock(w->mutex);
      w->sleeping = false;
      continue;
    }
    bool progress = false;
    fds.clear();
    for (StripeQueue& q : w->queues) {
      bool would_block = false;
      if (!move_some(w, &q, &progress, &would_block)) return;  // failure recorded
      if (would_block)
        fds.push_back(
            pollfd{q.fd, static_cast<short>(direction_ == Direction::kSend ? POLLOUT : POLLIN), 0});
    }
    if (progress || fds.empty()) {
      blocked_since = {};
      continue;
    }
    // Every socket with work is full (or empty). The peer's next bytes are usually a few
    // microseconds away: retry for a while before sleeping until one is ready.
    const Clock::time_point now = Clock::now();
    if (blocked_since == Clock::time_point{}) blocked_since = now;
    if (now - blocked_since < std::chrono::microseconds(kIdleSpinMicros)) {
      std::this_thread::yield();
      continue;
    }
    blocked_since = {};
    // Sleep. A job that came since this round began may be for a ready socket: go round
    // again instead; later ones wake us through `sleeping` as above.
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      if (w->stop) return;
      if (w->submitted != seen) continue;
      w->sleeping = true;
    }
    fds.push_back(pollfd{w->wake_fd.get(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), kWorkerPollMs);
    if (fds.back().revents != 0) drain_fd(w->wake_fd.get());
    std::lock_guard<std::mutex> lock(w->mutex);
    w->sleeping = false;
  }
}

}  // namespace ciuic::transport::tcp
