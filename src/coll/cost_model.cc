#include "coll/cost_model.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "base/config.h"
#include "coll/builder.h"
#include "coll/torus.h"
#include "coll/tree.h"

namespace ciuic::coll {

Status Topology::parse(std::string_view text, int nranks, const CostParams& params, Topology* out) {
  Topology t;
  t.nranks_ = nranks;
  t.params_ = params;
  const std::string spec(text);
  if (spec.empty() || spec == "flat") {
    t.kind_ = Kind::kFlat;
  } else if (spec == "torus" || spec.rfind("torus:", 0) == 0) {
    t.kind_ = Kind::kTorus;
    if (spec == "torus") {
      t.dims_ = balanced_dims(nranks);
    } else {
      Status st = parse_torus_dims(spec.substr(6), nranks, &t.dims_);
      if (!st.ok()) return invalid_argument("topology '" + spec + "': " + st.message());
    }
  } else if (spec.rfind("nodes:", 0) == 0) {
    const std::string sizes = spec.substr(6);
    std::vector<int> node_of;
    if (sizes.find('+') == std::string::npos) {
      int64_t nodes = 0;
      if (!config::parse_int(sizes, &nodes) || nodes < 1 || nranks % nodes != 0)
        return invalid_argument("topology '" + spec + "': want nodes:N with N dividing the " +
                                std::to_string(nranks) + " ranks, or nodes:A+B+... of sizes " +
                                "adding up to them");
      const int local = nranks / static_cast<int>(nodes);
      for (int r = 0; r < nranks; ++r) node_of.push_back(r / local);
    } else {
      size_t start = 0;
      for (int node = 0; start <= sizes.size(); ++node) {
        size_t end = sizes.find('+', start);
        if (end == std::string::npos) end = sizes.size();
        int64_t size = 0;
        if (!config::parse_int(sizes.substr(start, end - start), &size) || size < 1 ||
            static_cast<int64_t>(node_of.size()) + size > nranks)
          return invalid_argument("topology '" + spec + "': want node sizes A+B+... adding up to " +
                                  std::to_string(nranks));
        node_of.insert(node_of.end(), static_cast<size_t>(size), node);
        start = end + 1;
      }
      if (static_cast<int>(node_of.size()) != nranks)
        return invalid_argument("topology '" + spec + "': the node sizes add up to " +
                                std::to_string(node_of.size()) + ", not to the " +
                                std::to_string(nranks) + " ranks");
    }
    t = from_nodes(node_of, params);
  } else {
    return invalid_argument("topology '" + spec + "': want flat, torus:AxBxC or nodes:N");
  }
  *out = std::move(t);
  return Status::Ok();
}

Topology Topology::from_nodes(const std::vector<int>& node_of_rank, const CostParams& params) {
  Topology t;
  t.kind_ = Kind::kNodes;
  t.nranks_ = static_cast<int>(node_of_rank.size());
  t.params_ = params;
  std::unordered_map<int, int> number;  // node label -> number, in order of first appearance
  t.node_of_.reserve(node_of_rank.size());
  for (int label : node_of_rank)
    t.node_of_.push_back(number.emplace(label, static_cast<int>(number.size())).first->second);
  t.nodes_ = std::max<int>(1, static_cast<int>(number.size()));
  return t;
}

std::string Topology::describe() const {
  switch (kind_) {
    case Kind::kFlat:
      return "flat";
    case Kind::kTorus:
      return "torus:" + std::to_string(dims_[0]) + "x" + std::to_string(dims_[1]) + "x" +
             std::to_string(dims_[2]);
    case Kind::kNodes: {
      std::vector<int> sizes(static_cast<size_t>(nodes_), 0);
      bool in_order = true;
      for (int r = 0; r < nranks_; ++r) {
        ++sizes[node_of_[r]];
        if (r > 0 && node_of_[r] != node_of_[r - 1] && node_of_[r] != node_of_[r - 1] + 1)
          in_order = false;
      }
      if (!in_order) return "nodes:" + std::to_string(nodes_) + " (interleaved)";
      if (std::all_of(sizes.begin(), sizes.end(), [&](int k) { return k == sizes[0]; }))
        return "nodes:" + std::to_string(nodes_);
      std::string out = "nodes:";
      for (size_t k = 0; k < sizes.size(); ++k) out += (k ? "+" : "") + std::to_string(sizes[k]);
      return out;
    }
  }
  return "?";
}

// Link numbering. flat: rank r's NIC out (r) and in (n + r). torus: (r*3 + dim)*2 + dir,
// the link leaving r along dim in direction dir (0 up, 1 down). nodes: rank r's local
// link out (r) and in (n + r), node k's NIC out (2n + k) and in (2n + nodes + k).
int Topology::num_links() const {
  switch (kind_) {
    case Kind::kFlat:
      return 2 * nranks_;
    case Kind::kTorus:
      return 6 * nranks_;
    case Kind::kNodes:
      return 2 * nranks_ + 2 * nodes_;
  }
  return 0;
}

double Topology::link_bytes_per_s(int link) const {
  if (kind_ == Kind::kNodes && link < 2 * nranks_) return params_.local_bytes_per_s;
  return params_.link_bytes_per_s;
}

double Topology::alpha_s(int src, int dst) const {
  if (kind_ == Kind::kNodes && node_of_[src] == node_of_[dst]) return params_.local_alpha_s;
  return params_.alpha_s;
}

int Topology::route(int src, int dst, std::vector<int>* links) const {
  switch (kind_) {
    case Kind::kFlat:
      links->push_back(src);
      links->push_back(nranks_ + dst);
      return 1;
    case Kind::kNodes: {
      const int a = node_of_[src], b = node_of_[dst];
      if (a == b) {
        links->push_back(src);
        links->push_back(nranks_ + dst);
        return 1;
      }
      links->push_back(2 * nranks_ + a);
      links->push_back(2 * nranks_ + nodes_ + b);
      return 1;
    }
    case Kind::kTorus: {
      int hops = 0, at_rank = src, stride = 1;
      for (int dim = 0; dim < 3; ++dim) {
        const int d = dims_[dim];
        const int from = at_rank / stride % d, to = dst / stride % d;
        const int up = wrap_rank(to - from, d), down = d - up;
        const int dir = up <= down ? 0 : 1;
        for (int step = 0, steps = std::min(up, down); step < steps; ++step) {
          links->push_back((at_rank * 3 + dim) * 2 + dir);
          const int coord = at_rank / stride % d;
          const int next = wrap_rank(coord + (dir == 0 ? 1 : -1), d);
          at_rank += (next - coord) * stride;
          ++hops;
        }
        stride *= d;
      }
      return hops;
    }
  }
  return 0;
}

namespace {

// One round of concurrent messages.
struct Flow {
  int src, dst;
  double bytes;
};

// One round of messages, each cut into chunks of at most `chunk` bytes. Per chunk: alpha
// at the sender, the transfer at the most loaded link's bandwidth, the reduction at gamma;
// chunks pipeline, so a round of m chunks costs the first chunk whole plus m-1 times the
// slowest of the three.
class RoundCost {
 public:
  RoundCost(const Topology& t, double chunk)
      : t_(t), chunk_(chunk), load_(static_cast<size_t>(t.num_links()), 0.0) {}

