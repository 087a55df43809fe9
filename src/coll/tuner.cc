#include "coll/tuner.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
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
const config::IntParam kLocalAlphaNs{
    "CIUIC_LOCAL_ALPHA_NS", -1,
    "Tuner: cost of one message between two ranks of a node, in ns; -1: as CIUIC_NET_ALPHA_NS"};
const config::IntParam kLocalMBps{
    "CIUIC_LOCAL_MBPS", 8000,
    "Tuner: bandwidth inside a node (topology nodes:N), per rank and direction, in MB/s"};
const config::IntParam kReduceMBps{"CIUIC_REDUCE_MBPS", 4000,
                                   "Tuner: reduction speed of one rank, in MB/s"};
const config::IntParam kExecOverheadNs{
    "CIUIC_EXEC_OVERHEAD_NS", 20000,
    "Tuner: the executor's own cost per message, in ns, added to a transport's reported "
    "latency where the tuner takes a message's cost from it"};
const config::StringParam kTunerFile{
    "CIUIC_TUNER_FILE", "",
    "Tuner: file of measured cost parameters (ciuic-perf calibrate --write); the "
    "environment's CIUIC_NET_* / CIUIC_LOCAL_* / CIUIC_REDUCE_MBPS win over it"};

const config::StringParam kHierInterAlgo{
    "CIUIC_HIER_INTER_ALGO", "",
    "Hierarchical algorithms: the algorithm between nodes (all-reduce: ring, recursive_doubling, "
    "tree, rabenseifner; reduce-scatter and all-gather: ring, rabenseifner); empty or a name the "
    "collective lacks: the cost model's choice"};
const config::IntParam kHierBlocks{
    "CIUIC_HIER_BLOCKS", 0,
    "Hierarchical all-reduce: blocks the buffer is pipelined in (one block crosses the nodes "
    "while the next is reduced in the node); 0: the cost model's choice"};

// ---- the tuner file ----

constexpr size_t kMaxTunerFileBytes = 64 << 10;

struct FileKey {
  const char* key;
  int64_t lo, hi;
};
constexpr FileKey kFileKeys[] = {
    {"net_alpha_ns", 0, 1000000000}, {"local_alpha_ns", 0, 1000000000},
    {"net_hop_ns", 0, 1000000000},   {"exec_overhead_ns", 0, 1000000000},
    {"net_mbps", 1, 100000000},      {"local_mbps", 1, 100000000},
    {"reduce_mbps", 1, 100000000},
};

bool transport_name_ok(std::string_view v) {
  if (v.empty() || v.size() > 32) return false;
  for (char c : v)
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
      return false;
  return true;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t' || v.front() == '\r'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r'))
    v.remove_suffix(1);
  return v;
}

// The file CIUIC_TUNER_FILE names, read once per (path, configuration generation); a file
// that does not load is said once and counts as none.
std::shared_ptr<const TunerFile> tuner_file(std::string* path_out) {
  static std::mutex mutex;
  static std::string path;
  static uint64_t generation = 0;
  static std::shared_ptr<const TunerFile> file;
  const uint64_t now = config::configuration_generation();
  const std::string wanted = kTunerFile.get();
  std::lock_guard<std::mutex> lock(mutex);
  if (generation != now || path != wanted) {
    generation = now;
    path = wanted;
    file.reset();
    if (!path.empty()) {
      auto loaded = std::make_shared<TunerFile>();
      Status st = read_tuner_file(path, loaded.get());
      if (st.ok()) {
        file = std::move(loaded);
      } else {
        CIUIC_LOG_WARN(log::kColl, "%s; the tuner goes on without it", st.message().c_str());
      }
    }
  }
  *path_out = path;
  return file;
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

// FNV-1a over the cost parameters' bits: part of the decision caches' keys, so that two
// communicators whose links differ never share a decision.
uint64_t params_hash(const CostParams& p) {
  uint64_t h = 1469598103934665603ull;
  for (double v : {p.alpha_s, p.local_alpha_s, p.hop_latency_s, p.link_bytes_per_s,
                   p.local_bytes_per_s, p.gamma_s_per_byte}) {
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(bits));
    for (int k = 0; k < 8; ++k) h = (h ^ ((bits >> (8 * k)) & 0xff)) * 1099511628211ull;
  }
  return h;
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

namespace {

// Says at INFO, once per set of cost parameters, what the tuner models and where each
// figure came from (the environment, the tuner file, the transports, the defaults).
void announce(const TransportCosts* transports, const CostParams& params) {
  static std::mutex mutex;
  static std::set<uint64_t> said;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (said.size() >= 64 || !said.insert(params_hash(params)).second) return;
  }
  std::vector<CostSource> sources;
  resolve_cost_params(transports, &sources);
  std::string text;
  for (const CostSource& c : sources) {
    char one[256];
    std::snprintf(one, sizeof(one), "%s%s=%.0f (%s)", text.empty() ? "" : ", ", c.param.c_str(),
                  c.value, c.source.c_str());
    text += one;
  }
  CIUIC_LOG_INFO(log::kColl, "tuner cost parameters: %s", text.c_str());
}

}  // namespace

