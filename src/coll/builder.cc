#include "coll/builder.h"

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

}  // namespace ciuic::coll
