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

// A stripe waiting for its channel's other stripes carries nothing yet: readable means
// the connector closed or reset it.
bool connection_ended(int fd) {
  char byte;
  ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
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

TcpListener::TcpListener(int64_t handshake_timeout_ms)
    : AuthenticatedListener(
          {"TCP listener", kHandshakeMagic, kWireVersion, handshake_timeout_ms, "stripe"}) {}

Status TcpListener::create(const net::SocketAddress& local, int64_t handshake_timeout_ms,
                           std::unique_ptr<Listener>* out) {
  std::unique_ptr<TcpListener> l(new TcpListener(handshake_timeout_ms));
  net::SocketAddress bound;
  CIUIC_RETURN_IF_ERROR(net::listen_on(local, common::kListenBacklog, &l->listen_fd_, &bound)
                            .prefix("TCP transport listener"));
  // Accepted sockets inherit the listener's buffer sizes (and window scale).
  int buffer_bytes = configured_buffer_bytes();
  if (buffer_bytes > 0) net::set_buffer_sizes(l->listen_fd_.get(), buffer_bytes);
  l->name_ = bound.to_string();
  kHandle.encode({bound, l->token_}, &l->handle_);
  CIUIC_LOG_TRACE(log::kNet, "TCP listener on %s", l->name_.c_str());
  *out = std::move(l);
  return Status::Ok();
}

Status TcpListener::decide(Pending* p, const std::vector<uint8_t>& payload,
                           std::vector<uint8_t>*) {
  StripeHello& hello = static_cast<StripePending*>(p)->hello;
  CIUIC_RETURN_IF_ERROR(decode_hello(payload.data(), payload.size(), &hello));
  auto it = groups_.find(hello.channel_id);
  if (it == groups_.end()) {
    Group g;
    g.stripe_count = hello.stripe_count;
    g.min_stripe_bytes = hello.min_stripe_bytes;
    g.flags = hello.flags;
    g.stripes.resize(g.stripe_count);
    g.peer = p->peer;
    g.deadline = Deadline::after_ms(handshake_timeout_ms());
    it = groups_.emplace(hello.channel_id, std::move(g)).first;
  }
  Group& g = it->second;
  if (g.stripe_count != hello.stripe_count || g.min_stripe_bytes != hello.min_stripe_bytes ||
      g.flags != hello.flags)
    return invalid_argument("stripe parameters differ from the channel's other stripes");
  forget_ended_stripes(&g);
  if (g.stripes[hello.stripe_index].valid() || g.claimed(hello.stripe_index))
    return invalid_argument("stripe " + std::to_string(hello.stripe_index) + " arrived twice");
  g.claim(hello.stripe_index);
  return Status::Ok();
}

Status TcpListener::after_handshake(Pending* p, bool* finished) {
  *finished = true;
  const StripeHello& hello = static_cast<StripePending*>(p)->hello;
  auto it = groups_.find(hello.channel_id);
  if (it == groups_.end())
    return remote_error("its channel's other stripes did not arrive in time");
  Group& g = it->second;
  g.stripes[hello.stripe_index] = std::move(p->fd);
  ++g.arrived;
  if (g.arrived == g.stripe_count) forget_ended_stripes(&g);
  if (g.arrived == g.stripe_count) {
    CIUIC_LOG_TRACE(log::kNet, "%s: channel from %s with %d stripes", where().c_str(),
                    g.peer.c_str(), g.stripe_count);
    deliver(std::make_unique<TcpRecvChannel>(std::move(g.stripes), g.peer, g.min_stripe_bytes,
                                             (g.flags & kHelloPiecesOffStripe0) != 0));
    groups_.erase(it);
  }
  return Status::Ok();
}

void TcpListener::after_advance() {
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (!it->second.deadline.expired()) {
      ++it;
      continue;
    }
    CIUIC_LOG_WARN(log::kNet,
                   "%s: dropped a channel from %s: %d of its %d stripes arrived before the "
                   "handshake deadline",
                   where().c_str(), it->second.peer.c_str(), it->second.arrived,
                   it->second.stripe_count);
    it = groups_.erase(it);
  }
}

