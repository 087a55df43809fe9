// Connection setup over a Unix domain socket in the abstract namespace.
//
// listen() binds "\0ciuic-shm-<pid>-<16 random hex digits>" and draws a random token;
// the handle carries the name, the token, this host's boot id and network namespace.
// A connector creates the channel's segment (a sealed memfd) and both doorbells, then
// runs the client side of base/handshake.h (SipHash challenge-response keyed by the
// token) with a Hello payload: ring size, its CMA setting, and the address and value
// of a probe word in its memory. The listener, once the client has proven the token,
// tries to read that word with process_vm_readv (from the pid SO_PEERCRED reports) and
// answers which path large messages take. Only after the listener proved the token in
// turn does the connector send one byte carrying the memfd and the two eventfds
// (SCM_RIGHTS); the listener checks and maps the segment and yields the RecvChannel.
//
// Everything is non-blocking and bounded by the handshake deadline; a silent, slow or
// garbage-sending client delays no one else.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"
#include "transports/shm/shm_channel.h"
#include "transports/shm/shm_wire.h"
#include "transports/transport.h"

namespace ciuic::transport::shm {

class ShmListener final : public Listener {
 public:
  static Status create(int64_t handshake_timeout_ms, std::unique_ptr<Listener>* out);

  const ConnectHandle& handle() const override { return handle_; }
  Status accept(std::unique_ptr<RecvChannel>* out) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;

 private:
  struct Pending {
    net::Fd fd;
    pid_t pid = 0;
    std::unique_ptr<Handshake> handshake;
    Hello hello;
    Path path = Path::kCopy;
    bool handshake_done = false;
    Deadline deadline = Deadline::never();
  };

  ShmListener() = default;
  void accept_new_sockets();
  // Advances one pending connection; true when it is finished (channel made or refused).
  bool advance(Pending* p);
  // Chooses the path for large messages; an error refuses the connection.
  Status decide(Pending* p);
  Status receive_fds(Pending* p, bool* done);
  void refuse(const Pending& p, const std::string& why);

  net::Fd listen_fd_;
  std::string name_;
  Key128 token_{};
  ConnectHandle handle_;
  int64_t handshake_timeout_ms_ = 0;
  std::vector<std::unique_ptr<Pending>> pending_;
  std::vector<std::unique_ptr<RecvChannel>> ready_;
};

class ShmConnector final : public Connector {
 public:
  static Status create(const ConnectHandle& handle, int64_t handshake_timeout_ms,
                       std::unique_ptr<Connector>* out);

  Status progress(std::unique_ptr<SendChannel>* out) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;

 private:
  enum class State { kConnecting, kHandshake, kSendFds, kDone };
  ShmConnector() = default;
  Status try_connect(bool* connected);
  Status send_fds(bool* sent);

  HandleContents remote_;
  Deadline deadline_ = Deadline::never();
  State state_ = State::kConnecting;
  net::Fd fd_;
  std::unique_ptr<Handshake> handshake_;
  Hello hello_;
  std::shared_ptr<Segment> segment_;
  net::Fd memfd_;
  net::Fd bell_to_receiver_;
  net::Fd bell_to_sender_;
  // The receiver reads this word with process_vm_readv to learn whether CMA works.
  volatile uint64_t probe_ = 0;
  pid_t peer_pid_ = 0;
  Path path_ = Path::kCopy;
  Status failed_;
};

}  // namespace ciuic::transport::shm
