// Connection setup. A connector opens S sockets to the listener's address and runs one
// client handshake on each (key: the listener's token; payload: StripeHello). The
// listener accepts without blocking, runs one server handshake per pending socket — each
// advanced only as far as its socket allows, so a slow or hostile client delays no one —
// groups authenticated stripes by channel id and yields a channel once all S arrived.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"
#include "transports/tcp/tcp_wire.h"
#include "transports/transport.h"

namespace ciuic::transport::tcp {

// Runtime parameters, read when a listener or connector is created.
int configured_stripes();
int configured_buffer_bytes();
uint64_t configured_min_stripe_bytes();

class TcpListener final : public Listener {
 public:
  // Binds to `local` (the chosen interface's address, ephemeral port).
  static Status create(const net::SocketAddress& local, int64_t handshake_timeout_ms,
                       std::unique_ptr<Listener>* out);

  const ConnectHandle& handle() const override { return handle_; }
  Status accept(std::unique_ptr<RecvChannel>* out) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;

 private:
  struct Pending {
    net::Fd fd;
    net::SocketAddress peer;
    std::unique_ptr<Handshake> handshake;
    StripeHello hello;
  };
  struct Group {
    uint16_t stripe_count = 0;
    uint64_t min_stripe_bytes = 0;
    std::vector<net::Fd> stripes;
    uint32_t claimed_mask = 0;  // stripes whose handshake was accepted (maybe still sending)
    int arrived = 0;
    net::SocketAddress peer;
    Deadline deadline = Deadline::never();

    bool claimed(int index) const { return (claimed_mask >> index) & 1u; }
    void claim(int index) { claimed_mask |= 1u << index; }
  };

  TcpListener() = default;
  void accept_new_sockets();
  // Advances one pending handshake; true when it is finished (done or failed).
  bool advance(Pending* p);
  void refuse(const Pending& p, const std::string& why);
  void expire_groups();

  net::Fd listen_fd_;
  net::SocketAddress bound_;
  Key128 token_{};
  ConnectHandle handle_;
  int64_t handshake_timeout_ms_ = 0;
  std::vector<std::unique_ptr<Pending>> pending_;
  std::map<uint64_t, Group> groups_;
  std::vector<std::unique_ptr<RecvChannel>> ready_;
};

class TcpConnector final : public Connector {
 public:
  static Status create(const ConnectHandle& handle, int64_t handshake_timeout_ms,
                       std::unique_ptr<Connector>* out);

  Status progress(std::unique_ptr<SendChannel>* out) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;

 private:
  struct Stripe {
    net::Fd fd;
    bool connected = false;
    std::unique_ptr<Handshake> handshake;
    bool done = false;
  };

  TcpConnector() = default;

  net::SocketAddress remote_;
  Key128 token_{};
  Deadline deadline_ = Deadline::never();
  uint64_t min_stripe_bytes_ = 0;
  std::vector<Stripe> stripes_;
  Status failed_;
  bool finished_ = false;
};

}  // namespace ciuic::transport::tcp
