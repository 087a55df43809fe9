// Hierarchical collectives (the shape of HFReduce in DeepSeek's Fire-Flyer paper): the
// ranks of each node work among themselves over the fast links inside it, and only one
// slice per rank crosses the nodes' NICs.
//
// All-reduce, with S the number of ranks on the smallest node: the buffer is cut in S
// slices; (1) the first S ranks of each node reduce-scatter it (ring), so that the node's
// rank i holds the node's sum of slice i; (2) the ranks holding slice i on the different
// nodes all-reduce it among themselves (ring, recursive doubling, tree or Rabenseifner:
// CIUIC_HIER_INTER_ALGO or the cost model's choice for that group and slice size);
// (3) the node all-gathers the slices. The buffer goes through in blocks (CIUIC_HIER_BLOCKS
// or the cost model's choice): block b+1 is reduced in the node while block b crosses the
// nodes and block b-1 is gathered. Counts that S does not divide leave a tail of fewer
// than S elements: it is reduced to the node's rank S-1 (tree), all-reduced with that
// rank's last slice, and broadcast back (tree).
//
// Nodes of unequal sizes: a node's ranks beyond the first S ("extra" ranks) hand their
// whole buffer to rank (index mod S) of the node before anything else, and get the result
// back from it at the end; the first S of every node then work as above. A node of one
// rank therefore makes the smallest node's rank the node leader that all-reduces the
// whole buffer across the nodes. Ranks of a node need not be contiguous in rank order:
// a node's ranks are taken in rank order, wherever they are.
//
// Reduce-scatter and all-gather need the same number L of ranks on every node (else the
// flat algorithm runs): the blocks destined to the ranks with the same index on every node
// are staged contiguously in scratch (a copy of the whole input or output); reduce-scatter
// reduce-scatters them in the node, then across the nodes among the ranks of the same
// index; all-gather gathers across the nodes first, then in the node, then copies out.
//
// Each phase is an existing algorithm's schedule, built for the sub-group and spliced in
// with splice_schedule (builder.h), which remaps its peers and buffer ranges and adds the
// dependencies on earlier phases that a per-buffer ledger of byte ranges says it needs.
//
// With no node layout (CollectiveArgs::node_of_rank null and CIUIC_TOPOLOGY not nodes:N),
// all ranks on one node, or one rank per node, the flat algorithm the tuner picks runs
// instead, named "hierarchical(flat ALGO)".
#include <algorithm>
#include <map>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "coll/tuner.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

struct Layout {
  std::vector<std::vector<int>> members;  // per node, in order of first appearance: ranks
  int node = 0;                           // this rank's node
  int local = 0;                          // this rank's index among its node's members
  size_t smallest = 0, largest = 0;
};

Status layout_of(const CollectiveArgs& a, const std::vector<int>& node_of_rank, Layout* out) {
  if (static_cast<int>(node_of_rank.size()) != a.nranks)
    return invalid_argument("the node layout lists " + std::to_string(node_of_rank.size()) +
                            " ranks, but the communicator has " + std::to_string(a.nranks));
  std::map<int, int> number;
  for (int r = 0; r < a.nranks; ++r) {
    const int label = node_of_rank[r];
    if (label < 0)
      return invalid_argument("the node layout puts rank " + std::to_string(r) + " on node " +
                              std::to_string(label));
    auto [it, fresh] = number.emplace(label, static_cast<int>(out->members.size()));
    if (fresh) out->members.emplace_back();
    if (r == a.rank) {
      out->node = it->second;
      out->local = static_cast<int>(out->members[it->second].size());
    }
    out->members[it->second].push_back(r);
  }
  out->smallest = out->members[0].size();
  for (const auto& m : out->members) {
    out->smallest = std::min(out->smallest, m.size());
    out->largest = std::max(out->largest, m.size());
  }
  return Status::Ok();
}

// The flat algorithm the tuner picks for these arguments, built as this schedule.
Status build_flat(const CollectiveArgs& a, Schedule* s) {
  std::string name = default_algorithm(a);
  if (name.empty() || name == "hierarchical") name = "ring";
  Schedule flat;
  CIUIC_RETURN_IF_ERROR(build_schedule(a, name, &flat));
  flat.algorithm = "hierarchical(flat " + flat.algorithm + ")";
  *s = std::move(flat);
  return Status::Ok();
}

