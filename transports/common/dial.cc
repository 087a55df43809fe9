#include "transports/common/dial.h"

#include <sys/socket.h>

#include <cerrno>

#include "base/log.h"

namespace ciuic::transport::common {

Status Dial::start(Setup setup) {
  setup_ = std::move(setup);
  remote_ = setup_.remote;
  deadline_ = setup_.deadline;
  return open_and_connect();
}

Status Dial::open_and_connect() {
  ++dials_;
  net::Fd s(::socket(remote_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return errno_error("socket", errno);
  // Before connect(): the receive window scale is fixed by the SYN.
  if (setup_.buffer_bytes > 0) net::set_buffer_sizes(s.get(), setup_.buffer_bytes);
  net::set_connection_options(s.get());
  if (::connect(s.get(), remote_.sa(), remote_.length) != 0 && errno != EINPROGRESS)
    return errno_error("connect to " + remote_.to_string(), errno);
  fd_ = std::move(s);
  handshake_ = std::make_unique<Handshake>(fd_.get(), Handshake::Role::kClient,
                                           setup_.handshake_magic, setup_.wire_version,
                                           setup_.token, setup_.payload, deadline_,
                                           remote_.to_string());
  return Status::Ok();
}

bool Dial::should_dial_again(const Status& failure) const {
  // Only a connection that was made and then lost: a refused connect means nobody listens
  // (the process is gone), a refusal in the verdict or a timeout is final.
  return connected_ && failure.code() == CIUIC_ERR_REMOTE && dials_ < kMaxDials &&
         !deadline_.expired();
}

Status Dial::progress(bool* done) {
  *done = done_;
  if (done_) return Status::Ok();
  if (waiting_to_redial_) {
    if (deadline_.expired()) return timeout_error("no TCP connection before the handshake deadline");
    if (!redial_at_.expired()) return Status::Ok();
    waiting_to_redial_ = false;
    CIUIC_RETURN_IF_ERROR(open_and_connect());
  }
  if (!connected_) {
    bool writable = false;
    CIUIC_RETURN_IF_ERROR(net::wait_fd(fd_.get(), POLLOUT, 0, &writable));
    if (!writable) {
      if (deadline_.expired())
        return timeout_error("no TCP connection before the handshake deadline");
      return Status::Ok();
    }
    CIUIC_RETURN_IF_ERROR(net::connect_finished(fd_.get(), remote_));
    connected_ = true;
  }
  Status s = handshake_->progress(&done_);
  if (!s.ok() && should_dial_again(s)) {
    const int pause_ms = 50 << (dials_ - 1);  // 50, 100, 200 ms
    CIUIC_LOG_WARN(log::kNet, "%s; dialing %s again in %d ms (dial %d of %d)", s.message().c_str(),
                   remote_.to_string().c_str(), pause_ms, dials_ + 1, kMaxDials);
    fd_.reset();
    handshake_.reset();
    connected_ = false;
    waiting_to_redial_ = true;
    redial_at_ = Deadline::after_ms(pause_ms);
    return Status::Ok();
  }
  CIUIC_RETURN_IF_ERROR(s);
  *done = done_;
  return Status::Ok();
}

short Dial::wanted_events() const {
  if (done_ || waiting_to_redial_ || !fd_.valid()) return 0;  // a redial's pause: the caller's poll timeout
  return connected_ ? handshake_->wanted_events() : POLLOUT;
}

}  // namespace ciuic::transport::common
