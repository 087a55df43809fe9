// Binary trees: the double binary tree all-reduce and pipelined tree broadcast / reduce.
//
// One tree over m labels 0..m-1: a label's level is its lowest set bit; label 0 is the
// root, with the largest power of two below m as its only child. A binary tree has
// about m/2 leaves that never send down, so a single tree uses half the links' sending
// capacity. Two trees whose interior nodes are each other's leaves (the second tree's
// labels are the first's mirrored when m is even, shifted by one when m is odd) each
// carry half the data, so every rank sends and receives about the whole buffer once per
// phase, in log2(m) latency steps instead of the ring's m-1 — NCCL's construction.
#include <algorithm>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "coll/tree.h"
#include "reduce/reduce.h"

namespace ciuic::coll {

TreeNode binary_tree_node(int label, int m) {
  TreeNode node;
  if (m <= 1) return node;
  if (label == 0) {
    int top = 1;
    while (top * 2 < m) top *= 2;
    node.children.push_back(top);
    return node;
  }
  const int low = label & -label;
  int parent = (label ^ low) | (low << 1);
  if (parent >= m) parent = label ^ low;
  node.parent = parent;
  if (low > 1) {
    node.children.push_back(label - low / 2);
    int step = low / 2;
    while (step > 0 && label + step >= m) step /= 2;
    if (step > 0) node.children.push_back(label + step);
  }
  return node;
}

int tree_label(int which, int index, int m) {
  if (which == 0) return index;
  return m % 2 == 0 ? m - 1 - index : (index + 1) % m;
}

int tree_index(int which, int label, int m) {
  if (which == 0) return label;
  return m % 2 == 0 ? m - 1 - label : (label + m - 1) % m;
}

namespace {

// One rank's place in one tree, in communicator ranks (-1: none).
struct Place {
  int parent = -1;
  std::vector<int> children;
};

// Tree `which` of the double tree over all n ranks.
Place allreduce_place(int which, int rank, int n) {
  const TreeNode t = binary_tree_node(tree_label(which, rank, n), n);
  Place p;
  if (t.parent >= 0) p.parent = tree_index(which, t.parent, n);
  for (int c : t.children) p.children.push_back(tree_index(which, c, n));
  return p;
}

// Tree `which` of a rooted collective: the root feeds two trees over the other n-1
// ranks (index i = rank - root - 1 mod n), one per half of the data. n == 2: the one
// other rank serves both halves.
Place rooted_place(int which, int rank, int root, int n) {
  Place p;
  const int m = n - 1;
  auto to_rank = [&](int index) { return wrap_rank(index + root + 1, n); };
  const int root_child = to_rank(tree_index(which, 0, m));
  if (rank == root) {
    p.children.push_back(root_child);
    return p;
  }
  const int index = wrap_rank(rank - root - 1, n);
  const TreeNode t = binary_tree_node(tree_label(which, index, m), m);
  p.parent = t.parent >= 0 ? to_rank(tree_index(which, t.parent, m)) : root;
  for (int c : t.children) p.children.push_back(to_rank(tree_index(which, c, m)));
  return p;
}

// Scratch slots no larger than the largest chunk this rank receives from a child: a
// small operation must not reserve scratch_slots whole chunk_bytes.
size_t slot_bytes_for(const Place (&places)[2], const std::vector<Range>& halves,
                      size_t chunk_bytes, size_t elem) {
  size_t largest = 0;
  for (int t = 0; t < 2; ++t)
    if (!places[t].children.empty()) largest = std::max(largest, halves[t].bytes);
  return std::min(whole_elements(chunk_bytes, elem), largest);
}

// What one chunk of one tree left behind, for the phase after it.
struct ChunkDone {
  std::vector<uint32_t> readers;  // steps that read the chunk's bytes of recvbuf
  uint32_t writer = UINT32_MAX;   // step that last wrote them
};

std::vector<uint32_t> after(const ChunkDone& d) {
  std::vector<uint32_t> deps = d.readers;
  if (d.writer != UINT32_MAX) deps.push_back(d.writer);
  return deps;
}

// Reduce phase of one chunk toward `place.parent`: receives from each child into a
// scratch slot and folds it into recvbuf, then sends the partial result up. `in` holds
// this rank's input (send or recv buffer). Returns what touched recvbuf.
ChunkDone reduce_up(Schedule* s, const Place& place, Range ch, Buffer in, bool result_here,
                    ScratchPool* pool) {
  ChunkDone done;
  BufferRange acc = at(in, ch.offset);  // where the partial result lives
  uint32_t acc_step = UINT32_MAX;
  for (int child : place.children) {
    std::vector<uint32_t> deps;
    const BufferRange slot = pool->acquire(&deps);
    const uint32_t got = s->add(recv_step(child, slot, ch.bytes), deps);
    std::vector<uint32_t> red_deps{got};
    if (acc_step != UINT32_MAX) red_deps.push_back(acc_step);
    acc_step = s->add(reduce_step(at(Buffer::kRecv, ch.offset), acc, slot, ch.bytes), red_deps);
    pool->release(slot, acc_step);
    acc = at(Buffer::kRecv, ch.offset);
  }
  if (acc_step == UINT32_MAX && result_here && in != Buffer::kRecv)
    acc_step =
        s->add(copy_step(at(Buffer::kRecv, ch.offset), acc, ch.bytes));  // a root with no child
  done.writer = acc_step;
  if (place.parent >= 0) {
    std::vector<uint32_t> deps;
    if (acc_step != UINT32_MAX) deps.push_back(acc_step);
    const uint32_t sent = s->add(send_step(place.parent, acc, ch.bytes), deps);
    if (acc.buffer == Buffer::kRecv) done.readers.push_back(sent);
  }
  return done;
}

// Broadcast phase of one chunk: receive it from the parent (unless this is the root),
// then pass it to every child.
void broadcast_down(Schedule* s, const Place& place, Range ch, BufferRange root_src,
                    ChunkDone done) {
  BufferRange src = at(Buffer::kRecv, ch.offset);
  std::vector<uint32_t> ready = after(done);
  if (place.parent >= 0) {
    ready = {s->add(recv_step(place.parent, src, ch.bytes), ready)};
  } else {
    src = root_src;
  }
  for (int child : place.children) s->add(send_step(child, src, ch.bytes), ready);
}

}  // namespace

Status build_double_tree_allreduce(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const int n = a.nranks, r = a.rank;
  const Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  if (n == 1) {
    if (!a.in_place && a.count > 0)
      s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), a.count * elem));
    return Status::Ok();
  }
  const std::vector<Range> halves = split_even(a.count, 2, elem);
  const Place places[2] = {allreduce_place(0, r, n), allreduce_place(1, r, n)};
  std::vector<Range> chunks[2];
  for (int t = 0; t < 2; ++t) chunks[t] = chunks_of(halves[t], a.chunk_bytes, elem);
  ScratchPool pool(slot_bytes_for(places, halves, a.chunk_bytes, elem), a.scratch_slots);
  // Every reduce-phase message before any broadcast-phase one: a pair of ranks linked in
  // both trees then sees one order on both sides, and no broadcast waits for itself.
  std::vector<ChunkDone> done[2];
  const size_t most = std::max(chunks[0].size(), chunks[1].size());
  for (size_t c = 0; c < most; ++c) {
    for (int t = 0; t < 2; ++t) {
      if (c >= chunks[t].size()) continue;
      ChunkDone d = reduce_up(s, places[t], chunks[t][c], in, places[t].parent < 0, &pool);
      if (places[t].parent < 0 && a.op == CIUIC_AVG)
        d.writer = s->add(average_step(at(Buffer::kRecv, chunks[t][c].offset), chunks[t][c].bytes),
                          after(d));
      done[t].push_back(d);
    }
  }
  for (size_t c = 0; c < most; ++c)
    for (int t = 0; t < 2; ++t)
      if (c < chunks[t].size())
        broadcast_down(s, places[t], chunks[t][c], at(Buffer::kRecv, chunks[t][c].offset),
                       done[t][c]);
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}

