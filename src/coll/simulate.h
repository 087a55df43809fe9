// Runs every rank's schedule in one process, with messages passed in memory: the data
// flow check behind the algorithm tests. It enforces what the executor relies on —
// per-peer order, matching sizes, dependencies on earlier steps only, peers inside the
// communicator, buffers that exist, scratch within scratch_bytes — and reports a
// deadlock (a receive whose message never comes) naming the rank, step and peer.
//
// check_hazards() is the static half: it proves one rank's schedule free of data races
// under any execution order the executor may pick, which one simulated run cannot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/status.h"
#include "coll/executor.h"
#include "coll/schedule.h"

namespace ciuic::coll {

struct SimulateOptions {
  // 0 runs steps in a fixed order; any other value picks among the runnable steps at
  // random (seeded, reproducible), to show that results do not depend on one order.
  uint64_t order_seed = 0;
};

// schedules[r] and buffers[r] belong to rank r (rank and nranks must agree); scratch
// buffers must hold schedules[r].scratch_bytes. Runs in time about linear in the number
// of steps and bytes moved.
Status simulate_dataflow(const std::vector<Schedule>& schedules, const std::vector<Buffers>& buffers,
                         const SimulateOptions& options = {});

// Which of one rank's buffers share memory. NCCL's in-place reduce_scatter has recvbuf
// inside sendbuf (recvbuf == sendbuf + rank * count), so those bytes are one location.
struct BufferAliasing {
  bool recv_inside_send = false;
  size_t recv_offset_in_send = 0;  // bytes
};

// Finds two steps of `schedule` that touch overlapping bytes of the same buffer, at least
// one of them writing (receive, reduce, copy and average destinations; sends and
// reduce/copy sources read), with neither ordered before the other by the transitive
// closure of dependencies. The first such pair is an internal_error naming both steps.
// Costs steps^2/8 bytes of memory; refuses schedules over kMaxHazardCheckSteps steps.
inline constexpr size_t kMaxHazardCheckSteps = 1 << 15;
Status check_hazards(const Schedule& schedule, const BufferAliasing& aliasing = {});

}  // namespace ciuic::coll
