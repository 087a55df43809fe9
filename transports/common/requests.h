// What every channel checks of the requests it is given, and how a grouped receive's
// buffers take the messages that arrive (transport.h, "Matching"): the next message goes
// to the first buffer not yet filled whose tag is the message's, and must fit it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/status.h"
#include "transports/transport.h"

namespace ciuic::transport::common {

// isend: a null buffer only for an empty message.
Status check_isend(const void* data, size_t size);
// irecv: 1..kMaxGroupedRecvs buffers, null ones only where their size is 0.
Status check_irecv(int n, void* const* data, const size_t* sizes);

// The buffers of one grouped receive, for transports that match messages on the receiving
// side (tcp, shm; ibverbs matches on the sender, against the receive's FIFO entries).
struct GroupedRecv {
  int n = 0;
  uint8_t* data[kMaxGroupedRecvs] = {};
  size_t capacity[kMaxGroupedRecvs] = {};
  int tags[kMaxGroupedRecvs] = {};
  size_t received[kMaxGroupedRecvs] = {};
  bool matched[kMaxGroupedRecvs] = {};
  int matched_count = 0;  // buffers a message was matched to
  int completed = 0;      // buffers whose message fully arrived

  // Starts over with the buffers of an irecv that check_irecv accepted.
  void post(int count, void* const* buffers, const size_t* sizes, const int* buffer_tags);
  bool needs_message() const { return matched_count < n; }
  bool complete() const { return completed == n; }
  // Gives a `size`-byte message with `tag` from `peer` (for messages) the first unfilled
  // buffer with that tag, in *slot. An error when none has that tag (it names the tags
  // still open) or the buffer is too small (it names both sizes).
  Status match(int tag, uint64_t size, const std::string& peer, int* slot);
  // match() without the error text, for the hot path: true with *slot when the message
  // is taken; false leaves the receive as it was (match() then says why).
  bool try_match(int tag, uint64_t size, int* slot);
  // Copies each buffer's received size to sizes (n entries; may be null).
  void report(size_t* sizes) const;
};

}  // namespace ciuic::transport::common
