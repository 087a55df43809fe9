// The peer's ABORT frame as it arrives on a non-blocking socket: a fixed-size header that
// says how long the reason is, then the reason (at most kMaxAbortReason bytes). The tcp
// transport reads it on the reverse direction of stripe 0, shm on the channel's Unix
// socket; each has its own header (decoded by a hook).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace ciuic::transport::common {

constexpr size_t kMaxAbortReason = 256;

class AbortFrameReader {
 public:
  static constexpr size_t kMaxHeaderBytes = 16;
  // Checks a whole header; *reason_bytes (at most kMaxAbortReason) gets the reason's length.
  using DecodeHeader = Status (*)(const uint8_t* header, size_t* reason_bytes);

  AbortFrameReader(size_t header_bytes, DecodeHeader decode);

  // Reads what fd holds now, without waiting, until the frame is complete. *closed when
  // the peer closed or reset the stream first. Errors name `from` (the peer): a header
  // that does not decode, a failed recv().
  Status read(int fd, const std::string& from, bool* closed);
  bool complete() const { return header_got_ == header_bytes_ && reason_got_ == reason_size_; }
  std::string reason() const { return std::string(reason_, reason_got_); }

  // For a stream that carries the header among other frames and reads it itself (the tcp
  // receiver): the reason of `size` bytes comes next; the caller reads it into
  // reason_space() (reason_missing() bytes) and reports what came with reason_arrived().
  void header_read(size_t size);
  char* reason_space() { return reason_ + reason_got_; }
  size_t reason_missing() const { return reason_size_ - reason_got_; }
  void reason_arrived(size_t bytes) { reason_got_ += bytes; }

 private:
  size_t header_bytes_;
  DecodeHeader decode_;
  uint8_t header_[kMaxHeaderBytes] = {};
  size_t header_got_ = 0;
  char reason_[kMaxAbortReason] = {};
  size_t reason_size_ = 0;
  size_t reason_got_ = 0;
};

}  // namespace ciuic::transport::common
