// Ring algorithms: all-reduce (reduce-scatter then all-gather), reduce-scatter,
// all-gather. Each rank sends to rank+1 and receives from rank-1; every step moves one
// segment, cut into chunks so that receiving, reducing and sending overlap.
#include <map>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

// Chunks of one segment, per pipelining position: which step last wrote the chunk in
// the receive buffer, and which steps read it since (sends), so that a later receive
// into the same bytes waits for both.
struct ChunkState {
  uint32_t writer = UINT32_MAX;
  std::vector<uint32_t> readers;
};

std::vector<uint32_t> before_overwrite(const ChunkState& c) {
  std::vector<uint32_t> deps = c.readers;
  if (c.writer != UINT32_MAX) deps.push_back(c.writer);
  return deps;
}


}  // namespace

Status build_ring_allreduce(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const int n = a.nranks, r = a.rank;
  const Buffer in = a.in_place ? Buffer::kRecv : Buffer::kSend;
  if (n == 1) {
    if (!a.in_place) s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), a.count * elem));
    return Status::Ok();
  }
  const int next = wrap_rank(r + 1, n), prev = wrap_rank(r - 1, n);
  const std::vector<Range> segments = split_even(a.count, n, elem);
  std::vector<std::vector<Range>> chunks(static_cast<size_t>(n));
  std::vector<std::vector<ChunkState>> state(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    chunks[i] = chunks_of(segments[i], a.chunk_bytes, elem);
    state[i].resize(chunks[i].size());
  }
  // Slots no larger than the largest chunk: a small all-reduce must not reserve
  // scratch_slots whole chunk_bytes.
  ScratchPool pool(std::min(whole_elements(a.chunk_bytes, elem), segments[0].bytes),
                   a.scratch_slots);

  // Reduce-scatter: after n-1 steps this rank holds segment r+1 fully reduced.
  for (int step = 0; step < n - 1; ++step) {
    const int send_seg = wrap_rank(r - step, n), recv_seg = wrap_rank(r - step - 1, n);
    for (size_t c = 0; c < chunks[send_seg].size(); ++c) {
      const Range ch = chunks[send_seg][c];
      ChunkState& st = state[send_seg][c];
      if (step == 0) {
        uint32_t idx = s->add(send_step(next, at(in, ch.offset), ch.bytes));
        if (in == Buffer::kRecv) st.readers.push_back(idx);
      } else {
        st.readers.push_back(
            s->add(send_step(next, at(Buffer::kRecv, ch.offset), ch.bytes), {st.writer}));
      }
    }
    for (size_t c = 0; c < chunks[recv_seg].size(); ++c) {
      const Range ch = chunks[recv_seg][c];
      std::vector<uint32_t> deps;
      BufferRange slot = pool.acquire(&deps);
      uint32_t got = s->add(recv_step(prev, slot, ch.bytes), deps);
      uint32_t red = s->add(
          reduce_step(at(Buffer::kRecv, ch.offset), at(in, ch.offset), slot, ch.bytes), {got});
      pool.release(slot, red);
      state[recv_seg][c].writer = red;
    }
  }
  const int own = wrap_rank(r + 1, n);
  if (a.op == CIUIC_AVG) {
    for (size_t c = 0; c < chunks[own].size(); ++c) {
      const Range ch = chunks[own][c];
      ChunkState& st = state[own][c];
      st.writer = s->add(average_step(at(Buffer::kRecv, ch.offset), ch.bytes), {st.writer});
    }
  }
  // All-gather: pass the reduced segments around the ring, straight into recvbuf.
  for (int step = 0; step < n - 1; ++step) {
    const int send_seg = wrap_rank(r + 1 - step, n), recv_seg = wrap_rank(r - step, n);
    for (size_t c = 0; c < chunks[send_seg].size(); ++c) {
      const Range ch = chunks[send_seg][c];
      ChunkState& st = state[send_seg][c];
      st.readers.push_back(
          s->add(send_step(next, at(Buffer::kRecv, ch.offset), ch.bytes), {st.writer}));
    }
    for (size_t c = 0; c < chunks[recv_seg].size(); ++c) {
      const Range ch = chunks[recv_seg][c];
      ChunkState& st = state[recv_seg][c];
      uint32_t got = s->add(recv_step(prev, at(Buffer::kRecv, ch.offset), ch.bytes),
                            before_overwrite(st));
      st.writer = got;
      st.readers.clear();
    }
  }
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}

