// Torus algorithms: ranks on a d0 x d1 x d2 grid (rank = x0 + d0 * (x1 + d1 * x2)), where
// each rank's neighbours along a dimension are the ranks that differ from it in that
// coordinate by one (wrapping). All-reduce is a reduce-scatter dimension by dimension —
// a ring along dimension 0 leaves each rank 1/d0 of the data, a ring along dimension 1
// reduces that piece further, and so on — then an all-gather back in reverse order. The
// data is split in two halves that travel the rings in opposite directions, so both
// directions of every link carry traffic. Each rank sends about 2(n-1)/n of the buffer,
// as in one ring, but in 2 * sum(d_i - 1) steps instead of 2(n-1), all to neighbours.
// All-gather and reduce-scatter are the two halves on their own. 1-D and 2-D grids are
// grids with dimensions of size 1.
#include <algorithm>
#include <cmath>

#include "base/config.h"
#include "coll/algorithms.h"
#include "coll/builder.h"
#include "coll/torus.h"
#include "coll/tuner.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

const config::StringParam kTorusDims{
    "CIUIC_TORUS_DIMS", "",
    "Grid of the torus algorithms, e.g. 4x4x2 (product = number of ranks; rank = x + X*(y + Y*z)). "
    "Empty: CIUIC_TOPOLOGY's torus if it has as many ranks, else the most balanced three factors"};

}  // namespace

std::vector<int> balanced_dims(int n) {
  // The factoring a x b x c = n with the smallest largest factor, largest first.
  thread_local int last_n = 0;
  thread_local std::vector<int> last;
  if (n == last_n) return last;
  std::vector<int> best = {n, 1, 1};
  for (int a = 1; a <= n; ++a) {
    if (n % a != 0) continue;
    for (int b = 1; b <= a; ++b) {
      if ((n / a) % b != 0) continue;
      const int c = n / a / b;
      if (c > b) continue;
      if (a < best[0] || (a == best[0] && b < best[1])) best = {a, b, c};
    }
  }
  last_n = n;
  last = best;
  return best;
}

Status parse_torus_dims(const std::string& text, int nranks, std::vector<int>* out) {
  out->clear();
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find_first_of("xX*", start);
    if (end == std::string::npos) end = text.size();
    int64_t v = 0;
    if (!config::parse_int(text.substr(start, end - start), &v) || v < 1 || v > (1 << 24))
      return invalid_argument("torus dimensions '" + text + "': want sizes like 4x4x2");
    out->push_back(static_cast<int>(v));
    start = end + 1;
  }
  if (out->size() > 3) return invalid_argument("torus dimensions '" + text + "': at most three");
  int64_t product = 1;
  for (int d : *out) product *= d;
  if (product != nranks)
    return invalid_argument("torus dimensions '" + text + "' hold " + std::to_string(product) +
                            " ranks, but the " + "communicator has " + std::to_string(nranks) +
                            ": set CIUIC_TORUS_DIMS to a grid of " + std::to_string(nranks));
  while (out->size() < 3) out->push_back(1);
  return Status::Ok();
}

Status torus_dims_for(const CollectiveArgs& a, std::vector<int>* dims) {
  if (!a.torus_dims.empty()) {
    std::string text;
    for (int d : a.torus_dims) text += (text.empty() ? "" : "x") + std::to_string(d);
    return parse_torus_dims(text, a.nranks, dims);
  }
  const std::string configured = kTorusDims.get();
  if (!configured.empty()) return parse_torus_dims(configured, a.nranks, dims);
  Topology network;  // CIUIC_TOPOLOGY=torus:AxBxC of this many ranks gives the grid
  if (configured_topology(a.nranks, &network).ok() && network.kind() == Topology::Kind::kTorus) {
    *dims = network.dims();
    return Status::Ok();
  }
  *dims = balanced_dims(a.nranks);
  return Status::Ok();
}

