// Connection setup. The listener's handle carries its TCP address and a random token. A
// connector opens one TCP socket to it and runs the client side of base/handshake.h (the
// token is the key) with its ConnRecord as payload; the listener, having verified it,
// creates the same number of QPs, brings them to RTS toward the connector's, and answers
// with its own record in the verdict. The connector then brings its QPs to RTS and sends a
// READY frame: only then does the listener hand out the receive channel (the receiver's
// first FIFO write must find the sender's QPs ready). Everything is non-blocking and
// bounded by the handshake deadline; the socket stays open beside the QPs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"
#include "transports/ibverbs/ib_endpoint.h"
#include "transports/transport.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

class IbListener final : public Listener {
 public:
  static Status create(std::shared_ptr<Device> device, const net::SocketAddress& local,
                       int64_t handshake_timeout_ms, std::unique_ptr<Listener>* out);

  const ConnectHandle& handle() const override { return handle_; }
  Status accept(std::unique_ptr<RecvChannel>* out) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;

 private:
  struct Pending {
    net::Fd fd;
    net::SocketAddress peer;
    std::unique_ptr<Handshake> handshake;
    std::unique_ptr<Endpoint> endpoint;
    Deadline deadline = Deadline::never();
    bool authenticated = false;
    uint8_t ready[kSideHeaderBytes] = {};
    size_t ready_got = 0;
  };

  IbListener() = default;
  void accept_new_sockets();
  bool advance(Pending* p);  // true when finished (channel made or refused)
  Status decide(Pending* p);
  void refuse(const Pending& p, const std::string& why);

  std::shared_ptr<Device> device_;
  net::Fd listen_fd_;
  net::SocketAddress bound_;
  Key128 token_{};
  ConnectHandle handle_;
  int64_t handshake_timeout_ms_ = 0;
  std::vector<std::unique_ptr<Pending>> pending_;
  std::vector<std::unique_ptr<RecvChannel>> ready_;
};

class IbConnector final : public Connector {
 public:
  static Status create(std::shared_ptr<Device> device, const ConnectHandle& handle,
                       int64_t handshake_timeout_ms, std::unique_ptr<Connector>* out);

  Status progress(std::unique_ptr<SendChannel>* out) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;

 private:
  IbConnector() = default;
  Status step();

  net::SocketAddress remote_;
  Deadline deadline_ = Deadline::never();
  net::Fd fd_;
  bool connected_ = false;
  std::unique_ptr<Handshake> handshake_;
  std::unique_ptr<Endpoint> endpoint_;
  bool qps_ready_ = false;
  uint8_t ready_frame_[kSideHeaderBytes] = {};
  size_t ready_sent_ = 0;
  Status failed_;
  bool finished_ = false;
};

#endif

}  // namespace ciuic::transport::ib
