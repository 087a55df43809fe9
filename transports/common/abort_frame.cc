#include "transports/common/abort_frame.h"

#include <sys/socket.h>

#include <cerrno>

#include "base/net.h"

namespace ciuic::transport::common {

AbortFrameReader::AbortFrameReader(size_t header_bytes, DecodeHeader decode)
    : header_bytes_(header_bytes < kMaxHeaderBytes ? header_bytes : kMaxHeaderBytes),
      decode_(decode) {}

void AbortFrameReader::header_read(size_t size) {
  header_got_ = header_bytes_;
  reason_size_ = size < kMaxAbortReason ? size : kMaxAbortReason;
  reason_got_ = 0;
}

Status AbortFrameReader::read(int fd, const std::string& from, bool* closed) {
  *closed = false;
  while (!complete()) {
    const bool in_header = header_got_ < header_bytes_;
    void* target = in_header ? static_cast<void*>(header_ + header_got_) : reason_space();
    const size_t want = in_header ? header_bytes_ - header_got_ : reason_missing();
    ssize_t n = ::recv(fd, target, want, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::Ok();
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
      *closed = true;
      return Status::Ok();
    }
    if (n < 0) return net::connection_error("recv from " + from, errno);
    if (!in_header) {
      reason_arrived(static_cast<size_t>(n));
      continue;
    }
    header_got_ += static_cast<size_t>(n);
    if (header_got_ < header_bytes_) continue;
    size_t size = 0;
    Status s = decode_(header_, &size);
    if (!s.ok()) return s.prefix("from " + from);
    header_read(size);
  }
  return Status::Ok();
}

}  // namespace ciuic::transport::common
