#include "transports/tcp/tcp_channel.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "transports/common/host_memory.h"

namespace ciuic::transport::tcp {
namespace {

constexpr char kTransport[] = "the TCP transport";

// What may come back on stripe 0 of a send channel: the receiver's ABORT frame.
Status decode_abort_header(const uint8_t* in, size_t* reason_bytes) {
  FrameHeader header;
  CIUIC_RETURN_IF_ERROR(decode_frame(in, &header));
  if (header.type != FrameType::kAbort)
    return internal_error("a data frame came back on a send channel");
  *reason_bytes = header.size;
  return Status::Ok();
}

}  // namespace

StripedChannel::StripedChannel(std::vector<net::Fd> stripes, std::string peer,
                               uint64_t min_stripe_bytes, bool pieces_off_stripe0,
                               StripeWorkers::Direction direction, int threads)
    : stripes_(std::move(stripes)),
      peer_(std::move(peer)),
      min_stripe_bytes_(min_stripe_bytes),
      pieces_off_stripe0_(pieces_off_stripe0),
      peer_abort_(kFrameHeaderBytes, &decode_abort_header) {
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

void StripedChannel::send_abort_and_shutdown(std::string_view reason, const Deadline& room_until) {
  if (shut_down_) return;
  if (reason.size() > kMaxAbortReason) reason = reason.substr(0, kMaxAbortReason);
  uint8_t frame[kFrameHeaderBytes + kMaxAbortReason];
  encode_frame({FrameType::kAbort, 0, reason.size()}, frame);
  std::memcpy(frame + kFrameHeaderBytes, reason.data(), reason.size());
  // Best effort: a socket that stays full drops the reason and the peer sees a closed
  // connection (or the start of the reason).
  (void)net::send_all(stripes_[0].get(), frame, kFrameHeaderBytes + reason.size(), room_until,
                      kAbortFrameWaitMs, "the ABORT frame");
  shutdown_all();
}

Status StripedChannel::read_abort_frame(bool* complete, bool* closed) {
  CIUIC_RETURN_IF_ERROR(peer_abort_.read(stripes_[0].get(), peer_, closed));
  *complete = peer_abort_.complete();
  return Status::Ok();
}

Status StripedChannel::register_region(void*, size_t, int pointer_kind,
                                       std::unique_ptr<MemoryRegion>* out) {
  return common::register_host_memory(kTransport, pointer_kind, out);
}

}  // namespace ciuic::transport::tcp