Status build_ring_reduce_scatter(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const int n = a.nranks, r = a.rank;
  const size_t seg_bytes = a.count * elem;
  // Input: the whole count*n buffer. NCCL in place (recvbuf == sendbuf + r*count) needs
  // nothing special: segment r of the input is only read by the final reduce, which
  // writes the same bytes. CIUIC_IN_PLACE (MPI) keeps the input in recvbuf and wants
  // the result at its start.
  const Buffer in = reduce_scatter_input(a);
  const size_t out_offset = a.in_place_mpi ? static_cast<size_t>(r) * seg_bytes : 0;
  auto seg_at = [&](int seg) { return static_cast<size_t>(seg) * seg_bytes; };
  if (reduce_scatter_of_one(a, seg_bytes, s)) return Status::Ok();
  const int next = wrap_rank(r + 1, n), prev = wrap_rank(r - 1, n);
  // Partial sums travel in scratch slots; group the chunks so the slots in use stay
  // bounded (a slot lives from its receive to its send one step later).
  const size_t slot_bytes = whole_elements(a.chunk_bytes, elem);
  const size_t group_bytes = slot_bytes * static_cast<size_t>(a.scratch_slots / 2 > 0 ? a.scratch_slots / 2 : 1);
  ScratchPool pool(std::min(slot_bytes, seg_bytes), a.scratch_slots);
  std::vector<uint32_t> final_steps;
  for (size_t group = 0; group * group_bytes < seg_bytes; ++group) {
    Range in_group{group * group_bytes, std::min(group_bytes, seg_bytes - group * group_bytes)};
    std::vector<Range> chunks = chunks_of(in_group, slot_bytes, elem);
    // Slot and producing step of each chunk's partial sum, from the previous step.
    std::vector<std::pair<BufferRange, uint32_t>> partial(chunks.size());
    for (int step = 0; step < n - 1; ++step) {
      const int send_seg = wrap_rank(r - step - 1, n), recv_seg = wrap_rank(r - step - 2, n);
      for (size_t c = 0; c < chunks.size(); ++c) {
        const Range ch = chunks[c];
        if (step == 0) {
          s->add(send_step(next, at(in, seg_at(send_seg) + ch.offset), ch.bytes));
        } else {
          uint32_t sent = s->add(send_step(next, partial[c].first, ch.bytes), {partial[c].second});
          pool.release(partial[c].first, sent);
        }
      }
      for (size_t c = 0; c < chunks.size(); ++c) {
        const Range ch = chunks[c];
        std::vector<uint32_t> deps;
        BufferRange slot = pool.acquire(&deps);
        uint32_t got = s->add(recv_step(prev, slot, ch.bytes), deps);
        const BufferRange mine = at(in, seg_at(recv_seg) + ch.offset);
        if (step < n - 2) {
          partial[c] = {slot, s->add(reduce_step(slot, mine, slot, ch.bytes), {got})};
        } else {
          uint32_t red = s->add(
              reduce_step(at(Buffer::kRecv, out_offset + ch.offset), mine, slot, ch.bytes), {got});
          pool.release(slot, red);
          if (a.op == CIUIC_AVG)
            red = s->add(average_step(at(Buffer::kRecv, out_offset + ch.offset), ch.bytes), {red});
          final_steps.push_back(red);
        }
      }
    }
  }
  if (a.in_place_mpi && r != 0 && seg_bytes > 0) {
    // Move the result to the start of recvbuf once nothing reads the input any more.
    std::vector<uint32_t> all(s->steps.size());
    for (uint32_t i = 0; i < all.size(); ++i) all[i] = i;
    s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kRecv, out_offset), seg_bytes), all);
  }
  s->scratch_bytes = pool.end_offset();
  return Status::Ok();
}

Status build_ring_allgather(const CollectiveArgs& a, Schedule* s) {
  const size_t elem = reduce::datatype_size(a.datatype);
  const int n = a.nranks, r = a.rank;
  const size_t seg_bytes = a.count * elem;
  auto seg_at = [&](int seg) { return static_cast<size_t>(seg) * seg_bytes; };
  const Range own{seg_at(r), seg_bytes};
  if (!a.in_place) s->add(copy_step(at(Buffer::kRecv, own.offset), at(Buffer::kSend, 0), seg_bytes));
  if (n == 1) return Status::Ok();
  const int next = wrap_rank(r + 1, n), prev = wrap_rank(r - 1, n);
  // received[seg][c]: the step that filled that chunk of recvbuf.
  std::vector<std::vector<uint32_t>> received(static_cast<size_t>(n));
  for (int step = 0; step < n - 1; ++step) {
    const int send_seg = wrap_rank(r - step, n), recv_seg = wrap_rank(r - step - 1, n);
    std::vector<Range> send_chunks =
        chunks_of(Range{seg_at(send_seg), seg_bytes}, a.chunk_bytes, elem);
    for (size_t c = 0; c < send_chunks.size(); ++c) {
      const Range ch = send_chunks[c];
      if (step == 0) {
        // Our own contribution goes out straight from the caller's buffer.
        BufferRange src = a.in_place ? at(Buffer::kRecv, ch.offset)
                                     : at(Buffer::kSend, ch.offset - own.offset);
        s->add(send_step(next, src, ch.bytes));
      } else {
        s->add(send_step(next, at(Buffer::kRecv, ch.offset), ch.bytes),
               {received[send_seg][c]});
      }
    }
    std::vector<Range> recv_chunks =
        chunks_of(Range{seg_at(recv_seg), seg_bytes}, a.chunk_bytes, elem);
    for (const Range& ch : recv_chunks)
      received[recv_seg].push_back(s->add(recv_step(prev, at(Buffer::kRecv, ch.offset), ch.bytes)));
  }
  return Status::Ok();
}

}  // namespace ciuic::coll