// The node layout when it has nodes to exploit; null otherwise.
Status usable_layout(const CollectiveArgs& a, Layout* layout, bool* usable) {
  *usable = false;
  const std::shared_ptr<const std::vector<int>> nodes = node_layout(a);
  if (!nodes) return Status::Ok();
  CIUIC_RETURN_IF_ERROR(layout_of(a, *nodes, layout));
  *usable = layout->members.size() > 1 && layout->largest > 1;
  return Status::Ok();
}

// The algorithm between nodes: CIUIC_HIER_INTER_ALGO if it names one of this collective
// (the plan took it), else the plan's choice.
std::string inter_algorithm(const HierarchicalPlan& plan) {
  return plan.inter.empty() ? "ring" : plan.inter;
}

// Scratch regions, one per kind of piece, reused by every piece of that kind (the ledgers
// order the reuse); a piece that outgrows its kind's region gets a new one at the end.
class Regions {
 public:
  explicit Regions(size_t start) : end_(start) {}
  size_t place(int kind, size_t bytes) {
    auto it = regions_.find(kind);
    if (it != regions_.end() && it->second.second >= bytes) return it->second.first;
    regions_[kind] = {end_, bytes};
    end_ += bytes;
    return end_ - bytes;
  }
  size_t end() const { return end_; }

 private:
  size_t end_;
  std::map<int, std::pair<size_t, size_t>> regions_;  // kind -> (offset, bytes)
};

// Builds `sub` and splices it in with its scratch in the region of `kind`.
Status append_piece(Schedule* s, const CollectiveArgs& sub, const std::string& algorithm,
                    SubGroup group, int kind, Regions* regions, BufferLedgers* ledgers) {
  Schedule piece;
  CIUIC_RETURN_IF_ERROR(build_schedule(sub, algorithm, &piece));
  group.scratch = at(Buffer::kScratch, regions->place(kind, piece.scratch_bytes));
  splice_schedule(s, piece, group, ledgers);
  return Status::Ok();
}

CollectiveArgs sub_args(const CollectiveArgs& a, Collective c, int rank, int nranks, size_t count) {
  CollectiveArgs sub;
  sub.collective = c;
  sub.rank = rank;
  sub.nranks = nranks;
  sub.count = count;
  sub.datatype = a.datatype;
  // Averages divide by the whole communicator's size, once, after the last sum.
  sub.op = a.op == CIUIC_AVG ? CIUIC_SUM : a.op;
  sub.chunk_bytes = a.chunk_bytes;
  sub.scratch_slots = a.scratch_slots;
  return sub;
}

void average(Schedule* s, BufferLedgers* ledgers, Range range, size_t chunk, size_t elem) {
  for (const Range& ch : chunks_of(range, chunk, elem))
    ledgers->add(s, average_step(at(Buffer::kRecv, ch.offset), ch.bytes));
}

enum PieceKind { kInNode, kTailReduce, kAcross, kGather, kTailBroadcast };

}  // namespace

