#include "coll/executor.h"

#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

struct InFlight {
  uint32_t step;
  transport::Request* request;
};

// The requests a lane has in flight, oldest first: a fixed ring, since no channel takes
// more than kMaxRequests at once (a std::deque allocated two blocks per lane per call).
class InFlightRing {
 public:
  static constexpr size_t kCapacity = transport::kMaxRequests;
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  const InFlight& front() const { return slots_[head_]; }
  void push_back(InFlight f) {
    slots_[(head_ + size_) % kCapacity] = f;
    ++size_;
  }
  void pop_front() {
    head_ = (head_ + 1) % kCapacity;
    --size_;
  }
  void clear() { head_ = size_ = 0; }

 private:
  std::array<InFlight, kCapacity> slots_;
  size_t head_ = 0;
  size_t size_ = 0;
};

// The per-peer, per-direction queue of network steps in schedule order.
struct Lane {
  const std::vector<uint32_t>* steps_list = nullptr;  // owned by the Schedule
  const std::vector<uint32_t>& steps() const { return *steps_list; }
  size_t next_to_post = 0;
  InFlightRing in_flight;
  size_t completed = 0;

  void reset(const std::vector<uint32_t>* steps) {
    steps_list = steps;
    next_to_post = 0;
    in_flight.clear();
    completed = 0;
  }
};

struct PeerState {
  int peer = -1;
  Lane send;
  Lane recv;
  transport::SendChannel* send_channel = nullptr;
  transport::RecvChannel* recv_channel = nullptr;
};

// A run's mutable state. Kept per thread between runs, so that running a cached schedule
// allocates nothing once the vectors have grown to its size; released after a run that
// needed far more than small operations do, so one huge schedule does not pin memory.
struct Workspace {
  std::vector<uint32_t> missing;  // unfinished dependencies per step
  std::vector<uint32_t> ready_local;
  std::vector<PeerState> peers;
  std::vector<pollfd> fds;
  bool in_use = false;

  static constexpr size_t kKeepSteps = size_t{1} << 16;
  static constexpr size_t kKeepPeers = 64;
  void trim() {
    if (missing.capacity() > kKeepSteps) {
      std::vector<uint32_t>().swap(missing);
      std::vector<uint32_t>().swap(ready_local);
    }
    if (peers.capacity() > kKeepPeers) std::vector<PeerState>().swap(peers);
  }
};

class Run {
 public:
  Run(const Schedule& s, const std::vector<Buffers>& b, PeerLinks& links, const ExecOptions& o,
      Workspace& w)
      : s_(s),
        b_(b),
        links_(links),
        o_(o),
        max_in_flight_(static_cast<size_t>(
            std::clamp(o.max_in_flight, 1, static_cast<int>(InFlightRing::kCapacity)))),
        missing_(w.missing),
        ready_local_(w.ready_local),
        peers_(w.peers),
        fds_(w.fds) {}

  Status go();

 private:
  char* address(const BufferRange& r) const { return buffer_address(b_.data(), r); }
  void complete(uint32_t step);
  void run_local(uint32_t step);
  Status post(PeerState& p, bool* progressed);
  Status test(PeerState& p, bool* progressed);
  Status sleep_until_ready();
  Status fail(Status s, int peer, const char* what);
  std::string waiting_on() const;

  const Schedule& s_;
  const std::vector<Buffers>& b_;
  PeerLinks& links_;
  const ExecOptions& o_;
  const size_t max_in_flight_;
  std::vector<uint32_t>& missing_;  // unfinished dependencies per step
  std::vector<uint32_t>& ready_local_;
  std::vector<PeerState>& peers_;
  std::vector<pollfd>& fds_;
  size_t done_ = 0;
};

bool is_network(StepKind k) { return k == StepKind::kSend || k == StepKind::kRecv; }

void Run::complete(uint32_t step) {
  ++done_;
  for (uint32_t k = s_.dependents_begin[step]; k < s_.dependents_begin[step + 1]; ++k) {
    const uint32_t d = s_.dependents[k];
    if (--missing_[d] == 0 && !is_network(s_.steps[d].kind)) ready_local_.push_back(d);
  }
}

void Run::run_local(uint32_t i) { run_local_step(s_, s_.steps[i], b_.data()); }

Status Run::fail(Status s, int peer, const char* what) {
  return s.prefix(o_.label() + ": rank " + std::to_string(s_.rank) + " " + what + " " +
                  links_.describe_peer(peer));
}

