// The cost model: how long a collective takes on a network, under alpha-beta-gamma with
// per-link latency and bandwidth and link contention.
//
// A Topology says which directed links a message between two ranks occupies: "flat"
// (full bisection: each rank's NIC, out and in, is its only constraint), "torus:AxBxC"
// (ranks on a grid; a link per neighbour and direction; other pairs route dimension by
// dimension, so far messages share links), and "nodes:N" (N nodes of n/N ranks: a
// fast link per rank inside the node, one NIC per node between nodes, shared by its
// ranks; "nodes:3+2" gives the nodes' sizes in rank order, and from_nodes() any layout,
// e.g. the communicator's own).
//
// Two predictors share it. predict_time() describes each algorithm as rounds of
// concurrent messages and charges each round alpha per message sent by the busiest rank,
// the largest per-link load over its bandwidth, the longest route's hop latency, and
// gamma per byte reduced: cheap at any rank count, the tuner's input. simulate_time()
// runs the real schedules event by event, each message holding every link of its route
// while it transfers: exact for the schedule, but its cost grows with all ranks' steps.
// Tests hold the two to each other.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "coll/schedule.h"

namespace ciuic::coll {

struct CostParams {
  double alpha_s = 20e-6;            // per message, at the sender: software and NIC overhead
  double local_alpha_s = 20e-6;      // the same for a message inside a node (nodes:N)
  double hop_latency_s = 1e-6;       // per link crossed
  double link_bytes_per_s = 12.5e9;  // each network link (flat: each NIC, each direction)
  double local_bytes_per_s = 50e9;   // inside a node (nodes:N), per rank and direction
  double gamma_s_per_byte = 0.1e-9;  // reducing one byte (about 10 GB/s)
};

class Topology {
 public:
  enum class Kind { kFlat, kTorus, kNodes };

  // "flat", "torus:16x16x16" (product = nranks; "torus" alone: the balanced grid),
  // "nodes:N" (N nodes; nranks divisible by N; rank r on node r / (nranks / N)),
  // "nodes:3+2+..." (nodes of these sizes, in rank order; the sizes add up to nranks).
  static Status parse(std::string_view text, int nranks, const CostParams& params, Topology* out);
  // Nodes of any layout: node_of_rank[r] is rank r's node (any non-negative labels).
  static Topology from_nodes(const std::vector<int>& node_of_rank, const CostParams& params);

  Kind kind() const { return kind_; }
  int nranks() const { return nranks_; }
  const std::vector<int>& dims() const { return dims_; }
  const CostParams& params() const { return params_; }
  // Parses back to the same topology, unless from_nodes() gave nodes out of rank order
  // ("nodes:2 (interleaved)").
  std::string describe() const;
  // Nodes: rank r's node, numbered 0.. in order of first appearance; the count of nodes.
  const std::vector<int>& node_of_rank() const { return node_of_; }
  int num_nodes() const { return nodes_; }
  int num_links() const;
  double link_bytes_per_s(int link) const;
  // The per-message cost of a message from src to dst: local_alpha_s between two ranks of
  // one node (nodes), alpha_s otherwise.
  double alpha_s(int src, int dst) const;
  // Appends the links a message from src to dst occupies; returns how many it crosses.
  int route(int src, int dst, std::vector<int>* links) const;

 private:
  Kind kind_ = Kind::kFlat;
  int nranks_ = 1;
  std::vector<int> dims_;     // torus: three sizes
  std::vector<int> node_of_;  // nodes: each rank's node
  int nodes_ = 1;
  CostParams params_;
};

// Predicted seconds for one collective of `bytes` (nccl-tests' size: all-gather the
// output, reduce-scatter the input) with `algorithm` on `topology`, or a negative value
// when the model does not know the algorithm. chunk_bytes is the pipelining chunk.
double predict_time(Collective collective, std::string_view algorithm, size_t bytes,
                    const Topology& topology, size_t chunk_bytes);

// The hierarchical algorithms (hierarchical.cc) on a nodes topology: the ranks of each
// node reduce-scatter among themselves, the ranks holding the same slice on different
// nodes run an all-reduce (`inter`) among themselves, the node all-gathers; the buffer
// goes through in `blocks` pipelined blocks (all-reduce). Nodes larger than the smallest
// fold their extra ranks into the others first. Layouts with nothing to gain (one node,
// one rank per node; for reduce-scatter and all-gather also nodes of unequal sizes) run
// the flat algorithm `flat` instead.
struct HierarchicalPlan {
  std::string flat;   // non-empty: the flat algorithm that runs instead
  std::string inter;  // the algorithm among the nodes
  int blocks = 1;
  double seconds = -1;  // predicted; negative: not a nodes topology or not a collective it has
};
// The fastest plan the model knows for `bytes` (nccl-tests' size) on `topology`; a
// non-empty `inter` or positive `blocks` is taken as given instead of searched for.
HierarchicalPlan plan_hierarchical(Collective collective, size_t bytes, const Topology& topology,
                                   size_t chunk_bytes, std::string_view inter = "", int blocks = 0);

// Runs schedules[r] for every rank r on `topology` (no data moves) and returns the time
// the last rank finishes. Messages match as in simulate_dataflow; a send is posted alpha
// after its dependencies are done (one at a time per rank), then crosses its route's
// links one after another, each for bytes/bandwidth once free (switches buffer); the
// receiver has it hop latencies after the last link. Reductions cost gamma per
// byte on their rank, copies half that, one at a time per rank.
Status simulate_time(const std::vector<Schedule>& schedules, const Topology& topology,
                     double* seconds);

}  // namespace ciuic::coll
