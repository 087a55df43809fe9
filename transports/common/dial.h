// The connecting side of a TCP connection that authenticates: a non-blocking connect, then
// the client side of base/handshake.h keyed by the listener's token, all bounded by the
// handshake deadline and advanced only as far as the socket allows. The TCP transport
// dials one per stripe; the ibverbs transport one for the socket that sets up its queue
// pairs and then stays open beside them.
#pragma once

#include <poll.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"

namespace ciuic::transport::common {

class Dial {
 public:
  static constexpr int kMaxDials = 4;

  struct Setup {
    net::SocketAddress remote;
    int buffer_bytes = 0;  // SO_SNDBUF/SO_RCVBUF set before connect(); 0: the kernel's
    uint32_t handshake_magic = 0;
    uint16_t wire_version = 0;
    Key128 token{};
    std::vector<uint8_t> payload;  // what the handshake carries to the listener
    Deadline deadline = Deadline::never();
  };

  // Opens the socket and starts connecting.
  Status start(Setup setup);
  // Advances without waiting; *done once the listener accepted. A connection that is not
  // made by the deadline is a timeout; a refusal says why. A connection that was made but
  // reset or closed before the listener's verdict (a lossy link can lose the listener's
  // state of it; a listener full of strangers closes new sockets at once) is dialed again,
  // up to kMaxDials times in all with a short pause between, within the same deadline.
  Status progress(bool* done);
  // The poll() events this waits for now; 0 once done.
  short wanted_events() const;
  bool done() const { return done_; }
  // The listener's verdict payload, once done.
  const std::vector<uint8_t>& reply() const { return handshake_->peer_payload(); }
  const net::Fd& fd() const { return fd_; }
  net::Fd take_fd() { return std::move(fd_); }

 private:
  Status open_and_connect();
  // A failure of a connection that was made, before the verdict: worth one more dial?
  bool should_dial_again(const Status& failure) const;

  Setup setup_;  // kept for another dial
  int dials_ = 0;
  Deadline redial_at_ = Deadline::never();
  bool waiting_to_redial_ = false;
  net::SocketAddress remote_;
  Deadline deadline_ = Deadline::never();
  net::Fd fd_;
  bool connected_ = false;
  bool done_ = false;
  std::unique_ptr<Handshake> handshake_;
};

}  // namespace ciuic::transport::common