Status Run::post(PeerState& p, bool* progressed) {
  while (p.send.next_to_post < p.send.steps().size() &&
         p.send.in_flight.size() < max_in_flight_) {
    uint32_t i = p.send.steps()[p.send.next_to_post];
    if (missing_[i] != 0) break;
    const Step& st = s_.steps[i];
    transport::Request* req = nullptr;
    Status s = p.send_channel->isend(address(st.src), st.bytes, s_.rank, nullptr, &req);
    if (!s.ok()) return fail(s, p.peer, "sending to");
    if (req == nullptr) break;
    p.send.in_flight.push_back({i, req});
    ++p.send.next_to_post;
    *progressed = true;
  }
  while (p.recv.next_to_post < p.recv.steps().size() &&
         p.recv.in_flight.size() < max_in_flight_) {
    uint32_t i = p.recv.steps()[p.recv.next_to_post];
    if (missing_[i] != 0) break;
    const Step& st = s_.steps[i];
    transport::Request* req = nullptr;
    void* data = address(st.dst);
    size_t size = st.bytes;
    int tag = p.peer;
    transport::MemoryRegion* region = nullptr;
    Status s = p.recv_channel->irecv(1, &data, &size, &tag, &region, &req);
    if (!s.ok()) return fail(s, p.peer, "receiving from");
    if (req == nullptr) break;
    p.recv.in_flight.push_back({i, req});
    ++p.recv.next_to_post;
    *progressed = true;
  }
  return Status::Ok();
}

Status Run::test(PeerState& p, bool* progressed) {
  while (!p.send.in_flight.empty()) {
    bool done = false;
    Status s = p.send_channel->test(p.send.in_flight.front().request, &done, nullptr);
    if (!s.ok()) return fail(s, p.peer, "sending to");
    if (!done) break;
    complete(p.send.in_flight.front().step);
    p.send.in_flight.pop_front();
    ++p.send.completed;
    *progressed = true;
  }
  while (!p.recv.in_flight.empty()) {
    bool done = false;
    size_t got = 0;
    Status s = p.recv_channel->test(p.recv.in_flight.front().request, &done, &got);
    if (!s.ok()) return fail(s, p.peer, "receiving from");
    if (!done) break;
    uint32_t i = p.recv.in_flight.front().step;
    p.recv.in_flight.pop_front();
    if (got != s_.steps[i].bytes) {
      return fail(invalid_argument("expected " + std::to_string(s_.steps[i].bytes) +
                                   " bytes but got " + std::to_string(got) +
                                   ": the ranks called different collectives, counts or "
                                   "datatypes"),
                  p.peer, "receiving from");
    }
    complete(i);
    ++p.recv.completed;
    *progressed = true;
  }
  return Status::Ok();
}

std::string Run::waiting_on() const {
  std::string out;
  for (const PeerState& p : peers_) {
    if (p.recv.completed < p.recv.steps().size()) {
      out += (out.empty() ? "" : "; ") + std::string("no data yet from ") +
             links_.describe_peer(p.peer) + " (" + std::to_string(p.recv.completed) + " of " +
             std::to_string(p.recv.steps().size()) + " receives done)";
    }
    if (p.send.completed < p.send.steps().size()) {
      out += (out.empty() ? "" : "; ") + std::string("sends to ") + links_.describe_peer(p.peer) +
             " not drained (" + std::to_string(p.send.completed) + " of " +
             std::to_string(p.send.steps().size()) + " done)";
    }
  }
  return out;
}

Status Run::sleep_until_ready() {
  fds_.clear();
  for (const PeerState& p : peers_) {
    if (!p.send.in_flight.empty()) p.send_channel->collect_poll_fds(&fds_);
    if (!p.recv.in_flight.empty()) p.recv_channel->collect_poll_fds(&fds_);
  }
  if (o_.wake_fd >= 0) fds_.push_back(pollfd{o_.wake_fd, POLLIN, 0});
  int timeout = o_.deadline.poll_timeout_ms(100);
  int rc = ::poll(fds_.data(), fds_.size(), timeout);
  if (rc < 0 && errno != EINTR) return errno_error(o_.label() + ": poll", errno);
  return Status::Ok();
}