namespace {

// One ring along one dimension: members in ring order, this rank at `pos`.
struct Ring {
  std::vector<int> members;
  int pos = 0;
  int next() const { return members[(pos + 1) % members.size()]; }
  int prev() const { return members[(pos + members.size() - 1) % members.size()]; }
};

Ring ring_along(const std::vector<int>& dims, int rank, int dim, bool backward) {
  int stride = 1;
  for (int d = 0; d < dim; ++d) stride *= dims[d];
  const int coord = rank / stride % dims[dim];
  const int base = rank - coord * stride;
  Ring ring;
  for (int i = 0; i < dims[dim]; ++i) ring.members.push_back(base + i * stride);
  ring.pos = coord;
  if (backward) {
    std::reverse(ring.members.begin(), ring.members.end());
    ring.pos = dims[dim] - 1 - coord;
  }
  return ring;
}

// A segment of a ring pass: byte ranges (one for all-reduce, one per block otherwise).
using Segment = std::vector<Range>;

// Where partial sums accumulate; bytes not yet written there still hold the input.
struct Accumulator {
  Buffer buffer;
  Buffer input;
  ByteLedger ledger;  // over `buffer`
  std::vector<uint32_t> input_readers;
  std::vector<uint32_t>* deps_for(Range ch, bool write, std::vector<uint32_t>* out) {
    *out = write ? ledger.before_write(ch) : ledger.before_read(ch);
    return out;
  }
};

BufferRange current(Accumulator* acc, Range ch) {
  return at(acc->ledger.written(ch) ? acc->buffer : acc->input, ch.offset);
}

// Ring reduce-scatter over k segments; afterwards position p holds segment (p+shift)%k
// reduced over the ring.
void ring_reduce_scatter(Schedule* s, Accumulator* acc, ScratchPool* pool, const Ring& ring,
                         const std::vector<Segment>& segs, int shift, size_t chunk, size_t elem) {
  const int k = static_cast<int>(ring.members.size());
  for (int step = 0; step < k - 1; ++step) {
    const Segment& out = segs[wrap_rank(ring.pos + shift - 1 - step, k)];
    const Segment& in = segs[wrap_rank(ring.pos + shift - 2 - step, k)];
    for (const Range& part : out) {
      for (const Range& ch : chunks_of(part, chunk, elem)) {
        const BufferRange src = current(acc, ch);
        std::vector<uint32_t> deps;
        if (src.buffer == acc->buffer) deps = acc->ledger.before_read(ch);
        const uint32_t sent = s->add(send_step(ring.next(), src, ch.bytes), deps);
        if (src.buffer == acc->buffer) acc->ledger.read(ch, sent);
        if (src.buffer == acc->input) acc->input_readers.push_back(sent);
      }
    }
    for (const Range& part : in) {
      for (const Range& ch : chunks_of(part, chunk, elem)) {
        std::vector<uint32_t> deps;
        const BufferRange slot = pool->acquire(&deps);
        const uint32_t got = s->add(recv_step(ring.prev(), slot, ch.bytes), deps);
        const BufferRange mine = current(acc, ch);
        std::vector<uint32_t> before = acc->ledger.before_write(ch);
        before.push_back(got);
        const uint32_t red =
            s->add(reduce_step(at(acc->buffer, ch.offset), mine, slot, ch.bytes), before);
        if (mine.buffer == acc->input) acc->input_readers.push_back(red);
        acc->ledger.write(ch, red);
        pool->release(slot, red);
      }
    }
  }
}

// Ring all-gather in `buffer`: position p starts with segment (p+shift)%k and ends with all.
void ring_all_gather(Schedule* s, Buffer buffer, ByteLedger* ledger, const Ring& ring,
                     const std::vector<Segment>& segs, int shift, size_t chunk, size_t elem) {
  const int k = static_cast<int>(ring.members.size());
  for (int step = 0; step < k - 1; ++step) {
    for (const Range& part : segs[wrap_rank(ring.pos + shift - step, k)])
      for (const Range& ch : chunks_of(part, chunk, elem))
        ledger->read(ch, s->add(send_step(ring.next(), at(buffer, ch.offset), ch.bytes),
                                ledger->before_read(ch)));
    for (const Range& part : segs[wrap_rank(ring.pos + shift - step - 1, k)])
      for (const Range& ch : chunks_of(part, chunk, elem))
        ledger->write(ch, s->add(recv_step(ring.prev(), at(buffer, ch.offset), ch.bytes),
                                 ledger->before_write(ch)));
  }
}

std::vector<Segment> split_segment(Range range, int parts, size_t elem) {
  std::vector<Segment> out;
  for (const Range& r : split_even(range.bytes / elem, parts, elem))
    out.push_back({Range{range.offset + r.offset, r.bytes}});
  return out;
}

// The rank-indexed layout (all-gather, reduce-scatter): segment j of a ring along `dim`
// is the blocks whose coordinate `dim` is j and whose coordinates above `dim` are this
// rank's (those below vary: already gathered, or still to be scattered) — one contiguous
// range — and direction `half` carries half of it.
std::vector<Segment> block_segments(const std::vector<int>& dims, int rank, int dim, int half,
                                    size_t block, size_t elem) {
  int below = 1;
  for (int d = 0; d < dim; ++d) below *= dims[d];
  const int group = below * dims[dim];
  const size_t base = static_cast<size_t>(rank / group * group);
  std::vector<Segment> segs(static_cast<size_t>(dims[dim]));
  for (int j = 0; j < dims[dim]; ++j) {
    const Range whole{(base + static_cast<size_t>(j * below)) * block,
                      static_cast<size_t>(below) * block};
    const Range part = split_even(whole.bytes / elem, 2, elem)[half];
    segs[j] = {Range{whole.offset + part.offset, part.bytes}};
  }
  return segs;
}

// Segments indexed by coordinate, reordered by position in the ring (reversed for the
// backward ring).
std::vector<Segment> in_ring_order(std::vector<Segment> by_coordinate, bool backward) {
  if (backward) std::reverse(by_coordinate.begin(), by_coordinate.end());
  return by_coordinate;
}

// The largest scratch-bound message of a built schedule: the slot size that wastes nothing.
size_t largest_scratch_receive(const Schedule& s) {
  size_t largest = 0;
  for (const Step& st : s.steps)
    if (st.kind == StepKind::kRecv && st.dst.buffer == Buffer::kScratch)
      largest = std::max(largest, st.bytes);
  return largest;
}

}  // namespace

