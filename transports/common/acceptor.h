// The listening side that every transport shares.
//
// A listener owns a non-blocking listening socket and a random token that its handle
// carries. accept() takes waiting connections without blocking and runs, per connection,
// the server side of base/handshake.h keyed by that token, each advanced only as far as
// its socket allows: a slow, silent or garbage-sending client delays no one. At most
// kMaxPendingConnections authenticate at once (further ones are closed at once), each
// bounded by the handshake deadline, and every refusal is one WARN that names the peer
// and the reason ("TCP listener 10.0.0.1:5000: refused a connection from ...: ...").
//
// What differs between transports are hooks:
//   accept_socket    how a waiting socket is taken and how its peer is named (TCP: the
//                    address; shm: the pid SO_PEERCRED reports);
//   decide           what the authenticated peer's payload must be and what the accepted
//                    verdict carries back (ibverbs: the queue pairs; shm: the path);
//   after_handshake  what happens before a channel exists: nothing more for a TCP stripe
//                    (the transport groups stripes into channels), a READY frame for
//                    ibverbs, the segment's descriptors (SCM_RIGHTS) for shm.
#pragma once

#include <poll.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"
#include "transports/transport.h"

namespace ciuic::transport::common {

constexpr int kListenBacklog = 1024;
constexpr size_t kMaxPendingConnections = 1024;  // beyond this, new sockets are closed at once
constexpr int kAcceptsPerCall = 64;

class AuthenticatedListener : public Listener {
 public:
  const ConnectHandle& handle() const final { return handle_; }
  Status accept(std::unique_ptr<RecvChannel>* out) final;
  void collect_poll_fds(std::vector<pollfd>* fds) const final;

 protected:
  // One accepted connection on its way to a channel; transports derive their own to keep
  // what they learn on the way.
  struct Pending {
    virtual ~Pending() = default;
    net::Fd fd;
    std::string peer;  // "10.0.0.2:41234", "pid 1234": for messages
    std::unique_ptr<Handshake> handshake;
    Deadline deadline = Deadline::never();  // the handshake's, and what follows it
    bool decided = false;  // decide() accepted the payload
    bool authenticated = false;
  };

  struct Setup {
    const char* what;  // "TCP listener": for messages
    uint32_t handshake_magic;
    uint16_t wire_version;
    int64_t handshake_timeout_ms;
    // What after_handshake waits for, for the message when the deadline passes ("READY").
    const char* awaited_after_handshake = "the rest of the setup";
  };

  // Draws the token. The derived create() then opens listen_fd_, names it (name_) and
  // writes handle_.
  explicit AuthenticatedListener(const Setup& setup);

  // A fresh Pending of the transport's own type.
  virtual std::unique_ptr<Pending> make_pending() { return std::make_unique<Pending>(); }
  // Takes one waiting connection without blocking into p->fd (left invalid when none
  // waits) and names its peer in p->peer. The default takes a TCP connection
  // (net::accept_one) and names the peer's address.
  virtual Status accept_socket(Pending* p);
  // The authenticated peer's payload: Ok accepts it, *reply going back in the verdict; an
  // error refuses the connection, its message going back to the peer and into the WARN.
  virtual Status decide(Pending* p, const std::vector<uint8_t>& payload,
                        std::vector<uint8_t>* reply) = 0;
  // Runs after the handshake, again on every accept() until *finished (a channel, if any,
  // went to deliver()). While it waits, collect_poll_fds() polls the socket for POLLIN and
  // accept() refuses the connection once its deadline passed; an error refuses it at once.
  virtual Status after_handshake(Pending* p, bool* finished) = 0;
  // Runs on every accept() after the pending connections advanced.
  virtual void after_advance() {}
  // Runs when a connection is refused or lost after decide() accepted its payload, so that
  // what decide() set aside for it (a TCP stripe's place) is free for the peer's next dial.
  virtual void accepted_then_lost(Pending*) {}

  void deliver(std::unique_ptr<RecvChannel> channel) { ready_.push_back(std::move(channel)); }
  // The one WARN of a refusal.
  void refuse(const Pending& p, const std::string& why) const;
  // "TCP listener 10.0.0.1:5000": for messages.
  std::string where() const { return std::string(setup_.what) + " " + name_; }
  int64_t handshake_timeout_ms() const { return setup_.handshake_timeout_ms; }

  net::Fd listen_fd_;
  std::string name_;  // the listening address, for messages
  Key128 token_{};
  ConnectHandle handle_;

 private:
  void accept_new_sockets();
  // Advances one pending connection; true when it is finished (channel made or refused).
  bool advance(Pending* p);

  Setup setup_;
  std::vector<std::unique_ptr<Pending>> pending_;
  std::vector<std::unique_ptr<RecvChannel>> ready_;
};

}  // namespace ciuic::transport::common
