#include "coll/algorithms.h"

#include "base/config.h"
#include "coll/tuner.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

// The rule before the tuner, kept for whoever set it: all-reduces up to this size use
// recursive doubling, larger ones the ring.
const config::IntParam kSmallAllreduceBytes{
    "CIUIC_ALLREDUCE_SMALL_BYTES", 256 << 10,
    "If set, all-reduces up to this many bytes use recursive doubling and larger ones the ring, "
    "instead of the tuner's choice"};

}  // namespace

// One line per algorithm; the first entry of a collective is its default.
const std::vector<AlgorithmEntry>& registered_algorithms() {
  static const std::vector<AlgorithmEntry> table = {
      {Collective::kAllreduce, "ring", &build_ring_allreduce},
      {Collective::kAllreduce, "recursive_doubling", &build_recursive_doubling_allreduce},
      {Collective::kAllreduce, "tree", &build_double_tree_allreduce},
      {Collective::kAllreduce, "rabenseifner", &build_rabenseifner_allreduce},
      {Collective::kAllreduce, "torus", &build_torus_allreduce},
      {Collective::kAllreduce, "hierarchical", &build_hierarchical_allreduce},
      {Collective::kReduceScatter, "ring", &build_ring_reduce_scatter},
      {Collective::kReduceScatter, "rabenseifner", &build_rabenseifner_reduce_scatter},
      {Collective::kReduceScatter, "torus", &build_torus_reduce_scatter},
      {Collective::kReduceScatter, "hierarchical", &build_hierarchical_reduce_scatter},
      {Collective::kAllgather, "ring", &build_ring_allgather},
      {Collective::kAllgather, "rabenseifner", &build_rabenseifner_allgather},
      {Collective::kAllgather, "torus", &build_torus_allgather},
      {Collective::kAllgather, "hierarchical", &build_hierarchical_allgather},
      {Collective::kBroadcast, "chain", &build_chain_broadcast},
      {Collective::kBroadcast, "tree", &build_tree_broadcast},
      {Collective::kReduce, "chain", &build_chain_reduce},
      {Collective::kReduce, "tree", &build_tree_reduce},
      {Collective::kAlltoall, "pairwise", &build_pairwise_alltoall},
      {Collective::kBarrier, "dissemination", &build_dissemination_barrier},
      {Collective::kSend, "direct", &build_direct_send},
      {Collective::kRecv, "direct", &build_direct_recv},
  };
  return table;
}

const char* default_algorithm(const CollectiveArgs& args) {
  if (args.collective == Collective::kAllreduce && kSmallAllreduceBytes.is_set()) {
    const size_t bytes = args.count * reduce::datatype_size(args.datatype);
    return bytes <= static_cast<size_t>(kSmallAllreduceBytes.get()) ? "recursive_doubling" : "ring";
  }
  const std::string tuned = tuned_algorithm(args);
  for (const AlgorithmEntry& e : registered_algorithms())
    if (e.collective == args.collective && (tuned.empty() || tuned == e.name)) return e.name;
  return "";
}

Status build_schedule(const CollectiveArgs& args, std::string_view algorithm, Schedule* out) {
  if (algorithm.empty() || algorithm == "auto") algorithm = default_algorithm(args);
  std::string known;
  for (const AlgorithmEntry& e : registered_algorithms()) {
    if (e.collective != args.collective) continue;
    if (algorithm == e.name) {
      *out = Schedule{};
      out->algorithm = e.name;
      out->collective = args.collective;
      out->rank = args.rank;
      out->nranks = args.nranks;
      out->datatype = args.datatype;
      out->op = args.op;
      CIUIC_RETURN_IF_ERROR(e.build(args, out));
      out->finalize();
      return Status::Ok();
    }
    known += std::string(known.empty() ? "" : ", ") + e.name;
  }
  return invalid_argument("no algorithm '" + std::string(algorithm) + "' for " +
                          collective_name(args.collective) + " (known: " + known + ")");
}

}  // namespace ciuic::coll