namespace {
Status torus_allreduce(const CollectiveArgs& a, size_t slot_bytes, Schedule* s);
Status torus_reduce_scatter(const CollectiveArgs& a, size_t slot_bytes, Schedule* s);

// Builds with chunk-sized slots, then again with slots of the largest message actually
// received into scratch, so that a small operation reserves no more than it uses.
Status build_with_fitted_slots(const CollectiveArgs& a, Schedule* s,
                               Status (*build)(const CollectiveArgs&, size_t, Schedule*)) {
  const size_t elem = reduce::datatype_size(a.datatype);
  Schedule first = *s;
  CIUIC_RETURN_IF_ERROR(build(a, whole_elements(a.chunk_bytes, elem), &first));
  const size_t fitted = largest_scratch_receive(first);
  if (fitted == whole_elements(a.chunk_bytes, elem) || fitted == 0) {
    *s = std::move(first);
    return Status::Ok();
  }
  return build(a, fitted, s);
}
}  // namespace

Status build_torus_allreduce(const CollectiveArgs& a, Schedule* s) {
  return build_with_fitted_slots(a, s, &torus_allreduce);
}
Status build_torus_reduce_scatter(const CollectiveArgs& a, Schedule* s) {
  return build_with_fitted_slots(a, s, &torus_reduce_scatter);
}