Status build_hierarchical_allreduce(const CollectiveArgs& a, Schedule* s) {
  Layout lay;
  bool usable = false;
  CIUIC_RETURN_IF_ERROR(usable_layout(a, &lay, &usable));
  if (!usable) return build_flat(a, s);
  const HierarchicalPlan plan = hierarchical_plan(a, *node_layout(a));
  const std::string inter = inter_algorithm(plan);
  if (inter == "hierarchical") return invalid_argument("hierarchical all-reduce within itself");
  const int blocks_wanted = std::max(plan.blocks, 1);
  s->algorithm = "hierarchical(inter " + inter +
                 (blocks_wanted > 1 ? ", " + std::to_string(blocks_wanted) + " blocks" : "") + ")";
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t bytes = a.count * elem, chunk = a.chunk_bytes;
  const int S = static_cast<int>(lay.smallest), N = static_cast<int>(lay.members.size());
  const std::vector<int>& mine = lay.members[lay.node];
  if (bytes == 0) return Status::Ok();
  BufferLedgers ledgers;
  const std::vector<Range> whole = chunks_of(Range{0, bytes}, chunk, elem);
  if (lay.local >= S) {
    // An extra rank: hand the input over, take the result back once it has left.
    const int partner = mine[static_cast<size_t>(lay.local % S)];
    const Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
    for (const Range& ch : whole) ledgers.add(s, send_step(partner, at(in, ch.offset), ch.bytes));
    for (const Range& ch : whole)
      ledgers.add(s, recv_step(partner, at(Buffer::kRecv, ch.offset), ch.bytes));
    return Status::Ok();
  }
  std::vector<int> extras;
  for (size_t j = static_cast<size_t>(S); j < mine.size(); ++j)
    if (static_cast<int>(j) % S == lay.local) extras.push_back(mine[j]);
  Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  size_t fold_scratch = 0;
  if (!extras.empty()) {
    // Fold the extra ranks' buffers into recvbuf, chunk by chunk.
    ScratchPool pool(std::min(whole_elements(chunk, elem), bytes), a.scratch_slots);
    for (const Range& ch : whole) {
      BufferRange acc = at(in, ch.offset);
      for (int e : extras) {
        std::vector<uint32_t> deps;
        const BufferRange slot = pool.acquire(&deps);
        const uint32_t got = ledgers.add(s, recv_step(e, slot, ch.bytes), deps);
        const uint32_t red =
            ledgers.add(s, reduce_step(at(Buffer::kRecv, ch.offset), acc, slot, ch.bytes), {got});
        pool.release(slot, red);
        acc = at(Buffer::kRecv, ch.offset);
      }
    }
    fold_scratch = pool.end_offset();
    in = Buffer::kRecv;
  }
  Regions regions(fold_scratch);
  // Slices: U elements each, cut into blocks of whole units; a tail of t < S elements.
  const size_t U = a.count / static_cast<size_t>(S), tail = a.count - U * static_cast<size_t>(S);
  std::vector<Range> blocks;  // in units (elements of one slice)
  for (const Range& b :
       split_even(U, std::max(1, std::min<int>(blocks_wanted, static_cast<int>(U))), 1))
    if (b.bytes > 0) blocks.push_back(b);
  if (blocks.empty()) blocks.push_back(Range{U, 0});
  std::vector<int> across(static_cast<size_t>(N));
  for (int k = 0; k < N; ++k) across[k] = lay.members[k][static_cast<size_t>(lay.local)];
  const std::vector<int> node(mine.begin(), mine.begin() + S);
  const size_t Su = static_cast<size_t>(S), me = static_cast<size_t>(lay.local);
  const size_t tail_at = U * Su * elem;
  auto reduce_in_node = [&](const Range& b) -> Status {
    if (b.bytes == 0) return Status::Ok();
    CollectiveArgs sub = sub_args(a, Collective::kReduceScatter, lay.local, S, b.bytes);
    // NCCL's in-place form when the input is in recvbuf: the slice lies inside the block.
    sub.in_place = in == Buffer::kRecv;
    SubGroup g{node,
               at(in, Su * b.offset * elem),
               at(Buffer::kRecv, (Su * b.offset + me * b.bytes) * elem),
               {}};
    return append_piece(s, sub, "ring", g, kInNode, &regions, &ledgers);
  };
  CIUIC_RETURN_IF_ERROR(reduce_in_node(blocks[0]));
  if (tail > 0) {
    CollectiveArgs sub = sub_args(a, Collective::kReduce, lay.local, S, tail);
    sub.root = S - 1;
    sub.in_place = in == Buffer::kRecv;
    SubGroup g{node, at(in, tail_at), at(Buffer::kRecv, tail_at), {}};
    CIUIC_RETURN_IF_ERROR(append_piece(s, sub, "tree", g, kTailReduce, &regions, &ledgers));
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Range& b = blocks[i];
    if (i + 1 < blocks.size()) CIUIC_RETURN_IF_ERROR(reduce_in_node(blocks[i + 1]));
    const bool last = i + 1 == blocks.size();
    const size_t count = b.bytes + (last && lay.local == S - 1 ? tail : 0);
    const size_t slice_at = (Su * b.offset + me * b.bytes) * elem;
    if (count > 0) {
      CollectiveArgs sub = sub_args(a, Collective::kAllreduce, lay.node, N, count);
      sub.in_place = true;
      SubGroup g{across, at(Buffer::kRecv, slice_at), at(Buffer::kRecv, slice_at), {}};
      CIUIC_RETURN_IF_ERROR(append_piece(s, sub, inter, g, kAcross, &regions, &ledgers));
      if (a.op == CIUIC_AVG) average(s, &ledgers, Range{slice_at, count * elem}, chunk, elem);
    }
    if (b.bytes > 0) {
      CollectiveArgs sub = sub_args(a, Collective::kAllgather, lay.local, S, b.bytes);
      sub.in_place = true;
      const BufferRange block_at = at(Buffer::kRecv, Su * b.offset * elem);
      SubGroup g{node, block_at, block_at, {}};
      CIUIC_RETURN_IF_ERROR(append_piece(s, sub, "ring", g, kGather, &regions, &ledgers));
    }
  }
  if (tail > 0) {
    CollectiveArgs sub = sub_args(a, Collective::kBroadcast, lay.local, S, tail);
    sub.root = S - 1;
    sub.in_place = true;
    SubGroup g{node, at(Buffer::kRecv, tail_at), at(Buffer::kRecv, tail_at), {}};
    CIUIC_RETURN_IF_ERROR(append_piece(s, sub, "tree", g, kTailBroadcast, &regions, &ledgers));
  }
  for (int e : extras)
    for (const Range& ch : whole)
      ledgers.add(s, send_step(e, at(Buffer::kRecv, ch.offset), ch.bytes));
  s->scratch_bytes = std::max(s->scratch_bytes, regions.end());
  return Status::Ok();
}