bool one_node(const std::vector<int>& node_of_rank) {
  return node_of_rank.size() > 1 &&
         std::all_of(node_of_rank.begin(), node_of_rank.end(),
                     [&](int node) { return node == node_of_rank.front(); });
}

HierarchicalPlan hierarchical_plan(const CollectiveArgs& args,
                                   const std::vector<int>& node_of_rank) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, size_t, size_t, uint64_t, uint64_t, uint64_t>,
                  HierarchicalPlan>
      plans;
  const CostParams params = resolve_cost_params(args.transports.get());
  const auto key = std::make_tuple(static_cast<int>(args.collective), args.nranks, nccl_bytes(args),
                                   args.chunk_bytes, config::configuration_generation(),
                                   layout_hash(&node_of_rank), params_hash(params));
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
  }
  const Topology t = Topology::from_nodes(node_of_rank, params);
  const HierarchicalPlan plan =
      plan_hierarchical(args.collective, nccl_bytes(args), t, args.chunk_bytes,
                        forced_inter(args.collective), forced_blocks());
  std::lock_guard<std::mutex> lock(mutex);
  if (plans.size() >= 1024) plans.clear();
  plans.emplace(key, plan);
  return plan;
}

Status read_tuner_file(const std::string& path, TunerFile* out) {
  const std::string where = "CIUIC_TUNER_FILE " + path;
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid_argument(where + ": cannot open it (" + std::strerror(errno) + ")");
  std::string text(kMaxTunerFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return system_error(where + ": cannot read it");
  return parse_tuner_file(text, where, out);
}

Status parse_tuner_file(std::string_view text, const std::string& name, TunerFile* out) {
  if (text.size() > kMaxTunerFileBytes)
    return invalid_argument(name + ": larger than " + std::to_string(kMaxTunerFileBytes) +
                            " bytes: not a tuner file");
  TunerFile file;
  std::set<std::string> seen;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    const std::string at = name + ": line " + std::to_string(line_no);
    for (char c : line)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\r') ||
          static_cast<unsigned char>(c) >= 0x7f)
        return invalid_argument(at + ": a byte that is not printable text (a damaged file?)");
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    const std::string shown(line.substr(0, 80));
    if (eq == std::string_view::npos)
      return invalid_argument(at + ": '" + shown + "' is not key=value (a truncated file?)");
    const std::string key(trim(line.substr(0, eq)));
    const std::string_view value = trim(line.substr(eq + 1));
    if (!seen.insert(key).second) return invalid_argument(at + ": " + key + " is given twice");
    if (value.empty()) return invalid_argument(at + ": " + key + " has no value");
    if (key == "net_transport" || key == "local_transport") {
      if (!transport_name_ok(value))
        return invalid_argument(at + ": " + key + "=" + std::string(value.substr(0, 40)) +
                                " is not a transport name");
      (key == "net_transport" ? file.net_transport : file.local_transport) = std::string(value);
      continue;
    }
    const FileKey* known = nullptr;
    for (const FileKey& k : kFileKeys)
      if (key == k.key) known = &k;
    if (known == nullptr) {
      std::string keys = "net_transport, local_transport";
      for (const FileKey& k : kFileKeys) keys += std::string(", ") + k.key;
      return invalid_argument(at + ": unknown key '" + key.substr(0, 40) + "' (known: " + keys +
                              ")");
    }
    int64_t v = 0;
    bool digits = true;
    for (char c : value)
      digits = digits && (std::isdigit(static_cast<unsigned char>(c)) || c == '-');
    if (!digits || value.size() > 19 || !config::parse_int(value, &v))
      return invalid_argument(at + ": " + key + "=" + std::string(value.substr(0, 40)) +
                              " is not an integer");
    if (v < known->lo || v > known->hi)
      return invalid_argument(at + ": " + key + "=" + std::to_string(v) + " is out of range (" +
                              std::to_string(known->lo) + " to " + std::to_string(known->hi) + ")");
    file.values[key] = v;
  }
  *out = std::move(file);
  return Status::Ok();
}

