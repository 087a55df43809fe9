// The tuner: picks each collective's algorithm from the cost model's predictions for the
// network described by CIUIC_TOPOLOGY and the CIUIC_NET_* / CIUIC_REDUCE_* parameters
// (defaults measured over loopback TCP on the development machine: docs/tuning.md).
// Decisions are cached per (collective, rank count, quarter-octave size bucket), so the
// model runs once per shape; the schedule cache above it means once per communicator.
#pragma once

#include <memory>
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
// collective has one algorithm, or the topology does not parse). When args.node_of_rank
// shows several nodes with several ranks on some node and CIUIC_TOPOLOGY is flat or
// nodes, the network modelled is those nodes.
std::string tuned_algorithm(const CollectiveArgs& args);

// Which node each rank is on: args.node_of_rank, else rank r on node r / (nranks / N) when
// CIUIC_TOPOLOGY is nodes:N (or the nodes:A+B+... sizes), else null (unknown).
std::shared_ptr<const std::vector<int>> node_layout(const CollectiveArgs& args);
// Whether a layout gives the hierarchical algorithms something to do: more than one node,
// and more than one rank on some node.
bool has_nodes_to_exploit(const std::vector<int>& node_of_rank);

// The hierarchical algorithms' plan for args on `node_of_rank` with the configured cost
// parameters, CIUIC_HIER_INTER_ALGO and CIUIC_HIER_BLOCKS (cached per shape).
HierarchicalPlan hierarchical_plan(const CollectiveArgs& args,
                                   const std::vector<int>& node_of_rank);

}  // namespace ciuic::coll
