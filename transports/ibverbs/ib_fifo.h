// Sequence bookkeeping of the data path, apart from verbs so that it is tested alone.
//
// Receive k (a grouped irecv, sequence k from 0) writes its entries into the sender's FIFO
// slot k % kFifoSlots with an RDMA WRITE WITH IMM (imm = k). The sender counts those IMMs:
// group k is known once more than k arrived. Its n sends take the group's entries by tag;
// after the n-th, one WRITE WITH IMM per QP (imm = k) closes the group, and the receiver
// counts them per QP: receive k is complete once every QP delivered more than k.
// IMMs on one QP arrive in order, so a count is all either side needs; the imm value is
// checked against it to catch a peer that lost the thread.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "transports/ibverbs/ib_wire.h"

namespace ciuic::transport::ib {

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
  // An IMM closing a group arrived on `qp`.
  Status arrived(int qp, uint32_t imm);
  // Every QP delivered the IMM of receive `seq`.
  bool complete(uint64_t seq) const;
  uint64_t count(int qp) const { return counts_[qp]; }

 private:
  int qps_;
  uint64_t counts_[kMaxQps] = {};
};

}  // namespace ciuic::transport::ib
