#include "coll/algorithms.h"

namespace ciuic::coll {

// One line per algorithm; the first entry of a collective is its default.
const std::vector<AlgorithmEntry>& registered_algorithms() {
  static const std::vector<AlgorithmEntry> table = {
      {Collective::kAllreduce, "ring", &build_ring_allreduce},
      {Collective::kReduceScatter, "ring", &build_ring_reduce_scatter},
      {Collective::kAllgather, "ring", &build_ring_allgather},
      {Collective::kBroadcast, "chain", &build_chain_broadcast},
      {Collective::kReduce, "chain", &build_chain_reduce},
      {Collective::kAlltoall, "pairwise", &build_pairwise_alltoall},
      {Collective::kBarrier, "dissemination", &build_dissemination_barrier},
      {Collective::kSend, "direct", &build_direct_send},
      {Collective::kRecv, "direct", &build_direct_recv},
  };
  return table;
}

Status build_schedule(const CollectiveArgs& args, std::string_view algorithm, Schedule* out) {
  std::string known;
  for (const AlgorithmEntry& e : registered_algorithms()) {
    if (e.collective != args.collective) continue;
    if (algorithm.empty() || algorithm == "auto" || algorithm == e.name) {
      *out = Schedule{};
      out->algorithm = e.name;
      out->collective = args.collective;
      out->rank = args.rank;
      out->nranks = args.nranks;
      out->datatype = args.datatype;
      out->op = args.op;
      return e.build(args, out);
    }
    known += std::string(known.empty() ? "" : ", ") + e.name;
  }
  return invalid_argument("no algorithm '" + std::string(algorithm) + "' for " +
                          collective_name(args.collective) + " (known: " + known + ")");
}

}  // namespace ciuic::coll
