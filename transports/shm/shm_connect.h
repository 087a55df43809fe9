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
#include "transports/common/acceptor.h"
#include "transports/shm/shm_channel.h"
#include "transports/shm/shm_wire.h"
#include "transports/transport.h"

namespace ciuic::transport::shm {

class ShmListener final : public common::AuthenticatedListener {
 public:
  static Status create(int64_t handshake_timeout_ms, std::unique_ptr<Listener>* out);

 private:
  struct ShmPending final : Pending {
    pid_t pid = 0;
    Hello hello;
    Path path = Path::kCopy;
  };

  explicit ShmListener(int64_t handshake_timeout_ms);
  // accept4 on the Unix socket; the peer is named by the pid SO_PEERCRED reports.
  std::unique_ptr<Pending> make_pending() override { return std::make_unique<ShmPending>(); }
  Status accept_socket(Pending* p) override;
  // Checks the hello and chooses the path for large messages; an error refuses the
  // connection.
  Status decide(Pending* p, const std::vector<uint8_t>& payload,
                std::vector<uint8_t>* reply) override;
  // Receives the segment and the doorbells (SCM_RIGHTS) and yields the channel.
  Status after_handshake(Pending* p, bool* finished) override;
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
