// Small tools every schedule builder uses: splitting a buffer into per-rank segments
// and pipelining chunks, and a pool of chunk-sized scratch slots whose reuse is
// expressed as dependencies (a slot is refilled only after its last reader finished).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "coll/schedule.h"

namespace ciuic::coll {

struct Range {
  size_t offset = 0;  // bytes
  size_t bytes = 0;
};

// Splits `count` elements into `parts` contiguous parts as evenly as possible (the first
// count % parts get one more element); returned in bytes.
std::vector<Range> split_even(size_t count, int parts, size_t elem_size);

// r modulo n in [0, n): ring neighbours and pairwise partners of rank r.
inline int wrap_rank(int r, int n) { return ((r % n) + n) % n; }

// The largest whole number of elements in `bytes`, at least one element.
inline size_t whole_elements(size_t bytes, size_t elem_size) {
  size_t n = bytes / elem_size * elem_size;
  return n > 0 ? n : elem_size;
}

// Cuts a byte range into pipelining chunks of at most chunk_bytes (a whole number of
// elements each, never empty unless the range is).
std::vector<Range> chunks_of(Range range, size_t chunk_bytes, size_t elem_size);

// NCCL's in-place reduce_scatter: recvbuf is sendbuf + offset (one memory).
struct BufferAliasingHint {
  bool recv_inside_send = false;
  size_t recv_offset_in_send = 0;  // bytes
};

class ScratchPool {
 public:
  // Slots of slot_bytes; at least min_slots exist before any is reused, so that that
  // many receives can be in flight at once.
  ScratchPool(size_t slot_bytes, int min_slots, size_t base_offset = 0)
      : slot_bytes_(slot_bytes), min_slots_(min_slots), base_(base_offset) {}

  // A slot to fill; appends to *deps the step that last read it (if reused).
  BufferRange acquire(std::vector<uint32_t>* deps);
  // The slot's last reader is `step`; it may be refilled after that completes.
  void release(BufferRange slot, uint32_t step);
  // Scratch bytes needed, counted from offset 0 of the scratch buffer.
  size_t end_offset() const { return base_ + slots_ * slot_bytes_; }

 private:
  struct Free {
    size_t offset;
    uint32_t last_reader;
  };
  size_t slot_bytes_;
  int min_slots_;
  size_t base_;
  size_t slots_ = 0;
  std::deque<Free> free_;
};

// Who last wrote and who read each byte of one buffer since, for builders whose step
// ranges do not line up from one phase to the next: the dependencies a new read or write
// of a range needs. Bytes never written have no dependencies (they hold the input).
class ByteLedger {
 public:
  std::vector<uint32_t> before_read(Range r);
  std::vector<uint32_t> before_write(Range r);
  void read(Range r, uint32_t step);
  void write(Range r, uint32_t step);
  // Whether any byte of r was written (else it still holds the input).
  bool written(Range r) const;

 private:
  static constexpr uint32_t kNone = UINT32_MAX;  // never written
  struct Piece {
    size_t end;
    uint32_t writer;
    std::vector<uint32_t> readers;
  };
  void split_at(size_t offset);
  std::vector<uint32_t> collect(Range r, bool with_readers);
  std::map<size_t, Piece> pieces_;  // by first byte; disjoint
};

// A schedule assembled from pieces (sub-collectives spliced in, steps of its own): one
// ByteLedger per buffer, so that every new step waits for exactly the earlier steps that
// touched its bytes. NCCL's in-place reduce_scatter has recvbuf inside sendbuf: give the
// offset and the receive buffer's bytes are booked in the send buffer's ledger.
class BufferLedgers {
 public:
  BufferLedgers() = default;
  explicit BufferLedgers(const BufferAliasingHint& alias) : alias_(alias) {}
  // The dependencies `step` needs before its reads and writes.
  std::vector<uint32_t> before(const Step& step);
  // Records that step `index` (already in the schedule) made the accesses of `step`.
  void record(const Step& step, uint32_t index);
  // Appends `step` depending on before(step) and `after`, records it, returns its index.
  uint32_t add(Schedule* s, Step step, const std::vector<uint32_t>& after = {});