namespace {

// Reduce-scatter and all-gather: every node must have the same number of ranks.
Status uniform_layout(const CollectiveArgs& a, Layout* lay, bool* usable) {
  CIUIC_RETURN_IF_ERROR(usable_layout(a, lay, usable));
  *usable = *usable && lay->smallest == lay->largest;
  return Status::Ok();
}

// What reduce-scatter and all-gather both start from.
struct StagedPlan {
  Layout lay;
  std::string inter;        // the algorithm between the nodes
  size_t elem = 0;          // bytes of one element
  size_t block = 0;         // bytes of one rank's block
  size_t N = 0, L = 0;      // nodes, ranks per node
  size_t total = 0;         // bytes of all blocks: the staging area in scratch
  size_t mine_at = 0;       // where the blocks of this rank's index start in the staging
  std::vector<int> across;  // the ranks of this rank's index, one per node
};

// Plans a staged reduce-scatter or all-gather. *finished when nothing more is to be built:
// the layout is not uniform (*s is then the flat algorithm's schedule) or there are no bytes.
Status plan_staged(const CollectiveArgs& a, Schedule* s, StagedPlan* p, bool* finished) {
  *finished = true;
  bool usable = false;
  CIUIC_RETURN_IF_ERROR(uniform_layout(a, &p->lay, &usable));
  if (!usable) return build_flat(a, s);
  p->inter = inter_algorithm(hierarchical_plan(a, *node_layout(a)));
  s->algorithm = "hierarchical(inter " + p->inter + ")";
  p->elem = reduce::datatype_size(a.datatype);
  p->block = a.count * p->elem;
  p->N = p->lay.members.size();
  p->L = p->lay.smallest;
  p->total = p->block * static_cast<size_t>(a.nranks);
  if (p->block == 0) return Status::Ok();
  p->mine_at = static_cast<size_t>(p->lay.local) * p->N * p->block;
  p->across.resize(p->N);
  for (size_t k = 0; k < p->N; ++k)
    p->across[k] = p->lay.members[k][static_cast<size_t>(p->lay.local)];
  *finished = false;
  return Status::Ok();
}

// Copies between the rank-ordered blocks of `ranked` and the staging area in scratch,
// where the block of node k's rank j lies at (j * N + k) * block; runs of blocks that are
// consecutive on both sides go as one copy. to_stage: ranked -> staging, else back.
void copy_staged(Schedule* s, BufferLedgers* ledgers, const Layout& lay, BufferRange ranked,
                 size_t staging, size_t block, bool to_stage) {
  const size_t N = lay.members.size(), L = lay.smallest;
  size_t run_from = 0, run_rank = 0, run_blocks = 0;
  auto flush = [&] {
    if (run_blocks == 0) return;
    const BufferRange stage = at(Buffer::kScratch, staging + run_from * block);
    const BufferRange user{ranked.buffer, ranked.set, ranked.offset + run_rank * block};
    ledgers->add(s, to_stage ? copy_step(stage, user, run_blocks * block)
                             : copy_step(user, stage, run_blocks * block));
    run_blocks = 0;
  };
  for (size_t j = 0; j < L; ++j) {
    for (size_t k = 0; k < N; ++k) {
      const size_t position = j * N + k, rank = static_cast<size_t>(lay.members[k][j]);
      if (run_blocks > 0 && rank == run_rank + run_blocks) {
        ++run_blocks;
        continue;
      }
      flush();
      run_from = position;
      run_rank = rank;
      run_blocks = 1;
    }
  }
  flush();
}

}  // namespace

