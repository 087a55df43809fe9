#include "transports/tcp/tcp_channel.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace ciuic::transport::tcp {
namespace {

class HostRegion final : public MemoryRegion {};

Status register_host(int pointer_kind, std::unique_ptr<MemoryRegion>* out) {
  if (pointer_kind != kHostMemory)
    return unsupported("the TCP transport moves host memory only (pointer kind " +
                       std::to_string(pointer_kind) + "); stage GPU buffers through host memory");
  *out = std::make_unique<HostRegion>();  // sockets need no registration
  return Status::Ok();
}

}  // namespace

StripedChannel::StripedChannel(std::vector<net::Fd> stripes, std::string peer,
                               uint64_t min_stripe_bytes, StripeWorkers::Direction direction,
                               int threads)
    : stripes_(std::move(stripes)), peer_(std::move(peer)), min_stripe_bytes_(min_stripe_bytes) {
  Status s = StripeWorkers::start(direction, stripes_, threads, &workers_);
  if (!s.ok()) {
    CIUIC_LOG_WARN(log::kNet, "TCP channel %s: %s; this channel moves its bytes on the caller's "
                   "thread (CIUIC_TCP_THREADS=0 behaviour)", describe().c_str(), s.message().c_str());
  }
}

bool StripedChannel::reap_workers(WorkerFailure* failure) {
  if (!workers_) return false;
  workers_->reap();
  return workers_->failure(failure);
}

std::string StripedChannel::describe() const {
  return peer_ + " (tcp, " + std::to_string(stripes_.size()) +
         (stripes_.size() == 1 ? " socket)" : " sockets)");
}

void StripedChannel::shutdown_all() {
  if (shut_down_) return;
  shut_down_ = true;
  // SHUT_RDWR sends what is queued, then FIN: the peer reads a queued frame before the end.
  for (const net::Fd& fd : stripes_) ::shutdown(fd.get(), SHUT_RDWR);
  // After this no thread touches the requests' buffers: a caller told of the failure may
  // free them at once.
  if (workers_) workers_->stop_and_join();
}

void StripedChannel::send_abort_and_shutdown(std::string_view reason) {
  if (shut_down_) return;
  if (reason.size() > kMaxAbortReason) reason = reason.substr(0, kMaxAbortReason);
  uint8_t frame[kFrameHeaderBytes + kMaxAbortReason];
  encode_frame({FrameType::kAbort, 0, reason.size()}, frame);
  std::memcpy(frame + kFrameHeaderBytes, reason.data(), reason.size());
  size_t sent = 0;
  // Best effort: a full socket drops the reason and the peer sees a closed connection.
  (void)net::send_some(stripes_[0].get(), frame, kFrameHeaderBytes + reason.size(), &sent);
  shutdown_all();
}

Status StripedChannel::read_abort_frame(bool* complete, bool* closed) {
  *complete = false;
  *closed = false;
  for (;;) {
    uint8_t* target;
    size_t want;
    if (abort_header_got_ < kFrameHeaderBytes) {
      target = abort_header_ + abort_header_got_;
      want = kFrameHeaderBytes - abort_header_got_;
    } else {
      if (abort_reason_got_ == abort_reason_size_) {
        *complete = true;
        return Status::Ok();
      }
      target = reinterpret_cast<uint8_t*>(abort_reason_) + abort_reason_got_;
      want = abort_reason_size_ - abort_reason_got_;
    }
    ssize_t n = ::recv(stripes_[0].get(), target, want, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::Ok();
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
      *closed = true;
      return Status::Ok();
    }
    if (n < 0) return net::connection_error("recv from " + peer_, errno);
    if (abort_header_got_ < kFrameHeaderBytes) {
      abort_header_got_ += static_cast<size_t>(n);
      if (abort_header_got_ < kFrameHeaderBytes) continue;
      FrameHeader header;
      Status s = decode_frame(abort_header_, &header);
      if (s.ok() && header.type != FrameType::kAbort)
        s = internal_error("a data frame came back on a send channel");
      if (!s.ok()) return s.prefix("the receiver " + peer_ + " sent something other than an abort");
      abort_reason_size_ = header.size;
    } else {
      abort_reason_got_ += static_cast<size_t>(n);
    }
  }
}

// ---- registration: sockets need none, so regions are trivial ----

Status TcpSendChannel::register_memory(void*, size_t, int pointer_kind,
                                       std::unique_ptr<MemoryRegion>* out) {
  return register_host(pointer_kind, out);
}

Status TcpRecvChannel::register_memory(void*, size_t, int pointer_kind,
                                       std::unique_ptr<MemoryRegion>* out) {
  return register_host(pointer_kind, out);
}

}  // namespace ciuic::transport::tcp