 private:
  struct Where {
    ByteLedger* ledger;
    Range range;
  };
  Where locate(const BufferRange& r, size_t bytes);
  BufferAliasingHint alias_;
  ByteLedger ledgers_[3];
};

// Where a sub-collective's schedule goes: its rank i is rank ranks[i] of the communicator,
// and byte 0 of its send, receive and scratch buffers lies at `send`, `recv`, `scratch`
// of this rank's buffers.
struct SubGroup {
  std::vector<int> ranks;
  BufferRange send{Buffer::kSend, 0, 0};
  BufferRange recv{Buffer::kRecv, 0, 0};
  BufferRange scratch{Buffer::kScratch, 0, 0};
};

// Appends `sub` (one member's schedule of a collective among `group`) to `s`: peers mapped
// through group.ranks, byte ranges moved to the group's buffers, the sub-schedule's own
// dependencies kept, and each step also waiting for the earlier steps of `s` that `ledgers`
// says touched its bytes (the last writer before a read; the last writer and the readers
// since before a write) and for `after`. Then records the new steps in `ledgers` and grows
// s->scratch_bytes to cover the group's scratch. Returns the index of the first new step.
//
// No deadlock can follow, provided every rank splices its sub-collectives in one global
// order: the new dependencies point only to steps of earlier pieces, so running the pieces
// one after another, each to completion on all its members, satisfies all of them; and
// messages between two ranks match piece by piece, since both append the pieces they share
// in the same order.
uint32_t splice_schedule(Schedule* s, const Schedule& sub, const SubGroup& group,
                         BufferLedgers* ledgers, const std::vector<uint32_t>& after = {});

// Builds the schedule of `sub` — a collective among `group`, sub.rank being this rank's
// index in group.ranks and sub.nranks its size — with `algorithm` and splices it in as
// splice_schedule does. *built gets the algorithm's name (the one "auto" chose, if so).
Status append_sub_collective(Schedule* s, const CollectiveArgs& sub, std::string_view algorithm,
                             const SubGroup& group, BufferLedgers* ledgers,
                             std::string* built = nullptr);

inline Step send_step(int peer, BufferRange src, size_t bytes) {
  Step s;
  s.kind = StepKind::kSend;
  s.peer = peer;
  s.src = src;
  s.bytes = bytes;
  return s;
}
inline Step recv_step(int peer, BufferRange dst, size_t bytes) {
  Step s;
  s.kind = StepKind::kRecv;
  s.peer = peer;
  s.dst = dst;
  s.bytes = bytes;
  return s;
}
inline Step reduce_step(BufferRange dst, BufferRange a, BufferRange b, size_t bytes) {
  Step s;
  s.kind = StepKind::kReduce;
  s.dst = dst;
  s.src = a;
  s.src2 = b;
  s.bytes = bytes;
  return s;
}
inline Step copy_step(BufferRange dst, BufferRange src, size_t bytes) {
  Step s;
  s.kind = StepKind::kCopy;
  s.dst = dst;
  s.src = src;
  s.bytes = bytes;
  return s;
}
inline Step average_step(BufferRange dst, size_t bytes) {
  Step s;
  s.kind = StepKind::kAverage;
  s.dst = dst;
  s.bytes = bytes;
  return s;
}
inline BufferRange at(Buffer b, size_t offset) { return BufferRange{b, 0, offset}; }

// Where a reduce-scatter's whole count*n input lies: CIUIC_IN_PLACE (MPI) keeps it in
// recvbuf and wants the result at its start; otherwise sendbuf (NCCL's in place has
// recvbuf inside it at block `rank`).
inline Buffer reduce_scatter_input(const CollectiveArgs& a) {
  return a.in_place_mpi ? Buffer::kRecv : Buffer::kSend;
}
// One rank: its block is the result (copied unless already in place). True when the
// schedule is complete with that.
inline bool reduce_scatter_of_one(const CollectiveArgs& a, size_t block, Schedule* s) {
  if (a.nranks != 1) return false;
  if (reduce_scatter_input(a) == Buffer::kSend && !a.in_place && block > 0)
    s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), block));
  return true;  // the average of one rank is its own value
}

}  // namespace ciuic::coll
