#include "transports/common/requests.h"

#include <algorithm>

namespace ciuic::transport::common {

Status check_isend(const void* data, size_t size) {
  if (data == nullptr && size > 0)
    return invalid_argument("isend of " + std::to_string(size) + " bytes from a null buffer");
  return Status::Ok();
}

Status check_irecv(int n, void* const* data, const size_t* sizes) {
  if (n < 1 || n > kMaxGroupedRecvs)
    return invalid_argument("irecv of " + std::to_string(n) + " buffers (1.." +
                            std::to_string(kMaxGroupedRecvs) + " allowed)");
  for (int i = 0; i < n; ++i) {
    if (data[i] == nullptr && sizes[i] > 0)
      return invalid_argument("irecv buffer " + std::to_string(i) + " of " +
                              std::to_string(sizes[i]) + " bytes is null");
  }
  return Status::Ok();
}

void GroupedRecv::post(int count, void* const* buffers, const size_t* sizes,
                       const int* buffer_tags) {
  n = count;
  for (int i = 0; i < n; ++i) {
    data[i] = static_cast<uint8_t*>(buffers[i]);
    capacity[i] = sizes[i];
    tags[i] = buffer_tags[i];
    received[i] = 0;
    matched[i] = false;
  }
  matched_count = 0;
  completed = 0;
}

bool GroupedRecv::try_match(int tag, uint64_t size, int* slot) {
  for (int i = 0; i < n; ++i) {
    if (matched[i] || tags[i] != tag) continue;
    if (size > capacity[i]) return false;  // the first buffer with the tag must take it
    matched[i] = true;
    ++matched_count;
    *slot = i;
    return true;
  }
  return false;
}

Status GroupedRecv::match(int tag, uint64_t size, const std::string& peer, int* slot) {
  *slot = -1;
  if (try_match(tag, size, slot)) return Status::Ok();
  // The text is built only for the error: this runs once per message.
  std::string open;
  for (int i = 0; i < n; ++i) {
    if (matched[i]) continue;
    open += (open.empty() ? "" : ", ") + std::to_string(tags[i]);
    if (*slot < 0 && tags[i] == tag) *slot = i;
  }
  if (*slot < 0)
    return invalid_argument("a message with tag " + std::to_string(tag) + " from " + peer +
                            " matches no unfilled buffer of the posted receive (tags " + open +
                            "): sender and receiver disagree on the tags");
  const size_t capacity_of_slot = capacity[*slot];
  *slot = -1;
  return invalid_argument("a " + std::to_string(size) + "-byte message (tag " +
                          std::to_string(tag) + ") from " + peer + " is larger than its " +
                          std::to_string(capacity_of_slot) +
                          "-byte receive buffer: post a larger receive");
}

void GroupedRecv::report(size_t* sizes) const {
  if (sizes != nullptr) std::copy(received, received + n, sizes);
}

}  // namespace ciuic::transport::common
