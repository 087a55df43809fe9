#include "coll/tuner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include "base/config.h"
#include "base/log.h"
#include "coll/algorithms.h"
#include "coll/torus.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

const config::StringParam kTopology{"CIUIC_TOPOLOGY", "flat",
                                    "Network the tuner models: flat (full bisection), torus:AxBxC "
                                    "(neighbour links, dimension-ordered "
                                    "routes) or nodes:N (N nodes, one NIC each)"};
const config::IntParam kAlphaNs{
    "CIUIC_NET_ALPHA_NS", 25000,
    "Tuner: cost of one message at the sender, in ns (default: loopback TCP here)"};
const config::IntParam kHopNs{"CIUIC_NET_HOP_NS", 1000,
                              "Tuner: latency of one network link, in ns"};
const config::IntParam kNetMBps{
    "CIUIC_NET_MBPS", 2000,
    "Tuner: bandwidth of one network link (flat: of each NIC, each way), in MB/s"};
const config::IntParam kLocalMBps{
    "CIUIC_LOCAL_MBPS", 8000,
    "Tuner: bandwidth inside a node (topology nodes:N), per rank and direction, in MB/s"};
const config::IntParam kReduceMBps{"CIUIC_REDUCE_MBPS", 4000,
                                   "Tuner: reduction speed of one rank, in MB/s"};

const config::StringParam kHierInterAlgo{
    "CIUIC_HIER_INTER_ALGO", "",
    "Hierarchical algorithms: the algorithm between nodes (all-reduce: ring, recursive_doubling, "
    "tree, rabenseifner; reduce-scatter and all-gather: ring, rabenseifner); empty or a name the "
    "collective lacks: the cost model's choice"};
const config::IntParam kHierBlocks{
    "CIUIC_HIER_BLOCKS", 0,
    "Hierarchical all-reduce: blocks the buffer is pipelined in (one block crosses the nodes "
    "while the next is reduced in the node); 0: the cost model's choice"};

double positive(const config::IntParam& p) {
  return static_cast<double>(std::max<int64_t>(p.get(), 1));
}

// Sizes fall in quarter-octave buckets (2^(k/4) <= bytes < 2^((k+1)/4)); one decision,
// taken at the bucket's geometric middle, serves the whole bucket.
int bucket_of(size_t bytes) {
  return bytes == 0 ? -1 : static_cast<int>(std::floor(4 * std::log2(static_cast<double>(bytes))));
}
size_t bucket_middle(int bucket) {
  return bucket < 0 ? 0 : static_cast<size_t>(std::llround(std::exp2((bucket + 0.5) / 4)));
}

size_t nccl_bytes(const CollectiveArgs& a) {
  // nccl-tests' size: all-gather the output, reduce-scatter the input.
  const size_t elem = reduce::datatype_size(a.datatype);
  const bool per_rank = a.collective == Collective::kAllgather ||
                        a.collective == Collective::kReduceScatter ||
                        a.collective == Collective::kAlltoall;
  return a.count * elem * (per_rank ? static_cast<size_t>(a.nranks) : 1);
}

// FNV-1a over a node layout: part of the decision caches' keys.
uint64_t layout_hash(const std::vector<int>* layout) {
  if (layout == nullptr) return 0;
  uint64_t h = 1469598103934665603ull;
  for (int v : *layout)
    h = (h ^ static_cast<uint64_t>(static_cast<uint32_t>(v))) * 1099511628211ull;
  return h ^ layout->size();
}

// CIUIC_HIER_INTER_ALGO where `collective` has that algorithm (never hierarchical itself);
// a name no collective has is said once.
std::string forced_inter(Collective collective) {
  const std::string name = kHierInterAlgo.get();
  if (name.empty()) return "";
  bool known = false;
  for (const AlgorithmEntry& e : registered_algorithms()) {
    if (name != e.name || name == "hierarchical") continue;
    if (e.collective == collective) return name;
    known = true;
  }
  if (!known) {
    static std::mutex mutex;
    static std::string warned;
    std::lock_guard<std::mutex> lock(mutex);
    if (warned != name) {
      warned = name;
      CIUIC_LOG_WARN(log::kColl,
                     "CIUIC_HIER_INTER_ALGO=%s is no algorithm between nodes (ring, "
                     "recursive_doubling, tree, rabenseifner): the cost model chooses",
                     name.c_str());
    }
  }
  return "";
}

int forced_blocks() { return static_cast<int>(std::clamp<int64_t>(kHierBlocks.get(), 0, 1024)); }

}  // namespace

std::shared_ptr<const std::vector<int>> node_layout(const CollectiveArgs& args) {
  if (args.node_of_rank) return args.node_of_rank;
  thread_local int last_n = 0;
  thread_local uint64_t last_generation = 0;
  thread_local std::shared_ptr<const std::vector<int>> last;
  const uint64_t generation = config::configuration_generation();
  if (args.nranks == last_n && generation == last_generation) return last;
  Topology t;
  std::shared_ptr<const std::vector<int>> layout;
  if (configured_topology(args.nranks, &t).ok() && t.kind() == Topology::Kind::kNodes)
    layout = std::make_shared<const std::vector<int>>(t.node_of_rank());
  last_n = args.nranks;
  last_generation = generation;
  last = layout;
  return layout;
}

bool has_nodes_to_exploit(const std::vector<int>& node_of_rank) {
  std::map<int, int> ranks_on;
  for (int node : node_of_rank) ++ranks_on[node];
  if (ranks_on.size() < 2) return false;
  for (const auto& [node, ranks] : ranks_on)
    if (ranks > 1) return true;
  return false;
}

