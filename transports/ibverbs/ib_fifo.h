// Sequence bookkeeping of the data path, apart from verbs so that it is tested alone.
//
// Receive k (a grouped irecv, sequence k from 0) writes its entries into the sender's FIFO
// slot k % kFifoSlots with an RDMA WRITE WITH IMM (imm = k). The sender counts those IMMs:
// group k is known once more than k arrived. Its n sends take the group's entries by tag;
// after the n-th, one WRITE WITH IMM per QP closes the group, and the receiver counts them
// per QP: receive k is complete once every QP delivered more than k.
// IMMs on one QP arrive in order, so a count is all either side needs; the imm value is
// checked against it to catch a peer that lost the thread.
//
// The IMM that closes a group (32 bits) has two forms, told apart by bit 31:
//   0 | sequence (31 bits)              the group's sizes are in the sizes record (QP 0),
//                                       or, on the other QPs, nothing;
//   1 | sequence (7 bits) | size (24)   a group of one buffer whose payload went as this
//                                       very WRITE WITH IMM on QP 0: the size rides in the
//                                       IMM, and a message is one work request.
// The second form needs the size below 16 MiB; larger ones take the first.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "transports/ibverbs/ib_wire.h"

namespace ciuic::transport::ib {

constexpr uint32_t kImmSizeFlag = 1u << 31;
constexpr int kImmSizeBits = 24;
constexpr int kImmSizedSeqBits = 7;
constexpr uint64_t kMaxImmSize = (uint64_t{1} << kImmSizeBits) - 1;

// The IMM closing group `seq` whose sizes are in the sizes record.
inline uint32_t close_imm(uint64_t seq) { return static_cast<uint32_t>(seq) & ~kImmSizeFlag; }
// The IMM closing group `seq` of one buffer of `size` bytes; false when the size does not fit.
inline bool close_imm_with_size(uint64_t seq, uint64_t size, uint32_t* imm) {
  if (size > kMaxImmSize) return false;
  const uint32_t seq_bits = static_cast<uint32_t>(seq) & ((1u << kImmSizedSeqBits) - 1);
  *imm = kImmSizeFlag | seq_bits << kImmSizeBits | static_cast<uint32_t>(size);
  return true;
}

// What one closing IMM said.
struct ClosedGroup {
  uint64_t seq = 0;       // the receive it closed
  bool has_size = false;  // the size rode in the IMM (a group of one buffer)
  uint64_t size = 0;
};

class SendFifo {
 public:
  // An IMM of the receiver's FIFO write arrived.
  Status fifo_arrived(uint32_t imm);
  uint64_t arrived() const { return arrived_; }
  uint64_t group_seq() const { return group_seq_; }
  // The current group's entries are in the FIFO.
  bool group_ready() const { return arrived_ > group_seq_; }
  bool group_loaded() const { return loaded_; }
  // Copies and checks the current group's entries from its FIFO slot (the peer wrote them:
  // a count, sequence or index out of place is an error, never a crash).
  Status load_group(const FifoEntry* slot);
  // The unused entry whose tag is `tag`, or -1.
  int match(int tag) const;
  const FifoEntry& entry(int index) const { return entries_[index]; }
  int count() const { return count_; }
  int unused() const { return count_ - __builtin_popcount(used_mask_); }
  // Marks an entry used; true when that was the group's last, which moves to the next group.
  bool consume(int index);
  std::string tags_left() const;  // "3, 7" for error messages

 private:
  uint64_t arrived_ = 0;
  uint64_t group_seq_ = 0;
  bool loaded_ = false;
  int count_ = 0;
  uint32_t used_mask_ = 0;
  FifoEntry entries_[kMaxGroupedRecvs] = {};
};

class ImmCounters {
 public:
  explicit ImmCounters(int qps = 1) : qps_(qps) {}
  // An IMM closing a group arrived on `qp`; *closed (optional) says which and what it
  // carried.
  Status arrived(int qp, uint32_t imm, ClosedGroup* closed = nullptr);
  // Every QP delivered the IMM of receive `seq`.
  bool complete(uint64_t seq) const;
  uint64_t count(int qp) const { return counts_[qp]; }

 private:
  int qps_;
  uint64_t counts_[kMaxQps] = {};
};

}  // namespace ciuic::transport::ib
