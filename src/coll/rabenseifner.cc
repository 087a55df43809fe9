// Recursive halving and doubling (Rabenseifner): all-reduce as a reduce-scatter by
// recursive halving (log2 p rounds, each exchanging half of what is left) then an
// all-gather by recursive doubling; and each half on its own as reduce-scatter and
// all-gather. Every rank moves 2(p-1)/p of the buffer, as in the ring, but in 2 log2(p)
// steps instead of 2(p-1).
//
// Rank counts that are not a power of two fold in first, as MPICH does: with p the
// largest power of two <= n and rem = n - p, ranks 2i and 2i+1 (i < rem) pair up; the
// even one hands its data to the odd one, sits the rounds out, and gets its result back
// at the end. The p remaining ranks take virtual ranks 0..p-1 and each owns a block of
// the buffer: virtual rank i < rem owns the blocks of ranks 2i and 2i+1.
#include <algorithm>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

struct Fold {
  int pow2 = 1;
  int rem = 0;
  int vrank = -1;            // -1: this rank sits the rounds out
  bool odd_partner = false;  // this rank folds its even neighbour in
  int real(int v) const { return v < rem ? 2 * v + 1 : v + rem; }
};

Fold fold_for(int rank, int n) {
  Fold f;
  while (f.pow2 * 2 <= n) f.pow2 *= 2;
  f.rem = n - f.pow2;
  if (rank < 2 * f.rem) {
    if (rank % 2 == 0) return f;
    f.odd_partner = true;
    f.vrank = rank / 2;
  } else {
    f.vrank = rank - f.rem;
  }
  return f;
}

// Virtual rank v's block when blocks belong to real ranks (reduce-scatter, all-gather):
// ranks 2v and 2v+1 for v < rem, else rank v + rem.
std::vector<Range> virtual_blocks_of_ranks(const Fold& f, size_t block) {
  std::vector<Range> out(static_cast<size_t>(f.pow2));
  for (int v = 0; v < f.pow2; ++v) {
    const size_t first = v < f.rem ? 2 * static_cast<size_t>(v) : static_cast<size_t>(v + f.rem);
    const size_t blocks = v < f.rem ? 2 : 1;
    out[v] = Range{first * block, blocks * block};
  }
  return out;
}

Range span(const std::vector<Range>& blocks, int lo, int hi) {
  return Range{blocks[lo].offset, blocks[hi - 1].offset + blocks[hi - 1].bytes - blocks[lo].offset};
}

// Where a reduction accumulates (recvbuf for all-reduce, scratch for reduce-scatter) and
// where the input still lies for bytes not yet accumulated.
struct Accumulator {
  Buffer buffer;
  size_t base;  // offset of byte 0 of the input in `buffer`
  Buffer input;
  bool fresh = true;  // nothing accumulated yet: the values are still in `input`
  ByteLedger ledger;  // over `buffer`, offsets relative to base
  std::vector<uint32_t> input_readers;
  BufferRange at_byte(size_t offset) const { return at(buffer, base + offset); }
};

// Sends `range` of the current values in chunks to `peer`.
void send_values(Schedule* s, Accumulator* acc, int peer, Range range, size_t chunk, size_t elem) {
  for (const Range& ch : chunks_of(range, chunk, elem)) {
    if (acc->fresh) {
      acc->input_readers.push_back(s->add(send_step(peer, at(acc->input, ch.offset), ch.bytes)));
      if (acc->input == acc->buffer && acc->base == 0)
        acc->ledger.read(ch, acc->input_readers.back());
    } else {
      const uint32_t sent =
          s->add(send_step(peer, acc->at_byte(ch.offset), ch.bytes), acc->ledger.before_read(ch));
      acc->ledger.read(ch, sent);
    }
  }
}

// Receives `range` from `peer` chunk by chunk and folds it into the accumulator.
void receive_and_reduce(Schedule* s, Accumulator* acc, ScratchPool* pool, int peer, Range range,
                        size_t chunk, size_t elem) {
  for (const Range& ch : chunks_of(range, chunk, elem)) {
    std::vector<uint32_t> deps;
    const BufferRange slot = pool->acquire(&deps);
    const uint32_t got = s->add(recv_step(peer, slot, ch.bytes), deps);
    std::vector<uint32_t> before = acc->ledger.before_write(ch);
    before.push_back(got);
    const BufferRange mine = acc->fresh ? at(acc->input, ch.offset) : acc->at_byte(ch.offset);
    const uint32_t red = s->add(reduce_step(acc->at_byte(ch.offset), mine, slot, ch.bytes), before);
    if (acc->fresh) acc->input_readers.push_back(red);
    acc->ledger.write(ch, red);
    pool->release(slot, red);
  }
}

