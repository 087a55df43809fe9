// Pipelined chains for rooted collectives: broadcast flows root -> root+1 -> ... and
// reduce flows root+1 -> root+2 -> ... -> root, chunk by chunk, so every link is busy
// once the pipeline fills and the time is about (size + (n-2) * chunk) / bandwidth.
#include <algorithm>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
Status build_chain_broadcast(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t bytes = a.count * elem;
  const int n = a.nranks, r = a.rank;
  const int position = wrap_rank(r - a.root, n);  // 0 = root
  const bool root = position == 0;
  if (root && !a.in_place && bytes > 0)
    s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), bytes));
  if (n == 1) return Status::Ok();
  const int next = wrap_rank(r + 1, n), prev = wrap_rank(r - 1, n);
  const bool last = position == n - 1;
  for (const Range& ch : chunks_of(Range{0, bytes}, a.chunk_bytes, elem)) {
    if (root) {
      const Buffer src = a.in_place ? Buffer::kRecv : Buffer::kSend;
      s->add(send_step(next, at(src, ch.offset), ch.bytes));
      continue;
    }
    uint32_t got = s->add(recv_step(prev, at(Buffer::kRecv, ch.offset), ch.bytes));
    if (!last) s->add(send_step(next, at(Buffer::kRecv, ch.offset), ch.bytes), {got});
  }
  return Status::Ok();
}

Status build_chain_reduce(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t bytes = a.count * elem;
  const int n = a.nranks, r = a.rank;
  const Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  const int position = wrap_rank(r - a.root - 1, n);  // 0 starts the chain, n-1 is the root
  const bool root = r == a.root;
  if (n == 1) {
    if (!a.in_place && bytes > 0) s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), bytes));
    return Status::Ok();
  }
  const int next = wrap_rank(r + 1, n), prev = wrap_rank(r - 1, n);
  const size_t slot_bytes = whole_elements(a.chunk_bytes, elem);
  ScratchPool pool(std::min(slot_bytes, bytes), a.scratch_slots);  // no bigger than the message
  for (const Range& ch : chunks_of(Range{0, bytes}, slot_bytes, elem)) {
    const BufferRange mine = at(in, ch.offset);
    if (position == 0) {
      s->add(send_step(next, mine, ch.bytes));
      continue;
    }
    std::vector<uint32_t> deps;
    BufferRange slot = pool.acquire(&deps);
    uint32_t got = s->add(recv_step(prev, slot, ch.bytes), deps);
    if (root) {
      uint32_t red = s->add(reduce_step(at(Buffer::kRecv, ch.offset), mine, slot, ch.bytes), {got});
      pool.release(slot, red);
      if (a.op == CIUIC_AVG) s->add(average_step(at(Buffer::kRecv, ch.offset), ch.bytes), {red});
    } else {
      uint32_t red = s->add(reduce_step(slot, mine, slot, ch.bytes), {got});
      pool.release(slot, s->add(send_step(next, slot, ch.bytes), {red}));
    }
  }
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}

}  // namespace ciuic::coll