// The connector dials a stripe again when it lost the connection before our verdict
// reached it. If that connection had got here whole, its socket has ended by now: the
// stripe's place goes to the next dial instead of into a channel.
void TcpListener::forget_ended_stripes(Group* g) {
  for (int i = 0; i < g->stripe_count; ++i) {
    if (!g->stripes[i].valid() || !connection_ended(g->stripes[i].get())) continue;
    CIUIC_LOG_INFO(log::kNet, "%s: stripe %d of a channel from %s ended before the channel was "
                   "complete; waiting for it again", where().c_str(), i, g->peer.c_str());
    g->stripes[i].reset();
    g->release(i);
    --g->arrived;
  }
}

void TcpListener::accepted_then_lost(Pending* p) {
  const StripeHello& hello = static_cast<StripePending*>(p)->hello;
  auto it = groups_.find(hello.channel_id);
  if (it != groups_.end()) it->second.release(hello.stripe_index);
}

// ---- connector ----

Status TcpConnector::create(const ConnectHandle& handle, int64_t handshake_timeout_ms,
                            std::unique_ptr<Connector>* out) {
  common::SocketHandle contents;
  CIUIC_RETURN_IF_ERROR(kHandle.decode(handle, &contents));
  std::unique_ptr<TcpConnector> c(new TcpConnector());
  c->remote_ = contents.address;
  c->min_stripe_bytes_ = configured_min_stripe_bytes();
  const Deadline deadline = Deadline::after_ms(handshake_timeout_ms);
  int count = configured_stripes();
  int buffer_bytes = configured_buffer_bytes();
  StripeHello hello;
  net::random_bytes(&hello.channel_id, sizeof(hello.channel_id));
  hello.stripe_count = static_cast<uint16_t>(count);
  hello.min_stripe_bytes = c->min_stripe_bytes_;
  // With I/O threads every piece of a split message goes to them: the caller's thread
  // (NCCL's one proxy thread, under the plugin) keeps only headers and small messages.
  // Without them the caller moves every byte anyway, and piece 0 stays on socket 0: one
  // payload socket fewer cost 15 % at 16-64 MiB (transports/tcp/README.md).
  c->pieces_off_stripe0_ = configured_threads() > 0 && count > 1;
  if (c->pieces_off_stripe0_) hello.flags |= kHelloPiecesOffStripe0;
  c->stripes_.resize(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    hello.stripe_index = static_cast<uint16_t>(i);
    common::Dial::Setup setup;
    setup.remote = c->remote_;
    setup.buffer_bytes = buffer_bytes;
    setup.handshake_magic = kHandshakeMagic;
    setup.wire_version = kWireVersion;
    setup.token = contents.token;
    setup.payload.resize(kStripeHelloBytes);
    encode_hello(hello, setup.payload.data());
    setup.deadline = deadline;
    CIUIC_RETURN_IF_ERROR(c->stripes_[static_cast<size_t>(i)].start(std::move(setup))
                              .prefix("TCP transport: check that the listener is alive and "
                                      "its address is reachable from here"));
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
    bool stripe_done = false;
    Status s = stripes_[i].progress(&stripe_done);
    if (!s.ok())
      return failed_ = s.prefix("connecting to " + remote_.to_string() + " (stripe " +
                                std::to_string(i) + " of " + std::to_string(stripes_.size()) +
                                ")");
    if (stripe_done) ++done;
  }
  if (done < stripes_.size()) return Status::Ok();
  std::vector<net::Fd> fds;
  for (common::Dial& s : stripes_) fds.push_back(s.take_fd());
  *out = std::make_unique<TcpSendChannel>(std::move(fds), remote_.to_string(), min_stripe_bytes_,
                                          pieces_off_stripe0_);
  finished_ = true;
  return Status::Ok();
}

void TcpConnector::collect_poll_fds(std::vector<pollfd>* fds) const {
  for (const common::Dial& s : stripes_) {
    short events = s.wanted_events();
    if (events != 0) fds->push_back(pollfd{s.fd().get(), events, 0});
  }
}

}  // namespace ciuic::transport::tcp