Status build_hierarchical_reduce_scatter(const CollectiveArgs& a, Schedule* s) {
  StagedPlan p;
  bool finished = false;
  CIUIC_RETURN_IF_ERROR(plan_staged(a, s, &p, &finished));
  if (finished) return Status::Ok();
  const Buffer in = reduce_scatter_input(a);
  BufferAliasingHint alias;
  if (a.in_place && !a.in_place_mpi)
    alias = BufferAliasingHint{true, static_cast<size_t>(a.rank) * p.block};
  BufferLedgers ledgers(alias);
  copy_staged(s, &ledgers, p.lay, at(in, 0), 0, p.block, true);
  s->scratch_bytes = p.total;
  {
    CollectiveArgs sub =
        sub_args(a, Collective::kReduceScatter, p.lay.local, static_cast<int>(p.L), p.N * a.count);
    sub.in_place = true;  // NCCL's form: this rank's part lies inside the staged input
    SubGroup g{p.lay.members[p.lay.node], at(Buffer::kScratch, 0), at(Buffer::kScratch, p.mine_at),
               at(Buffer::kScratch, s->scratch_bytes)};
    CIUIC_RETURN_IF_ERROR(append_sub_collective(s, sub, "ring", g, &ledgers));
  }
  {
    CollectiveArgs sub =
        sub_args(a, Collective::kReduceScatter, p.lay.node, static_cast<int>(p.N), a.count);
    SubGroup g{p.across, at(Buffer::kScratch, p.mine_at), at(Buffer::kRecv, 0),
               at(Buffer::kScratch, s->scratch_bytes)};
    CIUIC_RETURN_IF_ERROR(append_sub_collective(s, sub, p.inter, g, &ledgers));
  }
  if (a.op == CIUIC_AVG) average(s, &ledgers, Range{0, p.block}, a.chunk_bytes, p.elem);
  return Status::Ok();
}

Status build_hierarchical_allgather(const CollectiveArgs& a, Schedule* s) {
  StagedPlan p;
  bool finished = false;
  CIUIC_RETURN_IF_ERROR(plan_staged(a, s, &p, &finished));
  if (finished) return Status::Ok();
  BufferLedgers ledgers;
  s->scratch_bytes = p.total;
  const BufferRange input =
      a.in_place ? at(Buffer::kRecv, static_cast<size_t>(a.rank) * p.block) : at(Buffer::kSend, 0);
  {
    CollectiveArgs sub =
        sub_args(a, Collective::kAllgather, p.lay.node, static_cast<int>(p.N), a.count);
    SubGroup g{p.across, input, at(Buffer::kScratch, p.mine_at),
               at(Buffer::kScratch, s->scratch_bytes)};
    CIUIC_RETURN_IF_ERROR(append_sub_collective(s, sub, p.inter, g, &ledgers));
  }
  {
    CollectiveArgs sub =
        sub_args(a, Collective::kAllgather, p.lay.local, static_cast<int>(p.L), p.N * a.count);
    sub.in_place = true;
    SubGroup g{p.lay.members[p.lay.node], at(Buffer::kScratch, 0), at(Buffer::kScratch, 0),
               at(Buffer::kScratch, s->scratch_bytes)};
    CIUIC_RETURN_IF_ERROR(append_sub_collective(s, sub, "ring", g, &ledgers));
  }
  copy_staged(s, &ledgers, p.lay, at(Buffer::kRecv, 0), 0, p.block, false);
  return Status::Ok();
}

}  // namespace ciuic::coll