// Reduce-scatter by recursive halving among the virtual ranks: afterwards virtual rank v
// holds blocks[v] fully reduced in the accumulator.
void recursive_halving(Schedule* s, const Fold& f, const std::vector<Range>& blocks,
                       Accumulator* acc, ScratchPool* pool, size_t chunk, size_t elem) {
  int lo = 0, hi = f.pow2;
  for (int mask = f.pow2 / 2; mask >= 1; mask /= 2) {
    const int partner = f.real(f.vrank ^ mask);
    const int mid = lo + (hi - lo) / 2;
    const bool upper = (f.vrank & mask) != 0;
    const Range give = upper ? span(blocks, lo, mid) : span(blocks, mid, hi);
    const Range keep = upper ? span(blocks, mid, hi) : span(blocks, lo, mid);
    send_values(s, acc, partner, give, chunk, elem);
    receive_and_reduce(s, acc, pool, partner, keep, chunk, elem);
    acc->fresh = false;
    if (upper)
      lo = mid;
    else
      hi = mid;
  }
}

// All-gather by recursive doubling among the virtual ranks, in `buffer` (whose ledger
// knows what wrote blocks[v]): afterwards every block is there.
void recursive_doubling_gather(Schedule* s, const Fold& f, const std::vector<Range>& blocks,
                               Buffer buffer, ByteLedger* ledger, size_t chunk, size_t elem) {
  int lo = f.vrank, hi = f.vrank + 1;
  for (int mask = 1; mask < f.pow2; mask *= 2) {
    const int partner = f.real(f.vrank ^ mask);
    const int width = hi - lo;
    const bool upper = (f.vrank & mask) != 0;
    const int plo = upper ? lo - width : hi, phi = plo + width;
    for (const Range& ch : chunks_of(span(blocks, lo, hi), chunk, elem)) {
      const uint32_t sent =
          s->add(send_step(partner, at(buffer, ch.offset), ch.bytes), ledger->before_read(ch));
      ledger->read(ch, sent);
    }
    for (const Range& ch : chunks_of(span(blocks, plo, phi), chunk, elem))
      ledger->write(ch, s->add(recv_step(partner, at(buffer, ch.offset), ch.bytes),
                               ledger->before_write(ch)));
    lo = std::min(lo, plo);
    hi = std::max(hi, phi);
  }
}

// Scratch slots no larger than the largest message this rank receives for reduction:
// the whole buffer when it folds a neighbour in, else the half it keeps in the first round.
size_t slot_bytes(const Fold& f, const std::vector<Range>& blocks, size_t chunk, size_t elem) {
  const int half = f.pow2 / 2;
  const bool upper = (f.vrank & half) != 0;
  size_t largest = f.odd_partner ? span(blocks, 0, f.pow2).bytes
                   : upper       ? span(blocks, half, f.pow2).bytes
                                 : span(blocks, 0, half).bytes;
  return std::min(whole_elements(chunk, elem), largest);
}

std::vector<uint32_t> sends_of(Schedule* s, int peer, Buffer b, Range range, size_t chunk,
                               size_t elem, const std::vector<uint32_t>& deps) {
  std::vector<uint32_t> out;
  for (const Range& ch : chunks_of(range, chunk, elem))
    out.push_back(s->add(send_step(peer, at(b, ch.offset), ch.bytes), deps));
  return out;
}

}  // namespace

Status build_rabenseifner_allreduce(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t bytes = a.count * elem;
  const int n = a.nranks;
  const Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  if (n == 1 || bytes == 0) {
    if (!a.in_place && bytes > 0)
      s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), bytes));
    return Status::Ok();
  }
  const size_t chunk = a.chunk_bytes;
  const Fold f = fold_for(a.rank, n);
  if (f.vrank < 0) {
    // The result lands where an in-place input is read from: receive after sending.
    const std::vector<uint32_t> sent =
        sends_of(s, a.rank + 1, in, Range{0, bytes}, chunk, elem, {});
    for (const Range& ch : chunks_of(Range{0, bytes}, chunk, elem))
      s->add(recv_step(a.rank + 1, at(Buffer::kRecv, ch.offset), ch.bytes), sent);
    return Status::Ok();
  }
  const std::vector<Range> blocks = split_even(a.count, f.pow2, elem);
  ScratchPool pool(slot_bytes(f, blocks, chunk, elem), a.scratch_slots);
  Accumulator acc{Buffer::kRecv, 0, in, true, {}, {}};
  if (f.odd_partner) {
    receive_and_reduce(s, &acc, &pool, a.rank - 1, Range{0, bytes}, chunk, elem);
    acc.fresh = false;
  }
  recursive_halving(s, f, blocks, &acc, &pool, chunk, elem);
  if (a.op == CIUIC_AVG)
    for (const Range& ch : chunks_of(blocks[f.vrank], chunk, elem))
      acc.ledger.write(ch, s->add(average_step(at(Buffer::kRecv, ch.offset), ch.bytes),
                                  acc.ledger.before_write(ch)));
  recursive_doubling_gather(s, f, blocks, Buffer::kRecv, &acc.ledger, chunk, elem);
  if (f.odd_partner)
    for (const Range& ch : chunks_of(Range{0, bytes}, chunk, elem))
      s->add(send_step(a.rank - 1, at(Buffer::kRecv, ch.offset), ch.bytes),
             acc.ledger.before_read(ch));
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}