std::string format_tuner_file(const TunerFile& file, const std::vector<std::string>& comment) {
  std::string out;
  for (const std::string& c : comment) out += "# " + c + "\n";
  if (!file.net_transport.empty()) out += "net_transport=" + file.net_transport + "\n";
  if (!file.local_transport.empty()) out += "local_transport=" + file.local_transport + "\n";
  for (const FileKey& k : kFileKeys) {
    auto it = file.values.find(k.key);
    if (it != file.values.end())
      out += std::string(k.key) + "=" + std::to_string(it->second) + "\n";
  }
  return out;
}

CostParams resolve_cost_params(const TransportCosts* transports, std::vector<CostSource>* sources) {
  std::string path;
  const std::shared_ptr<const TunerFile> file = tuner_file(&path);
  const TransportCosts* tc = transports;
  // The file's figures of a link, where they were measured on the transport in use (or
  // nothing says which is in use).
  const bool file_net =
      file && (tc == nullptr || file->net_transport.empty() || file->net_transport == tc->network);
  const bool file_local =
      file && (tc == nullptr ? true
                             : !tc->local.empty() && (file->local_transport.empty() ||
                                                      file->local_transport == tc->local));
  auto from_file = [&](bool applies, const char* key, int64_t* v) {
    if (!applies || !file) return false;
    auto it = file->values.find(key);
    if (it == file->values.end()) return false;
    *v = it->second;
    return true;
  };
  struct Resolved {
    double value;
    std::string source;
  };
  // env, then the file, then `fallback` (transport properties or a default), in that order.
  auto pick = [&](const config::IntParam& param, bool file_applies, const char* key,
                  auto fallback) -> Resolved {
    if (param.is_set()) return {static_cast<double>(param.get()), "env"};
    int64_t v = 0;
    if (from_file(file_applies, key, &v)) return {static_cast<double>(v), "file " + path};
    return fallback();
  };
  auto dflt = [](const config::IntParam& param) {
    return [&param]() -> Resolved { return {static_cast<double>(param.get()), "default"}; };
  };
  const Resolved overhead = pick(kExecOverheadNs, true, "exec_overhead_ns", dflt(kExecOverheadNs));
  auto latency_alpha = [&](const std::string& name, double latency_us) {
    char text[160];
    std::snprintf(text, sizeof(text), "transport %s (latency %.2f us + exec overhead %.0f ns)",
                  name.c_str(), latency_us, overhead.value);
    return Resolved{latency_us * 1000 + std::max(overhead.value, 0.0), text};
  };
  auto speed = [](const std::string& name, int64_t mbps) {
    return Resolved{static_cast<double>(mbps) / 8,
                    "transport " + name + " (speed " + std::to_string(mbps) + " Mb/s)"};
  };
  const Resolved alpha = pick(kAlphaNs, file_net, "net_alpha_ns", [&]() -> Resolved {
    if (tc != nullptr && tc->network_latency_us > 0)
      return latency_alpha(tc->network, tc->network_latency_us);
    return dflt(kAlphaNs)();
  });
  const Resolved net = pick(kNetMBps, file_net, "net_mbps", [&]() -> Resolved {
    if (tc != nullptr && tc->network_speed_mbps > 0)
      return speed(tc->network, tc->network_speed_mbps);
    return dflt(kNetMBps)();
  });
  const Resolved hop = pick(kHopNs, file_net, "net_hop_ns", dflt(kHopNs));
  // Without a local transport the ranks of a node talk over the network one.
  const bool no_local = tc != nullptr && tc->local.empty();
  const Resolved local_alpha = pick(kLocalAlphaNs, file_local, "local_alpha_ns", [&]() -> Resolved {
    if (no_local) return {alpha.value, "as the network (no local transport)"};
    if (tc != nullptr && tc->local_latency_us > 0)
      return latency_alpha(tc->local, tc->local_latency_us);
    return {alpha.value, "default (as CIUIC_NET_ALPHA_NS)"};
  });
  const Resolved local = pick(kLocalMBps, file_local, "local_mbps", [&]() -> Resolved {
    if (no_local) return {net.value, "as the network (no local transport)"};
    if (tc != nullptr && tc->local_speed_mbps > 0) return speed(tc->local, tc->local_speed_mbps);
    return dflt(kLocalMBps)();
  });
  const Resolved reduce_rate = pick(kReduceMBps, true, "reduce_mbps", dflt(kReduceMBps));
  // A negative local alpha from the environment means "as the network" (the default's -1).
  const double local_alpha_ns = local_alpha.value < 0 ? alpha.value : local_alpha.value;

  CostParams p;
  p.alpha_s = std::max(alpha.value, 0.0) * 1e-9;
  p.local_alpha_s = std::max(local_alpha_ns, 0.0) * 1e-9;
  p.hop_latency_s = std::max(hop.value, 0.0) * 1e-9;
  p.link_bytes_per_s = std::max(net.value, 1.0) * 1e6;
  p.local_bytes_per_s = std::max(local.value, 1.0) * 1e6;
  p.gamma_s_per_byte = 1.0 / (std::max(reduce_rate.value, 1.0) * 1e6);
  if (sources != nullptr) {
    *sources = {{"CIUIC_NET_ALPHA_NS", p.alpha_s * 1e9, alpha.source},
                {"CIUIC_NET_HOP_NS", p.hop_latency_s * 1e9, hop.source},
                {"CIUIC_NET_MBPS", p.link_bytes_per_s / 1e6, net.source},
                {"CIUIC_LOCAL_ALPHA_NS", p.local_alpha_s * 1e9, local_alpha.source},
                {"CIUIC_LOCAL_MBPS", p.local_bytes_per_s / 1e6, local.source},
                {"CIUIC_REDUCE_MBPS", 1e-6 / p.gamma_s_per_byte, reduce_rate.source},
                {"CIUIC_EXEC_OVERHEAD_NS", overhead.value, overhead.source}};
  }
  return p;
}

