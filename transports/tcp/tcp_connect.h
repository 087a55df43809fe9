// Connection setup. A connector dials S sockets to the listener's address, each with a
// client handshake (key: the listener's token; payload: StripeHello; transports/common/
// dial.h). The listener (transports/common/acceptor.h) authenticates each socket on its
// own, groups the stripes by channel id and yields a channel once all S arrived.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"
#include "transports/common/acceptor.h"
#include "transports/common/dial.h"
#include "transports/tcp/tcp_wire.h"
#include "transports/transport.h"

namespace ciuic::transport::tcp {

// Runtime parameters, read when a listener or connector is created.
int configured_stripes();
int configured_buffer_bytes();
uint64_t configured_min_stripe_bytes();

class TcpListener final : public common::AuthenticatedListener {
 public:
  // Binds to `local` (the chosen interface's address, ephemeral port).
  static Status create(const net::SocketAddress& local, int64_t handshake_timeout_ms,
                       std::unique_ptr<Listener>* out);

 private:
  struct StripePending final : Pending {
    StripeHello hello;
  };
  // The stripes of one channel, as they arrive.
  struct Group {
    uint16_t stripe_count = 0;
    uint64_t min_stripe_bytes = 0;
    uint32_t flags = 0;
    std::vector<net::Fd> stripes;
    uint32_t claimed_mask = 0;  // stripes whose handshake was accepted (maybe still sending)
    int arrived = 0;
    std::string peer;
    Deadline deadline = Deadline::never();

    bool claimed(int index) const { return (claimed_mask >> index) & 1u; }
    void claim(int index) { claimed_mask |= 1u << index; }
    void release(int index) { claimed_mask &= ~(1u << index); }
  };

  explicit TcpListener(int64_t handshake_timeout_ms);
  std::unique_ptr<Pending> make_pending() override { return std::make_unique<StripePending>(); }
  // Checks the stripe's hello against its channel's other stripes and claims its place.
  Status decide(Pending* p, const std::vector<uint8_t>& payload,
                std::vector<uint8_t>* reply) override;
  // Puts the stripe in its group; the group's last stripe makes the channel.
  Status after_handshake(Pending* p, bool* finished) override;
  // Drops groups whose stripes did not all arrive by the handshake deadline.
  void after_advance() override;
  // A stripe lost before its verdict left: its place waits for the connector's next dial.
  void accepted_then_lost(Pending* p) override;
  void forget_ended_stripes(Group* g);

  std::map<uint64_t, Group> groups_;
};

class TcpConnector final : public Connector {
 public:
  static Status create(const ConnectHandle& handle, int64_t handshake_timeout_ms,
                       std::unique_ptr<Connector>* out);

  Status progress(std::unique_ptr<SendChannel>* out) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;

 private:
  TcpConnector() = default;

  net::SocketAddress remote_;
  uint64_t min_stripe_bytes_ = 0;
  bool pieces_off_stripe0_ = false;
  std::vector<common::Dial> stripes_;
  Status failed_;
  bool finished_ = false;
};

}  // namespace ciuic::transport::tcp
