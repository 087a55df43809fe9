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

}  // namespace

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
    const double t = predict_time(args.collective, e.name, bytes, topology, args.chunk_bytes);
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
  static std::map<std::tuple<int, int, int, size_t, uint64_t>, std::string> decisions;
  const int bucket = bucket_of(nccl_bytes(args));
  const auto key = std::make_tuple(static_cast<int>(args.collective), args.nranks, bucket,
                                   args.chunk_bytes, config::configuration_generation());
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