  struct Parts {
    double fixed = 0;   // alpha + hop latency of the longest route
    double first = 0;   // transfer + reduction of one chunk
    double period = 0;  // per further chunk: the slowest of alpha, transfer, reduction
    double chunks = 1;  // chunks the busiest sender sends
    double whole() const { return fixed + first + (chunks - 1) * period; }
  };

  Parts parts(const std::vector<Flow>& flows, double reduce_bytes) {
    std::fill(load_.begin(), load_.end(), 0.0);
    per_sender_.assign(static_cast<size_t>(t_.nranks()), 0.0);
    int hops = 0;
    double chunks = 1;
    double alpha = flows.empty() ? t_.params().alpha_s : 0;  // the slowest message's
    for (const Flow& f : flows) {
      links_.clear();
      hops = std::max(hops, t_.route(f.src, f.dst, &links_));
      alpha = std::max(alpha, t_.alpha_s(f.src, f.dst));
      per_sender_[f.src] += std::max(1.0, std::ceil(f.bytes / chunk_));
      chunks = std::max(chunks, per_sender_[f.src]);
      for (int l : links_) load_[l] += f.bytes;
    }
    double transfer = 0;
    for (const Flow& f : flows) {
      links_.clear();
      t_.route(f.src, f.dst, &links_);
      for (int l : links_) transfer = std::max(transfer, load_[l] / t_.link_bytes_per_s(l));
    }
    const CostParams& p = t_.params();
    Parts out;
    out.chunks = chunks;
    out.fixed = alpha + hops * p.hop_latency_s;
    const double tc = transfer / chunks, rc = reduce_bytes * p.gamma_s_per_byte / chunks;
    out.first = tc + rc;
    out.period = std::max({alpha, tc, rc});
    return out;
  }
  double operator()(const std::vector<Flow>& flows, double reduce_bytes) {
    return parts(flows, reduce_bytes).whole();
  }

