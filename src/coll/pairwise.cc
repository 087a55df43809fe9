// All-to-all by pairwise exchange (step k: send to rank+k, receive from rank-k, so every
// rank talks to one peer at a time), the dissemination barrier (log2(n) rounds of empty
// messages), and point-to-point send/recv.
#include "coll/algorithms.h"
#include "coll/builder.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
Status build_pairwise_alltoall(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t block = a.count * elem;
  const int n = a.nranks, r = a.rank;
  auto block_at = [&](int peer) { return static_cast<size_t>(peer) * block; };
  Buffer src = Buffer::kSend;
  std::vector<uint32_t> staged;  // in place: every step waits for the input's copy
  if (a.in_place) {
    // Blocks arrive where blocks still have to leave from: stage the input first.
    if (n > 1 && block > 0) {
      staged.push_back(s->add(copy_step(at(Buffer::kScratch, 0), at(Buffer::kRecv, 0), block * n)));
      s->scratch_bytes = block * static_cast<size_t>(n);
    }
    src = Buffer::kScratch;
  } else if (block > 0) {
    s->add(copy_step(at(Buffer::kRecv, block_at(r)), at(Buffer::kSend, block_at(r)), block));
  }
  for (int k = 1; k < n; ++k) {
    const int to = wrap_rank(r + k, n), from = wrap_rank(r - k, n);
    for (const Range& ch : chunks_of(Range{block_at(to), block}, a.chunk_bytes, elem))
      s->add(send_step(to, at(src, ch.offset), ch.bytes), staged);
    for (const Range& ch : chunks_of(Range{block_at(from), block}, a.chunk_bytes, elem))
      s->add(recv_step(from, at(Buffer::kRecv, ch.offset), ch.bytes), staged);
  }
  return Status::Ok();
}

Status build_dissemination_barrier(const CollectiveArgs& a, Schedule* s) {
  const int n = a.nranks, r = a.rank;
  std::vector<uint32_t> previous;
  for (int distance = 1; distance < n; distance *= 2) {
    uint32_t sent = s->add(send_step(wrap_rank(r + distance, n), at(Buffer::kScratch, 0), 0), previous);
    uint32_t got = s->add(recv_step(wrap_rank(r - distance, n), at(Buffer::kScratch, 0), 0), previous);
    previous = {sent, got};
  }
  return Status::Ok();
}

Status build_direct_send(const CollectiveArgs& a, Schedule* s) {
  s->add(send_step(a.peer, at(Buffer::kSend, 0), a.count * reduce::datatype_size(a.datatype)));
  return Status::Ok();
}

Status build_direct_recv(const CollectiveArgs& a, Schedule* s) {
  s->add(recv_step(a.peer, at(Buffer::kRecv, 0), a.count * reduce::datatype_size(a.datatype)));
  return Status::Ok();
}

}  // namespace ciuic::coll
