#include "transports/ibverbs/ib_fifo.h"

namespace ciuic::transport::ib {

Status SendFifo::fifo_arrived(uint32_t imm) {
  if (imm != static_cast<uint32_t>(arrived_))
    return internal_error("receive announcement " + std::to_string(imm) + " arrived where " +
                          std::to_string(static_cast<uint32_t>(arrived_)) +
                          " was due: the peer is out of step");
  ++arrived_;
  return Status::Ok();
}

Status SendFifo::load_group(const FifoEntry* slot) {
  FifoEntry copy[kMaxGroupedRecvs];
  int n = slot[0].count;
  if (n < 1 || n > kMaxGroupedRecvs)
    return internal_error("receive " + std::to_string(group_seq_) + " announced " +
                          std::to_string(n) + " buffers (1.." +
                          std::to_string(kMaxGroupedRecvs) + ")");
  for (int i = 0; i < n; ++i) {
    copy[i] = slot[i];
    if (copy[i].seq != static_cast<uint32_t>(group_seq_) || copy[i].count != n ||
        copy[i].index != i)
      return internal_error("receive " + std::to_string(group_seq_) + ": FIFO entry " +
                            std::to_string(i) + " is inconsistent (sequence " +
                            std::to_string(copy[i].seq) + ", count " +
                            std::to_string(copy[i].count) + ", index " +
                            std::to_string(copy[i].index) + ")");
  }
  for (int i = 0; i < n; ++i) entries_[i] = copy[i];
  count_ = n;
  used_mask_ = 0;
  loaded_ = true;
  return Status::Ok();
}

int SendFifo::match(int tag) const {
  if (!loaded_) return -1;
  for (int i = 0; i < count_; ++i)
    if (!(used_mask_ >> i & 1u) && entries_[i].tag == tag) return i;
  return -1;
}

bool SendFifo::consume(int index) {
  used_mask_ |= 1u << index;
  if (used_mask_ != (1u << count_) - 1) return false;
  loaded_ = false;
  ++group_seq_;
  return true;
}

std::string SendFifo::tags_left() const {
  std::string out;
  for (int i = 0; i < count_; ++i) {
    if (used_mask_ >> i & 1u) continue;
    out += (out.empty() ? "" : ", ") + std::to_string(entries_[i].tag);
  }
  return out;
}

Status ImmCounters::arrived(int qp, uint32_t imm, ClosedGroup* closed) {
  if (qp < 0 || qp >= qps_) return internal_error("completion on unknown queue pair");
  const uint64_t due = counts_[qp];
  ClosedGroup c;
  c.seq = due;
  if (imm & kImmSizeFlag) {
    const uint32_t mask = (1u << kImmSizedSeqBits) - 1;
    const uint32_t seq_bits = imm >> kImmSizeBits & mask;
    if (seq_bits != (static_cast<uint32_t>(due) & mask))
      return internal_error("queue pair " + std::to_string(qp) + " completed a send ending in " +
                            std::to_string(seq_bits) + " (mod " + std::to_string(mask + 1) +
                            ") where " + std::to_string(due) + " was due: the peer is out of step");
    c.has_size = true;
    c.size = imm & kMaxImmSize;
  } else if (imm != close_imm(due)) {
    return internal_error("queue pair " + std::to_string(qp) + " completed send " +
                          std::to_string(imm) + " where " + std::to_string(close_imm(due)) +
                          " was due: the peer is out of step");
  }
  ++counts_[qp];
  if (closed != nullptr) *closed = c;
  return Status::Ok();
}

bool ImmCounters::complete(uint64_t seq) const {
  for (int q = 0; q < qps_; ++q)
    if (counts_[q] <= seq) return false;
  return true;
}

}  // namespace ciuic::transport::ib
