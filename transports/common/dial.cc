#include "transports/common/dial.h"

#include <sys/socket.h>

#include <cerrno>

namespace ciuic::transport::common {

Status Dial::start(Setup setup) {
  remote_ = setup.remote;
  deadline_ = setup.deadline;
  net::Fd s(::socket(remote_.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return errno_error("socket", errno);
  // Before connect(): the receive window scale is fixed by the SYN.
  if (setup.buffer_bytes > 0) net::set_buffer_sizes(s.get(), setup.buffer_bytes);
  net::set_connection_options(s.get());
  if (::connect(s.get(), remote_.sa(), remote_.length) != 0 && errno != EINPROGRESS)
    return errno_error("connect to " + remote_.to_string(), errno);
  fd_ = std::move(s);
  handshake_ = std::make_unique<Handshake>(
      fd_.get(), Handshake::Role::kClient, setup.handshake_magic, setup.wire_version, setup.token,
      std::move(setup.payload), deadline_, remote_.to_string());
  return Status::Ok();
}

Status Dial::progress(bool* done) {
  *done = done_;
  if (done_) return Status::Ok();
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
  CIUIC_RETURN_IF_ERROR(handshake_->progress(&done_));
  *done = done_;
  return Status::Ok();
}

short Dial::wanted_events() const {
  if (done_ || !fd_.valid()) return 0;
  return connected_ ? handshake_->wanted_events() : POLLOUT;
}

}  // namespace ciuic::transport::common
