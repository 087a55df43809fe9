// The tuner: picks each collective's algorithm from the cost model's predictions for the
// network described by CIUIC_TOPOLOGY and the cost parameters (CIUIC_NET_*, CIUIC_LOCAL_*,
// CIUIC_REDUCE_MBPS). Each parameter comes from the first of: the environment, the file
// CIUIC_TUNER_FILE names (written by `ciuic-perf calibrate`), the properties of the
// transports the communicator uses, the default (loopback TCP on the development
// machine: docs/tuning.md). Decisions are cached per (collective, rank count,
// quarter-octave size bucket, cost parameters), so the model runs once per shape; the
// schedule cache above it means once per communicator.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "coll/cost_model.h"
#include "coll/schedule.h"

namespace ciuic::coll {

// What a communicator knows of the transports it uses, as they report it (0: unknown). The
// network transport reaches every rank; the local one (empty name: none) the ranks of its
// node. The tuner reads the links' figures from it where neither the environment nor the
// tuner file gives them.
struct TransportCosts {
  std::string network;             // "tcp", "ibverbs"
  double network_latency_us = 0;   // one small message, one way
  int64_t network_speed_mbps = 0;  // megabits per second, as DeviceProperties::speed_mbps
  std::string local;               // "shm"; empty: peers on a node use the network one
  double local_latency_us = 0;
  int64_t local_speed_mbps = 0;
};

// The file CIUIC_TUNER_FILE names: `key=value` lines, `#` comments. Keys: net_transport and
// local_transport (which transport the figures below were measured on; figures of another
// transport than the one in use are not applied), net_alpha_ns, local_alpha_ns,
// net_hop_ns, exec_overhead_ns (0 to 10^9), net_mbps, local_mbps, reduce_mbps (1 to 10^8).
struct TunerFile {
  std::string net_transport, local_transport;
  std::map<std::string, int64_t> values;  // by key
};
// Parses a tuner file's text; `name` (the path) prefixes errors. Strict: a line that is
// not `key=value`, an unknown or repeated key, a value that is not an integer in its range
// or a file over 64 KiB is an error naming the line.
Status parse_tuner_file(std::string_view text, const std::string& name, TunerFile* out);
// Reads and parses the file at `path` (errors name it as CIUIC_TUNER_FILE).
Status read_tuner_file(const std::string& path, TunerFile* out);
// The text parse_tuner_file reads back as `file`, after `comment` lines (each given '# ').
std::string format_tuner_file(const TunerFile& file, const std::vector<std::string>& comment);

// One cost parameter as resolved: its name, value (in its unit) and where it came from
// ("env", "file PATH", "transport tcp (speed 10000 Mb/s)", "default", ...).
struct CostSource {
  std::string param;
  double value = 0;
  std::string source;
};
// The cost parameters in force for a communicator whose transports are `transports` (null:
// none known, as for a model run); *sources, if given, gets one entry per parameter. A
// tuner file that does not load is said once (WARN) and left out.
CostParams resolve_cost_params(const TransportCosts* transports,
                               std::vector<CostSource>* sources = nullptr);
// resolve_cost_params(nullptr): the environment, the tuner file, the defaults.
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

// The tuner's choice for args on the configured topology with the cost parameters in force
// for args.transports; "" when it has none (the collective has one algorithm, or the
// topology does not parse). When args.node_of_rank shows several nodes with several ranks
// on some node and CIUIC_TOPOLOGY is flat or nodes, the network modelled is those nodes;
// when it shows one node and args.transports is known, it is that node (local links).
std::string tuned_algorithm(const CollectiveArgs& args);

// Which node each rank is on: args.node_of_rank, else rank r on node r / (nranks / N) when
// CIUIC_TOPOLOGY is nodes:N (or the nodes:A+B+... sizes), else null (unknown).
std::shared_ptr<const std::vector<int>> node_layout(const CollectiveArgs& args);
// Whether a layout gives the hierarchical algorithms something to do: more than one node,
// and more than one rank on some node.
bool has_nodes_to_exploit(const std::vector<int>& node_of_rank);

// Whether every rank of a layout (of more than one rank) is on one node.
bool one_node(const std::vector<int>& node_of_rank);

// The hierarchical algorithms' plan for args on `node_of_rank` with the cost parameters in
// force for args.transports, CIUIC_HIER_INTER_ALGO and CIUIC_HIER_BLOCKS (cached per shape).
HierarchicalPlan hierarchical_plan(const CollectiveArgs& args,
                                   const std::vector<int>& node_of_rank);

}  // namespace ciuic::coll