 private:
  const Topology& t_;
  double chunk_;
  std::vector<double> load_;
  std::vector<int> links_;
  std::vector<double> per_sender_;
};

// Flows of every rank to rank + offset.
std::vector<Flow> shifted(int n, int offset, double bytes) {
  std::vector<Flow> flows;
  for (int r = 0; r < n; ++r) flows.push_back({r, wrap_rank(r + offset, n), bytes});
  return flows;
}

// The non-power-of-two fold: ranks 2i hand `bytes` to 2i+1 (or back).
std::vector<Flow> fold_flows(int n, double bytes, bool back) {
  std::vector<Flow> flows;
  int p = 1;
  while (p * 2 <= n) p *= 2;
  for (int i = 0; i < n - p; ++i)
    flows.push_back(back ? Flow{2 * i + 1, 2 * i, bytes} : Flow{2 * i, 2 * i + 1, bytes});
  return flows;
}

// Recursive halving (or doubling) partners among the p virtual ranks at distance mask.
std::vector<Flow> butterfly(int n, int mask, double bytes) {
  int p = 1;
  while (p * 2 <= n) p *= 2;
  const int rem = n - p;
  auto real = [&](int v) { return v < rem ? 2 * v + 1 : v + rem; };
  std::vector<Flow> flows;
  for (int v = 0; v < p; ++v) flows.push_back({real(v), real(v ^ mask), bytes});
  return flows;
}

// Both trees' edges (double tree over all n ranks, or the rooted pair over n-1 ranks
// fed by the root), upward or downward, each carrying `bytes`; and the trees' depth.
std::vector<Flow> tree_flows(int n, bool rooted, bool up, double bytes, int* depth) {
  std::vector<Flow> flows;
  const int m = rooted ? n - 1 : n;
  *depth = 1;
  for (int which = 0; which < 2; ++which) {
    auto to_rank = [&](int index) { return rooted ? index + 1 : index; };
    if (rooted && m >= 1)
      flows.push_back(up ? Flow{to_rank(tree_index(which, 0, m)), 0, bytes}
                         : Flow{0, to_rank(tree_index(which, 0, m)), bytes});
    for (int label = 0; label < m; ++label) {
      const TreeNode node = binary_tree_node(label, m);
      const int me = to_rank(tree_index(which, label, m));
      for (int c : node.children) {
        const int child = to_rank(tree_index(which, c, m));
        flows.push_back(up ? Flow{child, me, bytes} : Flow{me, child, bytes});
      }
    }
  }
  int levels = 0;
  while ((1 << levels) < m) ++levels;
  *depth = levels + (rooted ? 2 : 1);
  return flows;
}

// Torus rings along `dim` in both directions, each carrying `bytes`.
std::vector<Flow> torus_rings(const std::vector<int>& dims, int dim, double bytes) {
  std::vector<Flow> flows;
  const int n = dims[0] * dims[1] * dims[2];
  int stride = 1;
  for (int d = 0; d < dim; ++d) stride *= dims[d];
  for (int r = 0; r < n; ++r) {
    const int coord = r / stride % dims[dim];
    flows.push_back({r, r + (wrap_rank(coord + 1, dims[dim]) - coord) * stride, bytes});
    flows.push_back({r, r + (wrap_rank(coord - 1, dims[dim]) - coord) * stride, bytes});
  }
  return flows;
}

double ceil_div(double a, double b) { return b <= 0 ? 1 : std::max(1.0, std::ceil(a / b)); }

}  // namespace

double predict_time(Collective c, std::string_view algorithm, size_t bytes_total, const Topology& t,
                    size_t chunk) {
  const int n = t.nranks();
  const double S = static_cast<double>(bytes_total),
               C = static_cast<double>(std::max<size_t>(chunk, 1));
  if (n == 1) return t.params().gamma_s_per_byte * S / 2;  // a local copy
  RoundCost round(t, C);
  int p = 1;
  while (p * 2 <= n) p *= 2;
  const bool folded = p != n;
  const std::string a(algorithm);
  const bool reduces =
      c == Collective::kAllreduce || c == Collective::kReduceScatter || c == Collective::kReduce;
  if (a == "ring") {
    const double seg = S / n;
    const std::vector<Flow> flows = shifted(n, 1, seg);
    if (c == Collective::kAllreduce) return (n - 1) * (round(flows, seg) + round(flows, 0));
    if (c == Collective::kReduceScatter) return (n - 1) * round(flows, seg);
    if (c == Collective::kAllgather) return (n - 1) * round(flows, 0);
    return -1;
  }
  if (a == "recursive_doubling" && c == Collective::kAllreduce) {
    RoundCost whole(t, S);  // whole-buffer messages: nothing to pipeline
    double time = folded ? whole(fold_flows(n, S, false), S) + whole(fold_flows(n, S, true), 0) : 0;
    for (int mask = 1; mask < p; mask *= 2) time += whole(butterfly(n, mask, S), S);
    return time;
  }
  if (a == "rabenseifner") {
    // Reduce-scatter halves what is left each round; all-gather doubles it back.
    const double whole = S;
    double time = 0;
    if (folded)
      time += c == Collective::kAllgather ? round(fold_flows(n, whole / n, false), 0)
                                          : round(fold_flows(n, whole, false), whole);
    if (c != Collective::kAllgather) {
      double part = whole;
      for (int mask = p / 2; mask >= 1; mask /= 2) {
        part /= 2;
        time += round(butterfly(n, mask, part), part);
      }
    }
    if (c != Collective::kReduceScatter) {
      double part = whole / p;
      for (int mask = 1; mask < p; mask *= 2) {
        time += round(butterfly(n, mask, part), 0);
        part *= 2;
      }
    }
    if (folded)
      time += round(fold_flows(n, c == Collective::kReduceScatter ? whole / n : whole, true), 0);
    return c == Collective::kReduce || c == Collective::kBroadcast ? -1 : time;
  }
  if (a == "tree") {
    int depth = 1;
    if (c == Collective::kAllreduce) {
      // Pipelined: the first chunk climbs and descends the trees; later chunks follow at
      // the pace of the busiest rank, which sends and receives up and down at once.
      const double ch = std::min(C, S / 2), k = ceil_div(S / 2, C);
      const std::vector<Flow> up = tree_flows(n, false, true, ch, &depth);
      const std::vector<Flow> down = tree_flows(n, false, false, ch, &depth);
      std::vector<Flow> both = up;
      both.insert(both.end(), down.begin(), down.end());
      const auto u = round.parts(up, 2 * ch), d = round.parts(down, 0),
                 b = round.parts(both, 2 * ch);
      return depth * (u.fixed + u.first + d.fixed + d.first) + (k - 1) * b.chunks * b.period;
    }
    if (c == Collective::kBroadcast || c == Collective::kReduce) {
      const double ch = std::min(C, S / 2), k = ceil_div(S / 2, C);
      const auto f = round.parts(tree_flows(n, true, c == Collective::kReduce, ch, &depth),
                                 reduces ? 2 * ch : 0);
      return depth * (f.fixed + f.first) + (k - 1) * f.chunks * f.period;
    }
    return -1;
  }
  if (a == "chain" && (c == Collective::kBroadcast || c == Collective::kReduce)) {
    const double ch = std::min(C, S), k = ceil_div(S, C);
    const auto f = round.parts(shifted(n, 1, ch), reduces ? ch : 0);
    return (n - 1) * (f.fixed + f.first) + (k - 1) * f.period;
  }
  if (a == "torus") {
    std::vector<int> dims = t.kind() == Topology::Kind::kTorus ? t.dims() : balanced_dims(n);
    double time = 0;
    if (c == Collective::kAllreduce) {
      double part = S;
      std::vector<double> parts;
      for (int dim = 0; dim < 3; ++dim) {
        if (dims[dim] == 1) continue;
        const double seg = part / dims[dim];
        time += (dims[dim] - 1) * round(torus_rings(dims, dim, seg / 2), seg);
        parts.push_back(seg);
        part = seg;
      }
      int i = static_cast<int>(parts.size());
      for (int dim = 2; dim >= 0; --dim) {
        if (dims[dim] == 1) continue;
        time += (dims[dim] - 1) * round(torus_rings(dims, dim, parts[--i] / 2), 0);
      }
      return time;
    }
    if (c == Collective::kAllgather || c == Collective::kReduceScatter) {
      const double block = S / n;
      double gathered = 1;  // blocks per segment
      for (int k = 0; k < 3; ++k) {
        const int dim = c == Collective::kAllgather ? k : 2 - k;
        if (dims[dim] == 1) continue;
        double below = 1;
        for (int d = 0; d < dim; ++d) below *= dims[d];
        const double seg = (c == Collective::kAllgather ? gathered : below) * block;
        time += (dims[dim] - 1) * round(torus_rings(dims, dim, seg / 2), reduces ? seg : 0);
        gathered *= dims[dim];
      }
      return time;
    }
    return -1;
  }
  if (a == "hierarchical") return plan_hierarchical(c, bytes_total, t, chunk).seconds;
  if (a == "pairwise" && c == Collective::kAlltoall) {
    // Rounds differ only in the offset; at scale, a sample of offsets stands for all.
    const int samples = std::min(n - 1, 32);
    double sum = 0;
    for (int i = 0; i < samples; ++i) sum += round(shifted(n, 1 + i * (n - 1) / samples, S / n), 0);
    return sum / samples * (n - 1);
  }
  if (a == "dissemination" && c == Collective::kBarrier) {
    double time = 0;
    for (int d = 1; d < n; d *= 2) time += round(shifted(n, d, 0), 0);
    return time;
  }
  return -1;
}

// ---- the hierarchical algorithms ----

namespace {

Topology flat_of(int n, double link_bytes_per_s, double alpha_s, const CostParams& p) {
  CostParams q = p;
  q.link_bytes_per_s = link_bytes_per_s;
  q.alpha_s = alpha_s;
  Topology t;
  (void)Topology::parse("flat", n, q, &t);  // "flat" always parses
  return t;
}

// The flat algorithm that runs where the layout has nothing to gain: the fastest the
// model knows (as the tuner would pick).
HierarchicalPlan flat_plan(Collective c, size_t bytes, const Topology& t, size_t chunk) {
  HierarchicalPlan plan;
  std::vector<const char*> names = {"ring", "rabenseifner", "torus"};
  if (c == Collective::kAllreduce)
    names = {"ring", "recursive_doubling", "tree", "rabenseifner", "torus"};
  for (const char* name : names) {
    const double seconds = predict_time(c, name, bytes, t, chunk);
    if (seconds >= 0 && (plan.seconds < 0 || seconds < plan.seconds)) {
      plan.flat = name;
      plan.seconds = seconds;
    }
  }
  return plan;
}

}  // namespace

HierarchicalPlan plan_hierarchical(Collective c, size_t bytes_total, const Topology& t,
                                   size_t chunk, std::string_view inter, int blocks) {
  HierarchicalPlan best;
  if (t.kind() != Topology::Kind::kNodes) return best;
  if (c != Collective::kAllreduce && c != Collective::kReduceScatter && c != Collective::kAllgather)
    return best;
  const int n = t.nranks(), nodes = t.num_nodes();
  std::vector<std::vector<int>> members(static_cast<size_t>(nodes));
  for (int r = 0; r < n; ++r) members[t.node_of_rank()[r]].push_back(r);
  size_t smallest = members[0].size(), largest = 0;
  for (const auto& m : members) {
    smallest = std::min(smallest, m.size());
    largest = std::max(largest, m.size());
  }
  if (nodes < 2 || largest < 2 || (c != Collective::kAllreduce && smallest != largest))
    return flat_plan(c, bytes_total, t, chunk);
  const CostParams& p = t.params();
  const double S = static_cast<double>(bytes_total);
  const int local = static_cast<int>(smallest);
  // The ranks of one slice on every node share each node's NIC with the other slices'.
  const Topology intra = flat_of(local, p.local_bytes_per_s, p.local_alpha_s, p);
  const Topology across = flat_of(nodes, p.link_bytes_per_s / local, p.alpha_s, p);
  std::vector<std::string> candidates;
  if (!inter.empty()) {
    candidates = {std::string(inter)};
  } else if (c == Collective::kAllreduce) {
    candidates = {"ring", "recursive_doubling", "tree", "rabenseifner"};
  } else {
    candidates = {"ring", "rabenseifner"};
  }
  if (c != Collective::kAllreduce) {
    // Staged through scratch in slice order (a copy of the whole buffer), then in the
    // node and across the nodes (reduce-scatter), or the other way round (all-gather).
    const double copy = S * p.gamma_s_per_byte / 2;
    const double in_node = predict_time(c, "ring", bytes_total, intra, chunk);
    for (const std::string& name : candidates) {
      const double across_nodes =
          predict_time(c, name, bytes_total / static_cast<size_t>(local), across, chunk);
      if (across_nodes < 0) continue;
      const double seconds = copy + in_node + across_nodes;
      if (best.seconds < 0 || seconds < best.seconds) best = {"", name, 1, seconds};
    }
    return best;
  }
  // Extra ranks of larger nodes hand their whole buffer to a rank of the node's first
  // `local` and get the result back.
  double fold = 0;
  {
    std::vector<Flow> in, out;
    std::vector<int> fan_in(static_cast<size_t>(n), 0);
    int most = 0;
    for (const auto& m : members)
      for (size_t j = static_cast<size_t>(local); j < m.size(); ++j) {
        const int partner = m[j % static_cast<size_t>(local)];
        in.push_back({m[j], partner, S});
        out.push_back({partner, m[j], S});
        most = std::max(most, ++fan_in[partner]);
      }
    if (!in.empty()) {
      RoundCost round(t, static_cast<double>(std::max<size_t>(chunk, 1)));
      fold = round(in, most * S) + round(out, 0);
    }
  }
  std::vector<int> block_counts = {1, 2, 4, 8, 16, 32};
  if (blocks > 0) block_counts = {blocks};
  for (int b : block_counts) {
    const size_t block = bytes_total / static_cast<size_t>(b);
    if (b > 1 && block < static_cast<size_t>(local) * 64) continue;  // slices too small to split
    const double rs = predict_time(Collective::kReduceScatter, "ring", block, intra, chunk);
    const double ag = predict_time(Collective::kAllgather, "ring", block, intra, chunk);
    for (const std::string& name : candidates) {
      const double ar = predict_time(Collective::kAllreduce, name,
                                     block / static_cast<size_t>(local), across, chunk);
      if (ar < 0) continue;
      // Block k+1 reduce-scatters and block k-1 gathers in the node while block k crosses.
      const double seconds = fold + rs + ar + ag + (b - 1) * std::max(ar, rs + ag);
      if (best.seconds < 0 || seconds < best.seconds) best = {"", name, b, seconds};
    }
  }
  return best;
}

// ---- simulate_time ----

namespace {

struct Event {
  double time;
  int rank;
  uint32_t step;
  bool operator>(const Event& o) const { return time > o.time; }
};

}  // namespace

Status simulate_time(const std::vector<Schedule>& schedules, const Topology& t, double* seconds) {
  const int n = static_cast<int>(schedules.size());
  if (n != t.nranks())
    return invalid_argument("simulate_time: " + std::to_string(n) + " schedules on a topology of " +
                            std::to_string(t.nranks()) + " ranks");
  const CostParams& p = t.params();
  struct Lane {
    std::vector<uint32_t> steps;
    size_t next = 0;
  };
  struct RankState {
    std::vector<uint32_t> missing;
    std::vector<double> ready_at;
    std::vector<bool> done;
    std::vector<uint32_t> lane_of;
    std::vector<Lane> lanes;
    std::vector<int> lane_peer;
    std::vector<bool> lane_is_send;
    std::vector<std::vector<double>> arrivals;  // receive lanes: arrival time of message k
    std::vector<bool> waiting;                  // receive step waiting for its message
    double cpu_free = 0;
    double send_engine_free = 0;  // alpha is paid one message at a time
    size_t finished = 0;
  };
  std::vector<RankState> st(static_cast<size_t>(n));
  std::vector<std::vector<int>> recv_lane(static_cast<size_t>(n));  // [rank] peer -> lane (dense)
  std::vector<double> link_free(static_cast<size_t>(t.num_links()), 0.0);
  std::vector<Event> heap;
  auto push = [&](double time, int rank, uint32_t step) {
    heap.push_back({time, rank, step});
    std::push_heap(heap.begin(), heap.end(), std::greater<Event>());
  };
  for (int r = 0; r < n; ++r) {
    const Schedule& s = schedules[r];
    RankState& rs = st[r];
    const size_t m = s.steps.size();
    rs.missing.assign(m, 0);
    rs.ready_at.assign(m, 0.0);
    rs.done.assign(m, false);
    rs.waiting.assign(m, false);
    rs.lane_of.assign(m, UINT32_MAX);
    std::vector<int> send_lane(static_cast<size_t>(n), -1);
    recv_lane[r].assign(static_cast<size_t>(n), -1);
    for (uint32_t i = 0; i < m; ++i) {
      const Step& step = s.steps[i];
      rs.missing[i] = step.dep_count;
      if (step.kind != StepKind::kSend && step.kind != StepKind::kRecv) continue;
      if (step.peer < 0 || step.peer >= n || step.peer == r)
        return internal_error("simulate_time: rank " + std::to_string(r) + " step " +
                              std::to_string(i) + " names peer " + std::to_string(step.peer));
      const bool is_send = step.kind == StepKind::kSend;
      int& lane = is_send ? send_lane[step.peer] : recv_lane[r][step.peer];
      if (lane < 0) {
        lane = static_cast<int>(rs.lanes.size());
        rs.lanes.emplace_back();
        rs.lane_peer.push_back(step.peer);
        rs.lane_is_send.push_back(is_send);
        rs.arrivals.emplace_back();
      }
      rs.lanes[lane].steps.push_back(i);
      rs.lane_of[i] = static_cast<uint32_t>(lane);
    }
    if (s.steps.size() != s.dependents_begin.size() - 1 && !s.steps.empty())
      return invalid_argument("simulate_time: rank " + std::to_string(r) +
                              "'s schedule was not finalized");
    for (uint32_t i = 0; i < m; ++i)
      if (rs.missing[i] == 0) push(0.0, r, i);
  }
  double last = 0;
  std::vector<int> links;
  auto complete = [&](int r, uint32_t i, double time) {
    RankState& rs = st[r];
    rs.done[i] = true;
    ++rs.finished;
    last = std::max(last, time);
    const Schedule& s = schedules[r];
    for (uint32_t k = s.dependents_begin[i]; k < s.dependents_begin[i + 1]; ++k) {
      const uint32_t d = s.dependents[k];
      rs.ready_at[d] = std::max(rs.ready_at[d], time);
      if (--rs.missing[d] == 0) push(rs.ready_at[d], r, d);
    }
  };
  // The lane's next message may start once this one is posted (sends) or taken (receives).
  auto advance_lane = [&](int r, uint32_t i, double time) {
    RankState& rs = st[r];
    Lane& lane = rs.lanes[rs.lane_of[i]];
    ++lane.next;
    if (lane.next < lane.steps.size()) {
      const uint32_t nxt = lane.steps[lane.next];
      if (rs.missing[nxt] == 0 && !rs.done[nxt]) push(std::max(time, rs.ready_at[nxt]), r, nxt);
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Event>());
    const Event e = heap.back();
    heap.pop_back();
    RankState& rs = st[e.rank];
    if (rs.done[e.step]) continue;
    const Step& step = schedules[e.rank].steps[e.step];
    if (step.kind == StepKind::kSend || step.kind == StepKind::kRecv) {
      const uint32_t lane_index = rs.lane_of[e.step];
      Lane& lane = rs.lanes[lane_index];
      if (lane.steps[lane.next] != e.step) continue;  // pushed again when the lane reaches it
      if (step.kind == StepKind::kSend) {
        links.clear();
        const int hops = t.route(e.rank, step.peer, &links);
        const double posted = std::max(e.time, rs.send_engine_free) + t.alpha_s(e.rank, step.peer);
        rs.send_engine_free = posted;
        // Cut-through, one link after another: each link carries the message as soon as
        // it is free and the link before has started; switches buffer in between.
        double start = posted, left = 0, end = posted;
        const double bytes = static_cast<double>(step.bytes);
        for (size_t k = 0; k < links.size(); ++k) {
          start = std::max(start, link_free[links[k]]);
          const double busy = bytes / t.link_bytes_per_s(links[k]);
          link_free[links[k]] = start + busy;
          end = std::max(end, start + busy);
          if (k == 0) left = start + busy;
        }
        const double arrival = end + hops * p.hop_latency_s;
        RankState& peer = st[step.peer];
        const int in_lane = recv_lane[step.peer][e.rank];
        if (in_lane < 0)
          return internal_error("simulate_time: rank " + std::to_string(step.peer) +
                                " never receives from rank " + std::to_string(e.rank));
        peer.arrivals[in_lane].push_back(arrival);
        const Lane& pl = peer.lanes[in_lane];
        if (pl.next < pl.steps.size() && pl.next == peer.arrivals[in_lane].size() - 1) {
          const uint32_t waiting = pl.steps[pl.next];
          if (peer.waiting[waiting])
            push(std::max(arrival, peer.ready_at[waiting]), step.peer, waiting);
        }
        advance_lane(e.rank, e.step, posted);
        complete(e.rank, e.step, left);
      } else {
        if (rs.arrivals[lane_index].size() <= lane.next) {
          rs.waiting[e.step] = true;  // the send will wake it
          continue;
        }
        const double taken = std::max(e.time, rs.arrivals[lane_index][lane.next]);
        advance_lane(e.rank, e.step, taken);
        complete(e.rank, e.step, taken);
      }
      continue;
    }
    const double cost = static_cast<double>(step.bytes) * p.gamma_s_per_byte *
                        (step.kind == StepKind::kReduce ? 1.0 : 0.5);
    const double start = std::max(e.time, rs.cpu_free);
    rs.cpu_free = start + cost;
    complete(e.rank, e.step, start + cost);
  }
  for (int r = 0; r < n; ++r)
    if (st[r].finished != schedules[r].steps.size())
      return internal_error("simulate_time: rank " + std::to_string(r) +
                            " never finishes (a deadlock: check it with "
                            "simulate_dataflow)");
  *seconds = last;
  return Status::Ok();
}

}  // namespace ciuic::coll
