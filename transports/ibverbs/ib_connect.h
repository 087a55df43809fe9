// Connection setup. The listener's handle carries its TCP address and a random token. A
// connector dials one TCP socket to it (transports/common/dial.h: the client side of
// base/handshake.h, the token as key) with its ConnRecord as payload; the listener
// (transports/common/acceptor.h), having verified it,
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
#include "transports/common/acceptor.h"
#include "transports/common/dial.h"
#include "transports/ibverbs/ib_endpoint.h"
#include "transports/transport.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

class IbListener final : public common::AuthenticatedListener {
 public:
  static Status create(std::shared_ptr<Device> device, const net::SocketAddress& local,
                       int64_t handshake_timeout_ms, std::unique_ptr<Listener>* out);

 private:
  struct QpPending final : Pending {
    std::unique_ptr<Endpoint> endpoint;
    uint8_t ready[kSideHeaderBytes] = {};
    size_t ready_got = 0;
  };

  IbListener(std::shared_ptr<Device> device, int64_t handshake_timeout_ms);
  std::unique_ptr<Pending> make_pending() override { return std::make_unique<QpPending>(); }
  // Creates the queue pairs toward the connector's and answers with their record.
  Status decide(Pending* p, const std::vector<uint8_t>& payload,
                std::vector<uint8_t>* reply) override;
  // Waits for the connector's READY, then yields the channel.
  Status after_handshake(Pending* p, bool* finished) override;

  std::shared_ptr<Device> device_;
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
  common::Dial dial_;
  std::unique_ptr<Endpoint> endpoint_;
  bool qps_ready_ = false;
  uint8_t ready_frame_[kSideHeaderBytes] = {};
  size_t ready_sent_ = 0;
  Status failed_;
  bool finished_ = false;
};

#endif

}  // namespace ciuic::transport::ib