HierarchicalPlan hierarchical_plan(const CollectiveArgs& args,
                                   const std::vector<int>& node_of_rank) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, size_t, size_t, uint64_t, uint64_t>, HierarchicalPlan> plans;
  const auto key = std::make_tuple(static_cast<int>(args.collective), args.nranks, nccl_bytes(args),
                                   args.chunk_bytes, config::configuration_generation(),
                                   layout_hash(&node_of_rank));
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
  }
  const Topology t = Topology::from_nodes(node_of_rank, configured_cost_params());
  const HierarchicalPlan plan =
      plan_hierarchical(args.collective, nccl_bytes(args), t, args.chunk_bytes,
                        forced_inter(args.collective), forced_blocks());
  std::lock_guard<std::mutex> lock(mutex);
  if (plans.size() >= 1024) plans.clear();
  plans.emplace(key, plan);
  return plan;
}

CostParams configured_cost_params() {
  CostParams p;
  p.alpha_s = static_cast<double>(std::max<int64_t>(kAlphaNs.get(), 0)) * 1e-9;
  p.hop_latency_s = static_cast<double>(std::max<int64_t>(kHopNs.get(), 0)) * 1e-9;
  p.link_bytes_per_s = positive(kNetMBps) * 1e6;
  p.local_bytes_per_s = positive(kLocalMBps) * 1e6;
  p.gamma_s_per_byte = 1.0 / (positive(kReduceMBps) * 1e6);
  return p;
}

Status configured_topology(int nranks, Topology* out) {
  return Topology::parse(kTopology.get(), nranks, configured_cost_params(), out);
}

std::vector<Prediction> rank_algorithms(const CollectiveArgs& args, const Topology& topology) {
  std::vector<Prediction> out;
  const size_t bytes = nccl_bytes(args);
  for (const AlgorithmEntry& e : registered_algorithms()) {
    if (e.collective != args.collective) continue;
    if (std::string(e.name) == "torus") {
      std::vector<int> dims;
      if (!torus_dims_for(args, &dims).ok())
        continue;  // the grid configured is for another rank count
    }
    double t = -1;
    if (std::string(e.name) == "hierarchical") {
      // Only where there are nodes to exploit — the communicator's own if it knows them, as
      // the schedule will use them, else the topology's — and not where it would run a
      // flat algorithm (already in the list under its own name).
      Topology own_nodes;
      const Topology* model = &topology;
      if (args.node_of_rank) {
        if (static_cast<int>(args.node_of_rank->size()) != args.nranks ||
            topology.kind() == Topology::Kind::kTorus || !has_nodes_to_exploit(*args.node_of_rank))
          continue;
        own_nodes = Topology::from_nodes(*args.node_of_rank, topology.params());
        model = &own_nodes;
      } else if (topology.kind() != Topology::Kind::kNodes ||
                 !has_nodes_to_exploit(topology.node_of_rank())) {
        continue;
      }
      const HierarchicalPlan plan =
          plan_hierarchical(args.collective, bytes, *model, args.chunk_bytes,
                            forced_inter(args.collective), forced_blocks());
      if (!plan.flat.empty()) continue;
      t = plan.seconds;
    } else {
      t = predict_time(args.collective, e.name, bytes, topology, args.chunk_bytes);
    }
    if (t >= 0) out.push_back({e.name, t});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Prediction& a, const Prediction& b) { return a.seconds < b.seconds; });
  return out;
}

std::string tuned_algorithm(const CollectiveArgs& args) {
  int candidates = 0;
  for (const AlgorithmEntry& e : registered_algorithms())
    candidates += e.collective == args.collective ? 1 : 0;
  if (candidates < 2 || args.nranks < 2) return "";
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int, size_t, uint64_t, uint64_t>, std::string> decisions;
  const int bucket = bucket_of(nccl_bytes(args));
  const auto key =
      std::make_tuple(static_cast<int>(args.collective), args.nranks, bucket, args.chunk_bytes,
                      config::configuration_generation(), layout_hash(args.node_of_rank.get()));
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = decisions.find(key);
    if (it != decisions.end()) return it->second;
  }
  Topology topology;
  Status s = configured_topology(args.nranks, &topology);
  std::string choice;
  if (!s.ok()) {
    CIUIC_LOG_WARN(log::kColl,
                   "the tuner ignores CIUIC_TOPOLOGY: %s; using each collective's first algorithm",
                   s.message().c_str());
  } else {
    // The communicator's nodes, where it knows them and they matter, are the network.
    const std::vector<int>* layout = args.node_of_rank.get();
    if (layout != nullptr && static_cast<int>(layout->size()) == args.nranks &&
        (topology.kind() == Topology::Kind::kFlat || topology.kind() == Topology::Kind::kNodes) &&
        has_nodes_to_exploit(*layout))
      topology = Topology::from_nodes(*layout, topology.params());
    // Decide at the bucket's middle, so that one decision serves the whole bucket.
    CollectiveArgs at_bucket = args;
    const size_t elem = reduce::datatype_size(args.datatype);
    const size_t per =
        (args.collective == Collective::kAllgather ||
         args.collective == Collective::kReduceScatter || args.collective == Collective::kAlltoall)
            ? static_cast<size_t>(args.nranks)
            : 1;
    at_bucket.count = std::max<size_t>(bucket_middle(bucket) / elem / per, args.count > 0 ? 1 : 0);
    const std::vector<Prediction> ranked = rank_algorithms(at_bucket, topology);
    if (!ranked.empty()) choice = ranked.front().algorithm;
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (decisions.size() >= 4096) decisions.clear();
  decisions.emplace(key, choice);
  return choice;
}

}  // namespace ciuic::coll
