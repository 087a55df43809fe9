#include "coll/builder.h"

#include <algorithm>

#include "coll/algorithms.h"

namespace ciuic::coll {

std::vector<Range> split_even(size_t count, int parts, size_t elem_size) {
  std::vector<Range> out(static_cast<size_t>(parts));
  size_t base = count / static_cast<size_t>(parts);
  size_t extra = count % static_cast<size_t>(parts);
  size_t offset = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    size_t n = base + (i < extra ? 1 : 0);
    out[i] = Range{offset * elem_size, n * elem_size};
    offset += n;
  }
  return out;
}

std::vector<Range> chunks_of(Range range, size_t chunk_bytes, size_t elem_size) {
  std::vector<Range> out;
  const size_t step = whole_elements(chunk_bytes, elem_size);
  for (size_t done = 0; done < range.bytes; done += step) {
    size_t n = range.bytes - done < step ? range.bytes - done : step;
    out.push_back(Range{range.offset + done, n});
  }
  return out;
}

BufferRange ScratchPool::acquire(std::vector<uint32_t>* deps) {
  if (free_.empty() || slots_ < static_cast<size_t>(min_slots_)) {
    return BufferRange{Buffer::kScratch, 0, base_ + slot_bytes_ * slots_++};
  }
  Free f = free_.front();
  free_.pop_front();
  deps->push_back(f.last_reader);
  return BufferRange{Buffer::kScratch, 0, f.offset};
}

void ScratchPool::release(BufferRange slot, uint32_t step) {
  free_.push_back(Free{slot.offset, step});
}

void ByteLedger::split_at(size_t offset) {
  auto it = pieces_.upper_bound(offset);
  if (it == pieces_.begin()) return;
  --it;
  if (it->first == offset || it->second.end <= offset) return;
  Piece tail = it->second;
  it->second.end = offset;
  pieces_.emplace(offset, std::move(tail));
}

std::vector<uint32_t> ByteLedger::collect(Range r, bool with_readers) {
  std::vector<uint32_t> deps;
  if (r.bytes == 0) return deps;
  auto it = pieces_.upper_bound(r.offset);
  if (it != pieces_.begin()) --it;
  for (; it != pieces_.end() && it->first < r.offset + r.bytes; ++it) {
    if (it->second.end <= r.offset) continue;
    if (it->second.writer != kNone) deps.push_back(it->second.writer);
    if (with_readers) deps.insert(deps.end(), it->second.readers.begin(), it->second.readers.end());
  }
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  return deps;
}

bool ByteLedger::written(Range r) const {
  if (r.bytes == 0) return false;
  auto it = pieces_.upper_bound(r.offset);
  if (it != pieces_.begin()) --it;
  for (; it != pieces_.end() && it->first < r.offset + r.bytes; ++it)
    if (it->second.end > r.offset && it->second.writer != kNone) return true;
  return false;
}

std::vector<uint32_t> ByteLedger::before_read(Range r) { return collect(r, false); }
std::vector<uint32_t> ByteLedger::before_write(Range r) { return collect(r, true); }

void ByteLedger::read(Range r, uint32_t step) {
  if (r.bytes == 0) return;
  split_at(r.offset);
  split_at(r.offset + r.bytes);
  // Bytes never written get a piece of their own, so that their readers are remembered.
  size_t at_byte = r.offset;
  std::vector<std::pair<size_t, size_t>> gaps;
  for (auto it = pieces_.lower_bound(r.offset);
       it != pieces_.end() && it->first < r.offset + r.bytes; ++it) {
    if (it->first > at_byte) gaps.emplace_back(at_byte, it->first);
    at_byte = it->second.end;
  }
  if (at_byte < r.offset + r.bytes) gaps.emplace_back(at_byte, r.offset + r.bytes);
  for (const auto& [begin, end] : gaps) pieces_.emplace(begin, Piece{end, kNone, {}});
  for (auto it = pieces_.lower_bound(r.offset);
       it != pieces_.end() && it->first < r.offset + r.bytes; ++it)
    it->second.readers.push_back(step);
}

void ByteLedger::write(Range r, uint32_t step) {
  if (r.bytes == 0) return;
  split_at(r.offset);
  split_at(r.offset + r.bytes);
  pieces_.erase(pieces_.lower_bound(r.offset), pieces_.lower_bound(r.offset + r.bytes));
  pieces_.emplace(r.offset, Piece{r.offset + r.bytes, step, {}});
}

BufferLedgers::Where BufferLedgers::locate(const BufferRange& r, size_t bytes) {
  if (r.buffer == Buffer::kRecv && alias_.recv_inside_send)
    return Where{&ledgers_[static_cast<int>(Buffer::kSend)],
                 Range{alias_.recv_offset_in_send + r.offset, bytes}};
  return Where{&ledgers_[static_cast<int>(r.buffer)], Range{r.offset, bytes}};
}

