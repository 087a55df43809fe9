#include "transports/tcp/tcp_connect.h"

#include <sys/socket.h>

#include <cerrno>
#include <cinttypes>

#include "base/config.h"
#include "base/log.h"
#include "transports/tcp/tcp_channel.h"

namespace ciuic::transport::tcp {
namespace {

const config::IntParam kSockets{
    "CIUIC_TCP_SOCKETS", 4,
    "TCP transport: sockets (stripes) per channel, 1..16; large messages are split over them"};
const config::IntParam kMinStripeBytes{
    "CIUIC_TCP_MIN_STRIPE_BYTES", 256 * 1024,
    "TCP transport: smallest piece of a message given to one stripe; smaller messages use one socket"};
const config::IntParam kBufferBytes{
    "CIUIC_TCP_BUFFER_BYTES", 0,
    "TCP transport: SO_SNDBUF/SO_RCVBUF of each socket; 0 keeps the kernel's autotuning"};

constexpr int kListenBacklog = 1024;
constexpr size_t kMaxPendingSockets = 1024;  // beyond this, new sockets are closed at once
constexpr int kAcceptsPerCall = 64;

Status open_stripe(const net::SocketAddress& remote, int buffer_bytes, net::Fd* out) {
  net::Fd s(::socket(remote.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return errno_error("socket", errno);
  // Before connect(): the receive window scale is fixed by the SYN.
  if (buffer_bytes > 0) net::set_buffer_sizes(s.get(), buffer_bytes);
  net::set_connection_options(s.get());
  if (::connect(s.get(), remote.sa(), remote.length) != 0 && errno != EINPROGRESS)
    return errno_error("connect to " + remote.to_string(), errno);
  *out = std::move(s);
  return Status::Ok();
}

}  // namespace

int configured_stripes() {
  int64_t v = kSockets.get();
  if (v < 1 || v > kMaxStripes) {
    CIUIC_LOG_WARN(log::kNet, "CIUIC_TCP_SOCKETS=%" PRId64 " is outside 1..%d; using %d", v,
                   kMaxStripes, v < 1 ? 1 : kMaxStripes);
    return v < 1 ? 1 : kMaxStripes;
  }
  return static_cast<int>(v);
}

int configured_buffer_bytes() {
  int64_t v = kBufferBytes.get();
  if (v < 0 || v > INT32_MAX) {
    CIUIC_LOG_WARN(log::kNet, "CIUIC_TCP_BUFFER_BYTES=%" PRId64 " is out of range; using the kernel default", v);
    return 0;
  }
  return static_cast<int>(v);
}

uint64_t configured_min_stripe_bytes() {
  int64_t v = kMinStripeBytes.get();
  if (v < 1) {
    CIUIC_LOG_WARN(log::kNet, "CIUIC_TCP_MIN_STRIPE_BYTES=%" PRId64 " must be positive; using 256K", v);
    return 256 * 1024;
  }
  return static_cast<uint64_t>(v);
}

// ---- listener ----

Status TcpListener::create(const net::SocketAddress& local, int64_t handshake_timeout_ms,
                           std::unique_ptr<Listener>* out) {
  std::unique_ptr<TcpListener> l(new TcpListener());
  CIUIC_RETURN_IF_ERROR(net::listen_on(local, kListenBacklog, &l->listen_fd_, &l->bound_)
                            .prefix("TCP transport listener"));
  // Accepted sockets inherit the listener's buffer sizes (and window scale).
  int buffer_bytes = configured_buffer_bytes();
  if (buffer_bytes > 0) net::set_buffer_sizes(l->listen_fd_.get(), buffer_bytes);
  net::random_bytes(l->token_.data(), l->token_.size());
  encode_handle({l->bound_, l->token_}, &l->handle_);
  l->handshake_timeout_ms_ = handshake_timeout_ms;
  CIUIC_LOG_TRACE(log::kNet, "TCP listener on %s", l->bound_.to_string().c_str());
  *out = std::move(l);
  return Status::Ok();
}

void TcpListener::refuse(const Pending& p, const std::string& why) {
  CIUIC_LOG_WARN(log::kNet, "TCP listener %s: refused a connection from %s: %s",
                 bound_.to_string().c_str(), p.peer.to_string().c_str(), why.c_str());
}

void TcpListener::accept_new_sockets() {
  for (int i = 0; i < kAcceptsPerCall; ++i) {
    auto p = std::make_unique<Pending>();
    Status s = net::accept_one(listen_fd_.get(), &p->fd, &p->peer);
    if (!s.ok()) {
      // Out of descriptors or similar: keep serving the handshakes already under way.
      CIUIC_LOG_WARN(log::kNet, "TCP listener %s: %s", bound_.to_string().c_str(),
                     s.message().c_str());
      return;
    }
    if (!p->fd.valid()) return;
    if (pending_.size() >= kMaxPendingSockets) {
      refuse(*p, "too many connections are still authenticating (" +
                     std::to_string(kMaxPendingSockets) + ")");
      continue;
    }
    p->handshake = std::make_unique<Handshake>(
        p->fd.get(), Handshake::Role::kServer, kHandshakeMagic, kWireVersion, token_,
        std::vector<uint8_t>{}, Deadline::after_ms(handshake_timeout_ms_), p->peer.to_string());
    pending_.push_back(std::move(p));
  }
}

bool TcpListener::advance(Pending* p) {
  bool done = false;
  Status s = p->handshake->progress(&done);
  if (s.ok() && p->handshake->awaiting_decision()) {
    const std::vector<uint8_t>& payload = p->handshake->peer_payload();
    Status d = decode_hello(payload.data(), payload.size(), &p->hello);
    if (d.ok()) {
      auto it = groups_.find(p->hello.channel_id);
      if (it == groups_.end()) {
        Group g;
        g.stripe_count = p->hello.stripe_count;
        g.min_stripe_bytes = p->hello.min_stripe_bytes;
        g.stripes.resize(g.stripe_count);
        g.peer = p->peer;
        g.deadline = Deadline::after_ms(handshake_timeout_ms_);
        it = groups_.emplace(p->hello.channel_id, std::move(g)).first;
      }
      Group& g = it->second;
      if (g.stripe_count != p->hello.stripe_count || g.min_stripe_bytes != p->hello.min_stripe_bytes)
        d = invalid_argument("stripe parameters differ from the channel's other stripes");
      else if (g.stripes[p->hello.stripe_index].valid() || g.claimed(p->hello.stripe_index))
        d = invalid_argument("stripe " + std::to_string(p->hello.stripe_index) + " arrived twice");
      else
        g.claim(p->hello.stripe_index);
    }
    if (d.ok()) {
      p->handshake->accept({});
    } else {
      p->handshake->refuse(d.message());
    }
    s = p->handshake->progress(&done);  // sends the verdict
  }
  if (!s.ok()) {
    refuse(*p, s.message());
    return true;
  }
  if (!done) return false;
  auto it = groups_.find(p->hello.channel_id);
  if (it == groups_.end()) {
    refuse(*p, "its channel's other stripes did not arrive in time");
    return true;
  }
  Group& g = it->second;
  g.stripes[p->hello.stripe_index] = std::move(p->fd);
  if (++g.arrived == g.stripe_count) {
    std::string peer = g.peer.to_string();
    CIUIC_LOG_TRACE(log::kNet, "TCP listener %s: channel from %s with %d stripes",
                    bound_.to_string().c_str(), peer.c_str(), g.stripe_count);
    ready_.push_back(
        std::make_unique<TcpRecvChannel>(std::move(g.stripes), peer, g.min_stripe_bytes));
    groups_.erase(it);
  }
  return true;
}

void TcpListener::expire_groups() {
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (!it->second.deadline.expired()) {
      ++it;
      continue;
    }
    CIUIC_LOG_WARN(log::kNet,
                   "TCP listener %s: dropped a channel from %s: %d of its %d stripes arrived "
                   "before the handshake deadline",
                   bound_.to_string().c_str(), it->second.peer.to_string().c_str(),
                   it->second.arrived, it->second.stripe_count);
    it = groups_.erase(it);
  }
}

Status TcpListener::accept(std::unique_ptr<RecvChannel>* out) {
  out->reset();
  accept_new_sockets();
  for (size_t i = 0; i < pending_.size();) {
    if (advance(pending_[i].get())) {
      pending_[i] = std::move(pending_.back());
      pending_.pop_back();
    } else {
      ++i;
    }
  }
  expire_groups();
  if (!ready_.empty()) {
    *out = std::move(ready_.front());
    ready_.erase(ready_.begin());
  }
  return Status::Ok();
}

void TcpListener::collect_poll_fds(std::vector<pollfd>* fds) const {
  fds->push_back(pollfd{listen_fd_.get(), POLLIN, 0});
  for (const auto& p : pending_) {
    short events = p->handshake->wanted_events();
    if (events != 0) fds->push_back(pollfd{p->fd.get(), events, 0});
  }
}

// ---- connector ----

Status TcpConnector::create(const ConnectHandle& handle, int64_t handshake_timeout_ms,
                            std::unique_ptr<Connector>* out) {
  HandleContents contents;
  CIUIC_RETURN_IF_ERROR(decode_handle(handle, &contents));
  std::unique_ptr<TcpConnector> c(new TcpConnector());
  c->remote_ = contents.address;
  c->token_ = contents.token;
  c->deadline_ = Deadline::after_ms(handshake_timeout_ms);
  c->min_stripe_bytes_ = configured_min_stripe_bytes();
  int count = configured_stripes();
  int buffer_bytes = configured_buffer_bytes();
  StripeHello hello;
  net::random_bytes(&hello.channel_id, sizeof(hello.channel_id));
  hello.stripe_count = static_cast<uint16_t>(count);
  hello.min_stripe_bytes = c->min_stripe_bytes_;
  c->stripes_.resize(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    Stripe& s = c->stripes_[static_cast<size_t>(i)];
    CIUIC_RETURN_IF_ERROR(open_stripe(c->remote_, buffer_bytes, &s.fd)
                              .prefix("TCP transport: check that the listener is alive and "
                                      "its address is reachable from here"));
    hello.stripe_index = static_cast<uint16_t>(i);
    std::vector<uint8_t> payload(kStripeHelloBytes);
    encode_hello(hello, payload.data());
    s.handshake = std::make_unique<Handshake>(s.fd.get(), Handshake::Role::kClient,
                                              kHandshakeMagic, kWireVersion, c->token_,
                                              std::move(payload), c->deadline_,
                                              c->remote_.to_string());
  }
  *out = std::move(c);
  return Status::Ok();
}

Status TcpConnector::progress(std::unique_ptr<SendChannel>* out) {
  out->reset();
  if (!failed_.ok()) return failed_;
  if (finished_) return invalid_argument("this connector already gave its channel");
  size_t done = 0;
  for (size_t i = 0; i < stripes_.size(); ++i) {
    Stripe& s = stripes_[i];
    std::string which = "connecting to " + remote_.to_string() + " (stripe " + std::to_string(i) +
                        " of " + std::to_string(stripes_.size()) + ")";
    if (!s.connected) {
      bool writable = false;
      Status w = net::wait_fd(s.fd.get(), POLLOUT, 0, &writable);
      if (w.ok() && !writable) {
        if (deadline_.expired())
          failed_ = timeout_error(which + ": no TCP connection before the handshake deadline");
        if (!failed_.ok()) return failed_;
        continue;
      }
      if (w.ok()) w = net::connect_finished(s.fd.get(), remote_);
      if (!w.ok()) return failed_ = w.prefix(which);
      s.connected = true;
    }
    if (!s.done) {
      Status h = s.handshake->progress(&s.done);
      if (!h.ok()) return failed_ = h.prefix(which);
    }
    if (s.done) ++done;
  }
  if (done < stripes_.size()) return Status::Ok();
  std::vector<net::Fd> fds;
  for (Stripe& s : stripes_) fds.push_back(std::move(s.fd));
  *out = std::make_unique<TcpSendChannel>(std::move(fds), remote_.to_string(), min_stripe_bytes_);
  finished_ = true;
  return Status::Ok();
}

void TcpConnector::collect_poll_fds(std::vector<pollfd>* fds) const {
  for (const Stripe& s : stripes_) {
    if (s.done || !s.fd.valid()) continue;
    short events = s.connected ? s.handshake->wanted_events() : POLLOUT;
    if (events != 0) fds->push_back(pollfd{s.fd.get(), events, 0});
  }
}

}  // namespace ciuic::transport::tcp
