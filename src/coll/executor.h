// The one executor: runs a rank's Schedule over real channels. It posts sends and
// receives as soon as their dependencies complete (in each peer's order, with a bounded
// number in flight), runs reductions and copies as their inputs arrive, and sleeps in
// poll() when nothing can move — never past the deadline, and woken at once by abort.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "coll/schedule.h"
#include "transports/transport.h"

namespace ciuic::coll {

// The executor's view of the communicator's connections. Both channels of every peer the
// schedule names must exist before execute() is called.
class PeerLinks {
 public:
  virtual ~PeerLinks() = default;
  virtual transport::SendChannel* send_channel(int peer) = 0;
  virtual transport::RecvChannel* recv_channel(int peer) = 0;
  virtual std::string describe_peer(int peer) = 0;  // "rank 2 (10.0.0.2:4000)"
};

struct ExecOptions {
  // Names the operation in messages ("allreduce #17 (ring, 4 MiB float32)"); called only
  // when there is something to say.
  std::function<std::string()> label = [] { return std::string("operation"); };
  Deadline deadline = Deadline::never();
  const std::atomic<bool>* aborted = nullptr;  // checked every iteration
  int wake_fd = -1;                     // readable when abort() wants the executor awake
  int max_in_flight = 8;                // per peer and direction, 1..transport::kMaxRequests
  int spin_before_sleep = 64;           // idle iterations before sleeping in poll()
  bool yield_when_idle = true;          // more ranks than cores here: give the core away
};

struct Buffers {
  const void* send = nullptr;
  void* recv = nullptr;
  void* scratch = nullptr;
};

// Where a range points: sets[r.set]'s send or receive buffer, or sets[0]'s scratch (one
// scratch serves a whole group).
char* buffer_address(const Buffers* sets, const BufferRange& r);
// Runs a reduce, copy or average step (the executor's and the simulator's one way).
void run_local_step(const Schedule& schedule, const Step& step, const Buffers* sets);

// buffers[i] backs the steps whose BufferRange::set is i; the scratch of set 0 serves all.
Status execute(const Schedule& schedule, const std::vector<Buffers>& buffers, PeerLinks& links,
               const ExecOptions& options);

}  // namespace ciuic::coll