namespace {
bool reads_src(StepKind k) {
  return k == StepKind::kSend || k == StepKind::kCopy || k == StepKind::kReduce;
}
bool writes_dst(StepKind k) { return k != StepKind::kSend; }
}  // namespace

std::vector<uint32_t> BufferLedgers::before(const Step& st) {
  std::vector<uint32_t> deps;
  auto add = [&](const std::vector<uint32_t>& more) {
    deps.insert(deps.end(), more.begin(), more.end());
  };
  if (st.bytes == 0) return deps;
  if (reads_src(st.kind)) {
    Where w = locate(st.src, st.bytes);
    add(w.ledger->before_read(w.range));
  }
  if (st.kind == StepKind::kReduce) {
    Where w = locate(st.src2, st.bytes);
    add(w.ledger->before_read(w.range));
  }
  if (writes_dst(st.kind)) {
    Where w = locate(st.dst, st.bytes);
    add(w.ledger->before_write(w.range));
  }
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  return deps;
}

void BufferLedgers::record(const Step& st, uint32_t index) {
  if (st.bytes == 0) return;
  if (reads_src(st.kind)) {
    Where w = locate(st.src, st.bytes);
    w.ledger->read(w.range, index);
  }
  if (st.kind == StepKind::kReduce) {
    Where w = locate(st.src2, st.bytes);
    w.ledger->read(w.range, index);
  }
  if (writes_dst(st.kind)) {
    Where w = locate(st.dst, st.bytes);
    w.ledger->write(w.range, index);
  }
}

uint32_t BufferLedgers::add(Schedule* s, Step step, const std::vector<uint32_t>& after) {
  std::vector<uint32_t> deps = before(step);
  deps.insert(deps.end(), after.begin(), after.end());
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  const uint32_t index = s->add(step, deps);
  record(step, index);
  return index;
}

uint32_t splice_schedule(Schedule* s, const Schedule& sub, const SubGroup& group,
                         BufferLedgers* ledgers, const std::vector<uint32_t>& after) {
  const uint32_t first = static_cast<uint32_t>(s->steps.size());
  auto moved = [&](const BufferRange& r) {
    const BufferRange& base = r.buffer == Buffer::kSend   ? group.send
                              : r.buffer == Buffer::kRecv ? group.recv
                                                          : group.scratch;
    return BufferRange{base.buffer, base.set, base.offset + r.offset};
  };
  // Every step's dependencies on earlier pieces come from the ledgers as they stood before
  // this piece: its own steps are already ordered among themselves by its dependencies.
  std::vector<Step> steps(sub.steps.size());
  std::vector<std::vector<uint32_t>> outer(sub.steps.size());
  for (size_t i = 0; i < sub.steps.size(); ++i) {
    Step st = sub.steps[i];
    if (st.kind == StepKind::kSend || st.kind == StepKind::kRecv) st.peer = group.ranks[st.peer];
    if (reads_src(st.kind)) st.src = moved(st.src);
    if (st.kind == StepKind::kReduce) st.src2 = moved(st.src2);
    if (writes_dst(st.kind)) st.dst = moved(st.dst);
    outer[i] = ledgers->before(st);
    steps[i] = st;
  }
  std::vector<uint32_t> deps;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = sub.steps[i];
    deps.clear();
    for (uint32_t d = 0; d < st.dep_count; ++d) deps.push_back(first + sub.deps[st.dep_begin + d]);
    // `after` reaches the other steps through the ones with no dependency of their own.
    if (st.dep_count == 0) deps.insert(deps.end(), after.begin(), after.end());
    if (!outer[i].empty()) {
      deps.insert(deps.end(), outer[i].begin(), outer[i].end());
      std::sort(deps.begin(), deps.end());
      deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
    }
    s->add(steps[i], deps);
  }
  for (size_t i = 0; i < steps.size(); ++i)
    ledgers->record(steps[i], first + static_cast<uint32_t>(i));
  if (sub.scratch_bytes > 0 && group.scratch.buffer == Buffer::kScratch)
    s->scratch_bytes = std::max(s->scratch_bytes, group.scratch.offset + sub.scratch_bytes);
  return first;
}

Status append_sub_collective(Schedule* s, const CollectiveArgs& sub, std::string_view algorithm,
                             const SubGroup& group, BufferLedgers* ledgers, std::string* built) {
  if (sub.nranks != static_cast<int>(group.ranks.size()) || sub.rank < 0 || sub.rank >= sub.nranks)
    return internal_error("sub-collective of " + std::to_string(sub.nranks) + " ranks as rank " +
                          std::to_string(sub.rank) + " of a group of " +
                          std::to_string(group.ranks.size()));
  Schedule piece;
  CIUIC_RETURN_IF_ERROR(build_schedule(sub, algorithm, &piece));
  splice_schedule(s, piece, group, ledgers);
  if (built != nullptr) *built = piece.algorithm;
  return Status::Ok();
}

}  // namespace ciuic::coll
