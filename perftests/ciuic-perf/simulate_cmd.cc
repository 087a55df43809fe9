// ciuic-perf simulate and tune: the cost model's predictions, with no ranks started.
//   simulate: predicted time, algbw and busbw per size for one algorithm (or the tuner's
//             choice, beside the best the model knows), nccl-tests' columns;
//   tune:     the tuner's decision table per collective, every candidate's prediction.
// On a nodes topology the hierarchical algorithms take their node layout from it (rank r
// on node r / (ranks / N)), so --algo hierarchical --exact runs their real schedules.
#include <cstdio>
#include <string>
#include <vector>

#include "base/config.h"
#include "coll/algorithms.h"
#include "coll/cost_model.h"
#include "coll/tuner.h"
#include "options.h"
#include "reduce/reduce.h"

namespace ciuic::perf {
namespace {

struct Known {
  const char* name;
  coll::Collective collective;
};
constexpr Known kCollectives[] = {{"allreduce", coll::Collective::kAllreduce},
                                  {"allgather", coll::Collective::kAllgather},
                                  {"reduce_scatter", coll::Collective::kReduceScatter},
                                  {"broadcast", coll::Collective::kBroadcast},
                                  {"reduce", coll::Collective::kReduce},
                                  {"alltoall", coll::Collective::kAlltoall}};

bool collective_named(const std::string& name, coll::Collective* out) {
  for (const Known& k : kCollectives)
    if (name == k.name) *out = k.collective;
  for (const Known& k : kCollectives)
    if (name == k.name) return true;
  return false;
}

double bus_factor(coll::Collective c, int n) {
  const double nd = n;
  if (c == coll::Collective::kAllreduce) return 2 * (nd - 1) / nd;
  if (c == coll::Collective::kAllgather || c == coll::Collective::kReduceScatter ||
      c == coll::Collective::kAlltoall)
    return (nd - 1) / nd;
  return 1;
}

coll::CollectiveArgs args_for(coll::Collective c, const Options& o, size_t bytes) {
  coll::CollectiveArgs a;
  a.collective = c;
  a.nranks = o.nranks;
  a.datatype = o.datatype;
  a.op = o.op;
  const size_t elem = reduce::datatype_size(o.datatype);
  const bool per_rank = c == coll::Collective::kAllgather ||
                        c == coll::Collective::kReduceScatter || c == coll::Collective::kAlltoall;
  a.count = bytes / elem / (per_rank ? static_cast<size_t>(o.nranks) : 1);
  a.chunk_bytes = 256 << 10;
  return a;
}

void print_model(const coll::Topology& t) {
  const coll::CostParams& p = t.params();
  std::printf(
      "# model: alpha %.1f us per message (%.1f us inside a node), %.1f us per hop, links %.0f "
      "MB/s, local %.0f MB/s, reduce %.0f MB/s"
      " (CIUIC_NET_ALPHA_NS, CIUIC_LOCAL_ALPHA_NS, CIUIC_NET_HOP_NS, CIUIC_NET_MBPS, "
      "CIUIC_LOCAL_MBPS, CIUIC_REDUCE_MBPS)\n",
      p.alpha_s * 1e6, p.local_alpha_s * 1e6, p.hop_latency_s * 1e6, p.link_bytes_per_s / 1e6,
      p.local_bytes_per_s / 1e6, 1e-6 / p.gamma_s_per_byte);
}

// Each cost parameter in force, and where it came from.
void print_sources(const std::vector<coll::CostSource>& sources) {
  for (const coll::CostSource& c : sources)
    std::printf("#   %-22s %12.0f  %s\n", c.param.c_str(), c.value, c.source.c_str());
}

std::vector<size_t> sizes(const Options& o) {
  std::vector<size_t> out;
  for (size_t b = o.min_bytes; b <= o.max_bytes; b *= o.step_factor) {
    out.push_back(b);
    if (b == 0) break;
  }
  return out;
}

}  // namespace

int run_simulate(const Options& o) {
  coll::Collective c = coll::Collective::kAllreduce;
  if (!collective_named(o.collective, &c)) {
    std::fprintf(stderr, "ciuic-perf simulate: unknown collective %s\n", o.collective.c_str());
    return 2;
  }
  coll::Topology t;
  Status s = coll::Topology::parse(o.topology, o.nranks, coll::configured_cost_params(), &t);
  if (!s.ok()) {
    std::fprintf(stderr, "ciuic-perf simulate: %s\n", s.message().c_str());
    return 2;
  }
  const bool tuned = o.algo.empty() || o.algo == "auto";
  config::set_override("CIUIC_TOPOLOGY", o.topology);
  std::printf("# ciuic-perf simulate: %d ranks, topology %s, %s %s, algorithm %s%s\n", o.nranks,
              t.describe().c_str(), o.collective.c_str(), reduce::datatype_name(o.datatype),
              tuned ? "auto (the tuner's choice)" : o.algo.c_str(),
              o.exact ? ", event-driven run of the schedules" : ", round model");
  print_model(t);
  std::printf("# %12s %12s %8s %20s %12s %10s %10s %20s %12s %8s  %s\n", "size", "count", "type",
              "algorithm", "time(us)", "algbw", "busbw", "best", "best(us)", "vs best",
              "hierarchical plan");
  for (size_t requested : sizes(o)) {
    coll::CollectiveArgs a = args_for(c, o, requested);
    // What the count covers (all-gather / reduce-scatter: whole elements per rank).
    const size_t bytes = a.count * reduce::datatype_size(o.datatype) *
                         (c == coll::Collective::kAllgather || c == coll::Collective::kReduceScatter ||
                                  c == coll::Collective::kAlltoall
                              ? static_cast<size_t>(o.nranks)
                              : 1);
    const std::vector<coll::Prediction> ranked = coll::rank_algorithms(a, t);
    if (ranked.empty()) {
      std::fprintf(stderr, "ciuic-perf simulate: no algorithm the model knows for %s\n",
                   o.collective.c_str());
      return 2;
    }
    std::string algorithm = o.algo;
    if (tuned) algorithm = coll::default_algorithm(a);  // the tuner itself, on --topo
    double seconds = coll::predict_time(c, algorithm, bytes, t, a.chunk_bytes);
    if (o.exact) {
      std::vector<coll::Schedule> schedules(static_cast<size_t>(o.nranks));
      for (int r = 0; r < o.nranks; ++r) {
        a.rank = r;
        if (t.kind() == coll::Topology::Kind::kTorus) a.torus_dims = t.dims();
        s = coll::build_schedule(a, algorithm, &schedules[r]);
        if (!s.ok()) break;
      }
      if (s.ok()) s = coll::simulate_time(schedules, t, &seconds);
      if (!s.ok()) {
        std::fprintf(stderr, "ciuic-perf simulate: %s\n", s.message().c_str());
        return 2;
      }
    }
    if (seconds < 0) {
      std::fprintf(stderr, "ciuic-perf simulate: the model has no %s for %s%s\n", algorithm.c_str(),
                   o.collective.c_str(),
                   algorithm == "hierarchical" ? " on this topology: it needs nodes (--topo nodes:N)"
                                               : "");
      return 2;
    }
    const double algbw = seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0;
    // What the hierarchical algorithm does here (as its schedules would be built).
    std::string plan;
    if ((algorithm == "hierarchical" || ranked.front().algorithm == "hierarchical") &&
        t.kind() == coll::Topology::Kind::kNodes) {
      const coll::HierarchicalPlan p = coll::hierarchical_plan(a, t.node_of_rank());
      plan = !p.flat.empty() ? "flat " + p.flat
                             : "inter " + p.inter + ", " + std::to_string(p.blocks) +
                                   (p.blocks == 1 ? " block" : " blocks");
    }
    std::printf("  %12zu %12zu %8s %20s %12.2f %10.3f %10.3f %20s %12.2f %8.3f  %s\n", bytes, a.count,
                reduce::datatype_name(o.datatype), algorithm.c_str(), seconds * 1e6, algbw,
                algbw * bus_factor(c, o.nranks), ranked.front().algorithm.c_str(),
                ranked.front().seconds * 1e6,
                ranked.front().seconds > 0 ? seconds / ranked.front().seconds : 1.0,
                plan.c_str());
  }
  return 0;
}

int run_tune(const Options& o) {
  // With --transport, the figures the transports in use here report count too, as they do
  // for a communicator of this process.
  coll::TransportCosts here;
  std::string note;
  if (!o.transport.empty()) {
    Status s = transports_here(&here, &note);
    if (!s.ok()) {
      std::fprintf(stderr, "ciuic-perf tune: %s\n", s.message().c_str());
      return 2;
    }
  }
  std::vector<coll::CostSource> sources;
  const coll::CostParams params =
      coll::resolve_cost_params(o.transport.empty() ? nullptr : &here, &sources);
  coll::Topology t;
  Status s = coll::Topology::parse(o.topology, o.nranks, params, &t);
  if (!s.ok()) {
    std::fprintf(stderr, "ciuic-perf tune: %s\n", s.message().c_str());
    return 2;
  }
  std::printf(
      "# ciuic-perf tune: %d ranks, topology %s, %s; predicted time (us) of every candidate, * = "
      "chosen\n",
      o.nranks, t.describe().c_str(), reduce::datatype_name(o.datatype));
  print_model(t);
  std::printf(
      "# where each parameter comes from (env > CIUIC_TUNER_FILE > transport > default)%s\n",
      note.empty() ? "" : (": " + note).c_str());
  print_sources(sources);
  for (const Known& k : kCollectives) {
    if (!o.collective_given.empty() && o.collective_given != k.name) continue;
    std::vector<std::string> names;
    for (const coll::AlgorithmEntry& e : coll::registered_algorithms())
      if (e.collective == k.collective) names.push_back(e.name);
    if (names.size() < 2) continue;
    std::printf("\n# %s\n# %12s %20s", k.name, "size", "chosen");
    for (const std::string& n : names) std::printf(" %14s", n.c_str());
    std::printf("\n");
    for (size_t bytes : sizes(o)) {
      const std::vector<coll::Prediction> ranked =
          coll::rank_algorithms(args_for(k.collective, o, bytes), t);
      if (ranked.empty()) continue;
      std::printf("  %12zu %20s", bytes, ranked.front().algorithm.c_str());
      for (const std::string& n : names) {
        const coll::Prediction* p = nullptr;
        for (const coll::Prediction& q : ranked)
          if (q.algorithm == n) p = &q;
        if (p == nullptr) {
          std::printf(" %14s", "-");
        } else {
          std::printf(" %13.1f%s", p->seconds * 1e6, p == &ranked.front() ? "*" : " ");
        }
      }
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace ciuic::perf
