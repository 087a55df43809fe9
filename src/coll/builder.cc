#include "coll/builder.h"

#include <algorithm>

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
  for (auto it = pieces_.lower_bound(r.offset); it != pieces_.end() && it->first < r.offset + r.bytes; ++it) {
    if (it->first > at_byte) gaps.emplace_back(at_byte, it->first);
    at_byte = it->second.end;
  }
  if (at_byte < r.offset + r.bytes) gaps.emplace_back(at_byte, r.offset + r.bytes);
  for (const auto& [begin, end] : gaps) pieces_.emplace(begin, Piece{end, kNone, {}});
  for (auto it = pieces_.lower_bound(r.offset); it != pieces_.end() && it->first < r.offset + r.bytes; ++it)
    it->second.readers.push_back(step);
}

void ByteLedger::write(Range r, uint32_t step) {
  if (r.bytes == 0) return;
  split_at(r.offset);
  split_at(r.offset + r.bytes);
  pieces_.erase(pieces_.lower_bound(r.offset), pieces_.lower_bound(r.offset + r.bytes));
  pieces_.emplace(r.offset, Piece{r.offset + r.bytes, step, {}});
}

}  // namespace ciuic::coll