Status build_rabenseifner_reduce_scatter(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t block = a.count * elem;
  const int n = a.nranks, r = a.rank;
  const size_t total = block * static_cast<size_t>(n);
  const Buffer in = reduce_scatter_input(a);
  if (reduce_scatter_of_one(a, block, s) || block == 0) return Status::Ok();
  const size_t chunk = a.chunk_bytes;
  const Fold f = fold_for(r, n);
  const Range mine{static_cast<size_t>(r) * block, block};
  if (f.vrank < 0) {
    const std::vector<uint32_t> sent = sends_of(s, r + 1, in, Range{0, total}, chunk, elem, {});
    for (const Range& ch : chunks_of(Range{0, block}, chunk, elem))
      s->add(recv_step(r + 1, at(Buffer::kRecv, ch.offset), ch.bytes), sent);
    return Status::Ok();
  }
  // The partial sums accumulate in scratch: recvbuf holds one block only.
  const std::vector<Range> blocks = virtual_blocks_of_ranks(f, block);
  ScratchPool pool(slot_bytes(f, blocks, chunk, elem), a.scratch_slots, total);
  Accumulator acc{Buffer::kScratch, 0, in, true, {}, {}};
  if (f.odd_partner) {
    receive_and_reduce(s, &acc, &pool, r - 1, Range{0, total}, chunk, elem);
    acc.fresh = false;
  }
  recursive_halving(s, f, blocks, &acc, &pool, chunk, elem);
  if (a.op == CIUIC_AVG)
    for (const Range& ch : chunks_of(blocks[f.vrank], chunk, elem))
      acc.ledger.write(
          ch, s->add(average_step(acc.at_byte(ch.offset), ch.bytes), acc.ledger.before_write(ch)));
  if (f.odd_partner) {
    const Range theirs{static_cast<size_t>(r - 1) * block, block};
    for (const Range& ch : chunks_of(theirs, chunk, elem))
      acc.ledger.read(ch, s->add(send_step(r - 1, acc.at_byte(ch.offset), ch.bytes),
                                 acc.ledger.before_read(ch)));
  }
  // The result's bytes may be input bytes (in place): copy once nothing reads the input.
  for (const Range& ch : chunks_of(mine, chunk, elem)) {
    std::vector<uint32_t> deps = acc.ledger.before_read(ch);
    deps.insert(deps.end(), acc.input_readers.begin(), acc.input_readers.end());
    s->add(copy_step(at(Buffer::kRecv, ch.offset - mine.offset), acc.at_byte(ch.offset), ch.bytes),
           deps);
  }
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}

Status build_rabenseifner_allgather(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t block = a.count * elem;
  const int n = a.nranks, r = a.rank;
  const size_t total = block * static_cast<size_t>(n);
  const Range mine{static_cast<size_t>(r) * block, block};
  ByteLedger ledger;  // recvbuf
  if (!a.in_place && block > 0)
    ledger.write(mine,
                 s->add(copy_step(at(Buffer::kRecv, mine.offset), at(Buffer::kSend, 0), block)));
  if (n == 1 || block == 0) return Status::Ok();
  const size_t chunk = a.chunk_bytes;
  const Fold f = fold_for(r, n);
  if (f.vrank < 0) {
    // Hand our block over, get back everyone else's (the bytes around ours).
    for (const Range& ch : chunks_of(mine, chunk, elem))
      ledger.read(ch, s->add(send_step(r + 1, at(Buffer::kRecv, ch.offset), ch.bytes),
                             ledger.before_read(ch)));
    for (const Range& part :
         {Range{0, mine.offset}, Range{mine.offset + block, total - mine.offset - block}})
      for (const Range& ch : chunks_of(part, chunk, elem))
        s->add(recv_step(r + 1, at(Buffer::kRecv, ch.offset), ch.bytes));
    return Status::Ok();
  }
  if (f.odd_partner) {
    const Range theirs{static_cast<size_t>(r - 1) * block, block};
    for (const Range& ch : chunks_of(theirs, chunk, elem))
      ledger.write(ch, s->add(recv_step(r - 1, at(Buffer::kRecv, ch.offset), ch.bytes)));
  }
  const std::vector<Range> blocks = virtual_blocks_of_ranks(f, block);
  recursive_doubling_gather(s, f, blocks, Buffer::kRecv, &ledger, chunk, elem);
  if (f.odd_partner) {
    const size_t theirs = static_cast<size_t>(r - 1) * block;
    for (const Range& part : {Range{0, theirs}, Range{theirs + block, total - theirs - block}})
      for (const Range& ch : chunks_of(part, chunk, elem))
        s->add(send_step(r - 1, at(Buffer::kRecv, ch.offset), ch.bytes), ledger.before_read(ch));
  }
  return Status::Ok();
}

}  // namespace ciuic::coll
