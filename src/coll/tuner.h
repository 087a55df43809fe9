// The tuner: picks each collective's algorithm from the cost model's predictions for the
// network described by CIUIC_TOPOLOGY and the CIUIC_NET_* / CIUIC_REDUCE_* parameters
// (defaults measured over loopback TCP on the development machine: docs/tuning.md).
// Decisions are cached per (collective, rank count, quarter-octave size bucket), so the
// model runs once per shape; the schedule cache above it means once per communicator.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "coll/cost_model.h"
#include "coll/schedule.h"

namespace ciuic::coll {

// The cost parameters in force (CIUIC_NET_ALPHA_NS, CIUIC_NET_HOP_NS, CIUIC_NET_MBPS,
// CIUIC_LOCAL_MBPS, CIUIC_REDUCE_MBPS).
CostParams configured_cost_params();
// CIUIC_TOPOLOGY for nranks ranks, with configured_cost_params().
Status configured_topology(int nranks, Topology* out);

struct Prediction {
  std::string algorithm;
  double seconds = 0;
};
// Every registered algorithm of `collective` that can run on `nranks` ranks with these
// arguments (torus: a grid of that size), with its predicted time, fastest first.
std::vector<Prediction> rank_algorithms(const CollectiveArgs& args, const Topology& topology);

// The tuner's choice for args on the configured topology; "" when it has none (the
// collective has one algorithm, or the topology does not parse).
std::string tuned_algorithm(const CollectiveArgs& args);

}  // namespace ciuic::coll