Status Run::go() {
  const size_t n = s_.steps.size();
  if (s_.dependents_begin.size() != n + 1)
    return internal_error(o_.label() + ": schedule was not finalized");
  missing_.resize(n);
  ready_local_.clear();
  for (uint32_t i = 0; i < n; ++i) {
    missing_[i] = s_.steps[i].dep_count;
    if (missing_[i] == 0 && !is_network(s_.steps[i].kind)) ready_local_.push_back(i);
  }
  peers_.resize(s_.peers.size());  // reused entries are reset whole here
  for (size_t k = 0; k < s_.peers.size(); ++k) {
    PeerState& p = peers_[k];
    p.peer = s_.peers[k].peer;
    p.send.reset(&s_.peers[k].sends);
    p.recv.reset(&s_.peers[k].recvs);
    p.send_channel = nullptr;
    p.recv_channel = nullptr;
  }
  for (PeerState& p : peers_) {
    if (!p.send.steps().empty()) p.send_channel = links_.send_channel(p.peer);
    if (!p.recv.steps().empty()) p.recv_channel = links_.recv_channel(p.peer);
    if ((!p.send.steps().empty() && p.send_channel == nullptr) ||
        (!p.recv.steps().empty() && p.recv_channel == nullptr))
      return internal_error(o_.label() + ": no connection to " + links_.describe_peer(p.peer));
  }
  int idle = 0;
  while (done_ < n) {
    bool progressed = false;
    while (!ready_local_.empty()) {
      uint32_t i = ready_local_.back();
      ready_local_.pop_back();
      run_local(i);
      complete(i);
      progressed = true;
    }
    for (PeerState& p : peers_) {
      CIUIC_RETURN_IF_ERROR(post(p, &progressed));
      CIUIC_RETURN_IF_ERROR(test(p, &progressed));
    }
    if (progressed) {
      idle = 0;
      continue;
    }
    if (o_.aborted != nullptr && o_.aborted->load(std::memory_order_relaxed))
      return aborted_error(o_.label() + ": the communicator was aborted");
    // Idle: poll a little, then yield the core (ranks may outnumber cores), then sleep
    // in poll() until a channel is ready. While spinning the clock is read every 32nd
    // round only (it was a quarter of the cycles of an 8-byte all-reduce); every time
    // once sleeping.
    ++idle;
    if ((idle > o_.spin_before_sleep || (idle & 31) == 1) && o_.deadline.expired()) {
      return timeout_error(o_.label() + " timed out on rank " + std::to_string(s_.rank) + ": " +
                           waiting_on() + " (CIUIC_TIMEOUT_MS)");
    }
    if (idle > o_.spin_before_sleep) {
      CIUIC_RETURN_IF_ERROR(sleep_until_ready());
    } else if (idle > 16 && o_.yield_when_idle) {
      sched_yield();
    }
  }
  return Status::Ok();
}

}  // namespace

char* buffer_address(const Buffers* sets, const BufferRange& r) {
  const Buffers& b = sets[r.set];
  switch (r.buffer) {
    case Buffer::kSend: return const_cast<char*>(static_cast<const char*>(b.send)) + r.offset;
    case Buffer::kRecv: return static_cast<char*>(b.recv) + r.offset;
    case Buffer::kScratch: return static_cast<char*>(sets[0].scratch) + r.offset;
  }
  return nullptr;
}

void run_local_step(const Schedule& s, const Step& st, const Buffers* sets) {
  const size_t elem = reduce::datatype_size(s.datatype);
  auto at = [&](const BufferRange& r) { return buffer_address(sets, r); };
  switch (st.kind) {
    case StepKind::kReduce:
      reduce::reduce(at(st.dst), at(st.src), at(st.src2), st.bytes / elem, s.datatype, s.op);
      break;
    case StepKind::kCopy:
      if (st.bytes > 0 && at(st.dst) != at(st.src)) std::memmove(at(st.dst), at(st.src), st.bytes);
      break;
    case StepKind::kAverage:
      reduce::finish_average(at(st.dst), st.bytes / elem, s.datatype, s.nranks);
      break;
    default: break;
  }
}

Status execute(const Schedule& schedule, const std::vector<Buffers>& buffers, PeerLinks& links,
               const ExecOptions& options) {
  thread_local Workspace per_thread;
  // A PeerLinks that runs another schedule from inside a channel call would find the
  // thread's workspace taken: it gets a fresh one.
  Workspace fresh;
  Workspace& w = per_thread.in_use ? fresh : per_thread;
  w.in_use = true;
  Status s = Run(schedule, buffers, links, options, w).go();
  w.in_use = false;
  w.trim();
  return s;
}

}  // namespace ciuic::coll