Status build_tree_broadcast(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t bytes = a.count * elem;
  const int n = a.nranks, r = a.rank;
  const bool root = r == a.root;
  if (root && !a.in_place && bytes > 0)
    s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), bytes));
  if (n == 1) return Status::Ok();
  const std::vector<Range> halves = split_even(a.count, 2, elem);
  const Buffer root_in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  for (int t = 0; t < 2; ++t) {
    const Place place = rooted_place(t, r, a.root, n);
    for (const Range& ch : chunks_of(halves[t], a.chunk_bytes, elem))
      broadcast_down(s, place, ch, at(root_in, ch.offset), ChunkDone{});
  }
  return Status::Ok();
}

Status build_tree_reduce(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t bytes = a.count * elem;
  const int n = a.nranks, r = a.rank;
  const bool root = r == a.root;
  const Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  if (n == 1) {
    if (!a.in_place && bytes > 0)
      s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), bytes));
    return Status::Ok();
  }
  // Off the root, recvbuf may be absent: partial sums of interior ranks live in scratch.
  const std::vector<Range> halves = split_even(a.count, 2, elem);
  const Place places[2] = {rooted_place(0, r, a.root, n), rooted_place(1, r, a.root, n)};
  const size_t slot_bytes = whole_elements(a.chunk_bytes, elem);
  ScratchPool pool(slot_bytes_for(places, halves, a.chunk_bytes, elem), a.scratch_slots);
  for (int t = 0; t < 2; ++t) {
    const Place& place = places[t];
    for (const Range& ch : chunks_of(halves[t], slot_bytes, elem)) {
      if (root) {
        const ChunkDone d = reduce_up(s, place, ch, in, true, &pool);
        if (a.op == CIUIC_AVG)
          s->add(average_step(at(Buffer::kRecv, ch.offset), ch.bytes), after(d));
        continue;
      }
      // A partial sum: fold each child's chunk into a slot holding this rank's chunk.
      BufferRange acc = at(in, ch.offset);
      uint32_t acc_step = UINT32_MAX;
      BufferRange own_slot{};
      for (int child : place.children) {
        std::vector<uint32_t> deps;
        const BufferRange slot = pool.acquire(&deps);
        const uint32_t got = s->add(recv_step(child, slot, ch.bytes), deps);
        if (acc_step == UINT32_MAX) {
          acc_step = s->add(reduce_step(slot, acc, slot, ch.bytes), {got});
          own_slot = slot;
        } else {
          acc_step = s->add(reduce_step(own_slot, own_slot, slot, ch.bytes), {got, acc_step});
          pool.release(slot, acc_step);
        }
        acc = own_slot;
      }
      std::vector<uint32_t> deps;
      if (acc_step != UINT32_MAX) deps.push_back(acc_step);
      const uint32_t sent = s->add(send_step(place.parent, acc, ch.bytes), deps);
      if (acc_step != UINT32_MAX) pool.release(own_slot, sent);
    }
  }
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}

}  // namespace ciuic::coll
