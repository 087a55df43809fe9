// Runs every rank's schedule in one process, with messages passed in memory: the data
// flow check behind the algorithm tests. It enforces what the executor relies on —
// per-peer order, matching sizes, dependencies — and reports a deadlock (a step that can
// never run) naming the rank, step and peer.
#pragma once

#include <vector>

#include "base/status.h"
#include "coll/executor.h"
#include "coll/schedule.h"

namespace ciuic::coll {

// schedules[r] and buffers[r] belong to rank r; scratch buffers must hold
// schedules[r].scratch_bytes.
Status simulate_dataflow(const std::vector<Schedule>& schedules, const std::vector<Buffers>& buffers);

}  // namespace ciuic::coll
