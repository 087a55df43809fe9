// The algorithms: each builds one rank's schedule for one collective. The table in
// algorithms.cc has one line per (collective, algorithm).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "coll/schedule.h"

namespace ciuic::coll {

using ScheduleBuilder = Status (*)(const CollectiveArgs& args, Schedule* out);

struct AlgorithmEntry {
  Collective collective;
  const char* name;
  ScheduleBuilder build;
};

const std::vector<AlgorithmEntry>& registered_algorithms();

// The algorithm "auto" picks for these arguments.
const char* default_algorithm(const CollectiveArgs& args);

// Builds args' schedule with `algorithm` ("" or "auto": default_algorithm(args)).
// Unknown names are an error that lists the known ones.
Status build_schedule(const CollectiveArgs& args, std::string_view algorithm, Schedule* out);

Status build_ring_allreduce(const CollectiveArgs& a, Schedule* s);
Status build_recursive_doubling_allreduce(const CollectiveArgs& a, Schedule* s);
Status build_double_tree_allreduce(const CollectiveArgs& a, Schedule* s);
Status build_tree_broadcast(const CollectiveArgs& a, Schedule* s);
Status build_tree_reduce(const CollectiveArgs& a, Schedule* s);
Status build_rabenseifner_allreduce(const CollectiveArgs& a, Schedule* s);
Status build_rabenseifner_reduce_scatter(const CollectiveArgs& a, Schedule* s);
Status build_rabenseifner_allgather(const CollectiveArgs& a, Schedule* s);
Status build_torus_allreduce(const CollectiveArgs& a, Schedule* s);
Status build_torus_reduce_scatter(const CollectiveArgs& a, Schedule* s);
Status build_torus_allgather(const CollectiveArgs& a, Schedule* s);
Status build_hierarchical_allreduce(const CollectiveArgs& a, Schedule* s);
Status build_hierarchical_reduce_scatter(const CollectiveArgs& a, Schedule* s);
Status build_hierarchical_allgather(const CollectiveArgs& a, Schedule* s);
Status build_ring_reduce_scatter(const CollectiveArgs& a, Schedule* s);
Status build_ring_allgather(const CollectiveArgs& a, Schedule* s);
Status build_chain_broadcast(const CollectiveArgs& a, Schedule* s);
Status build_chain_reduce(const CollectiveArgs& a, Schedule* s);
Status build_pairwise_alltoall(const CollectiveArgs& a, Schedule* s);
Status build_dissemination_barrier(const CollectiveArgs& a, Schedule* s);
Status build_direct_send(const CollectiveArgs& a, Schedule* s);
Status build_direct_recv(const CollectiveArgs& a, Schedule* s);

}  // namespace ciuic::coll