namespace {
Status torus_allreduce(const CollectiveArgs& a, size_t slot_bytes, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t bytes = a.count * elem;
  const int n = a.nranks, r = a.rank;
  std::vector<int> dims;
  CIUIC_RETURN_IF_ERROR(torus_dims_for(a, &dims));
  const Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  if (n == 1 || bytes == 0) {
    if (!a.in_place && bytes > 0)
      s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), bytes));
    return Status::Ok();
  }
  const size_t chunk = a.chunk_bytes;
  const std::vector<Range> halves = split_even(a.count, 2, elem);
  ScratchPool pool(slot_bytes, a.scratch_slots);
  Accumulator acc{Buffer::kRecv, in, {}, {}};
  // Per half: the range left to this rank after each dimension's reduce-scatter.
  std::vector<Range> held[2] = {{halves[0]}, {halves[1]}};
  for (int dim = 0; dim < 3; ++dim) {
    if (dims[dim] == 1) continue;
    for (int h = 0; h < 2; ++h) {
      const Ring ring = ring_along(dims, r, dim, h == 1);
      const std::vector<Segment> segs = split_segment(held[h].back(), dims[dim], elem);
      ring_reduce_scatter(s, &acc, &pool, ring, segs, 1, chunk, elem);
      held[h].push_back(segs[(ring.pos + 1) % dims[dim]][0]);
    }
  }
  if (a.op == CIUIC_AVG)
    for (int h = 0; h < 2; ++h)
      for (const Range& ch : chunks_of(held[h].back(), chunk, elem))
        acc.ledger.write(ch, s->add(average_step(at(Buffer::kRecv, ch.offset), ch.bytes),
                                    acc.ledger.before_write(ch)));
  for (int dim = 2; dim >= 0; --dim) {
    if (dims[dim] == 1) continue;
    for (int h = 0; h < 2; ++h) {
      held[h].pop_back();
      const Ring ring = ring_along(dims, r, dim, h == 1);
      ring_all_gather(s, Buffer::kRecv, &acc.ledger, ring,
                      split_segment(held[h].back(), dims[dim], elem), 1, chunk, elem);
    }
  }
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}
}  // namespace

Status build_torus_allgather(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t block = a.count * elem;
  const int n = a.nranks, r = a.rank;
  std::vector<int> dims;
  CIUIC_RETURN_IF_ERROR(torus_dims_for(a, &dims));
  ByteLedger ledger;
  const Range mine{static_cast<size_t>(r) * block, block};
  if (!a.in_place && block > 0)
    ledger.write(mine,
                 s->add(copy_step(at(Buffer::kRecv, mine.offset), at(Buffer::kSend, 0), block)));
  if (n == 1 || block == 0) return Status::Ok();
  for (int dim = 0; dim < 3; ++dim) {
    if (dims[dim] == 1) continue;
    for (int h = 0; h < 2; ++h) {
      const Ring ring = ring_along(dims, r, dim, h == 1);
      ring_all_gather(s, Buffer::kRecv, &ledger, ring,
                      in_ring_order(block_segments(dims, r, dim, h, block, elem), h == 1), 0,
                      a.chunk_bytes, elem);
    }
  }
  return Status::Ok();
}

namespace {
Status torus_reduce_scatter(const CollectiveArgs& a, size_t slot_bytes, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const size_t block = a.count * elem;
  const int n = a.nranks, r = a.rank;
  std::vector<int> dims;
  CIUIC_RETURN_IF_ERROR(torus_dims_for(a, &dims));
  const size_t total = block * static_cast<size_t>(n);
  const Buffer in = reduce_scatter_input(a);
  if (reduce_scatter_of_one(a, block, s) || block == 0) return Status::Ok();
  const size_t chunk = a.chunk_bytes;
  ScratchPool pool(slot_bytes, a.scratch_slots, total);
  Accumulator acc{Buffer::kScratch, in, {}, {}};
  for (int dim = 2; dim >= 0; --dim) {
    if (dims[dim] == 1) continue;
    for (int h = 0; h < 2; ++h) {
      const Ring ring = ring_along(dims, r, dim, h == 1);
      ring_reduce_scatter(s, &acc, &pool, ring,
                          in_ring_order(block_segments(dims, r, dim, h, block, elem), h == 1), 0,
                          chunk, elem);
    }
  }
  const Range mine{static_cast<size_t>(r) * block, block};
  if (a.op == CIUIC_AVG)
    for (const Range& ch : chunks_of(mine, chunk, elem))
      acc.ledger.write(ch, s->add(average_step(at(Buffer::kScratch, ch.offset), ch.bytes),
                                  acc.ledger.before_write(ch)));
  // The result's bytes may be input bytes (in place): copy once nothing reads the input.
  for (const Range& ch : chunks_of(mine, chunk, elem)) {
    std::vector<uint32_t> deps = acc.ledger.before_read(ch);
    deps.insert(deps.end(), acc.input_readers.begin(), acc.input_readers.end());
    s->add(copy_step(at(Buffer::kRecv, ch.offset - mine.offset), at(Buffer::kScratch, ch.offset),
                     ch.bytes),
           deps);
  }
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}
}  // namespace

}  // namespace ciuic::coll