CostParams configured_cost_params() { return resolve_cost_params(nullptr); }

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
  static std::map<std::tuple<int, int, int, size_t, uint64_t, uint64_t, uint64_t>, std::string>
      decisions;
  const int bucket = bucket_of(nccl_bytes(args));
  const CostParams params = resolve_cost_params(args.transports.get());
  const auto key = std::make_tuple(static_cast<int>(args.collective), args.nranks, bucket,
                                   args.chunk_bytes, config::configuration_generation(),
                                   layout_hash(args.node_of_rank.get()), params_hash(params));
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = decisions.find(key);
    if (it != decisions.end()) return it->second;
  }
  Topology topology;
  announce(args.transports.get(), params);
  Status s = Topology::parse(kTopology.get(), args.nranks, params, &topology);
  std::string choice;
  if (!s.ok()) {
    CIUIC_LOG_WARN(log::kColl,
                   "the tuner ignores CIUIC_TOPOLOGY: %s; using each collective's first algorithm",
                   s.message().c_str());
  } else {
    // The communicator's nodes, where it knows them and they matter, are the network; so
    // is its one node when all its ranks share it and its transports are known (every
    // message then goes over the local links).
    const std::vector<int>* layout = args.node_of_rank.get();
    if (layout != nullptr && static_cast<int>(layout->size()) == args.nranks &&
        (topology.kind() == Topology::Kind::kFlat || topology.kind() == Topology::Kind::kNodes) &&
        (has_nodes_to_exploit(*layout) || (args.transports != nullptr && one_node(*layout))))
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
