// The bootstrap store: one thread, poll() over the listener and every connection, each
// connection a small state machine (handshake, then framed requests). Nothing here ever
// blocks on a peer, so a slow or hostile client cannot hold up the job.
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "base/config.h"
#include "base/log.h"
#include "core/store_server_impl.h"

namespace ciuic::core {
namespace store_detail {
namespace {

const config::IntParam kHandshakeTimeoutMs{
    "CIUIC_BOOTSTRAP_HANDSHAKE_TIMEOUT_MS", 10000,
    "Time a new connection to the bootstrap store has to prove it knows the job secret"};
const config::IntParam kMaxUnauthenticated{
    "CIUIC_BOOTSTRAP_MAX_PENDING", 64,
    "Connections to the bootstrap store allowed mid-handshake at once; the oldest is dropped"};

constexpr int kTickMs = 50;            // how often deadlines are checked when nothing happens
constexpr int kAcceptsPerWakeup = 128;  // bounds the time spent accepting before serving others

bool is_wildcard(const net::SocketAddress& a) {
  if (a.family() == AF_INET)
    return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (a.family() == AF_INET6)
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr);
  return false;
}

}  // namespace

StoreServerImpl::StoreServerImpl(const Key128& secret)
    : secret_(secret),
      handshake_timeout_ms_(kHandshakeTimeoutMs.get()),
      max_unauthenticated_(static_cast<size_t>(std::max<int64_t>(1, kMaxUnauthenticated.get()))) {}

StoreServerImpl::~StoreServerImpl() {
  stop_.store(true);
  uint64_t one = 1;
  if (wake_fd_.valid()) (void)!::write(wake_fd_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  CIUIC_LOG_INFO(log::kBoot, "bootstrap store at %s stopped (%zu connections closed)",
                 address_.to_string().c_str(), connections_.size());
}

Status StoreServerImpl::start(const net::SocketAddress& bind) {
  if (is_wildcard(bind))
    return invalid_argument("the bootstrap store does not listen on all interfaces (" +
                            bind.to_string() +
                            "): give it one address (CIUIC_SOCKET_IFNAME picks the interface)");
  Status s = net::listen_on(bind, 1024, &listen_fd_, &address_);
  if (!s.ok()) return s.prefix("bootstrap store");
  wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_.valid()) return errno_error("bootstrap store: eventfd", errno);
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) {
    return system_error(std::string("bootstrap store: cannot start its thread: ") + e.what());
  }
  CIUIC_LOG_INFO(log::kBoot, "bootstrap store listening on %s", address_.to_string().c_str());
  return Status::Ok();
}

void StoreServerImpl::run() {
  std::vector<pollfd> fds;
  std::vector<uint64_t> ids;
  while (!stop_.load()) {
    fds.clear();
    ids.clear();
    fds.push_back({wake_fd_.get(), POLLIN, 0});
    bool listening = accept_paused_until_.expired();
    fds.push_back({listening ? listen_fd_.get() : -1, POLLIN, 0});
    for (auto& [id, c] : connections_) {
      short events = c->handshake ? c->handshake->wanted_events()
                                  : static_cast<short>(POLLIN | (c->out.empty() ? 0 : POLLOUT));
      fds.push_back({c->fd.get(), events, 0});
      ids.push_back(id);
    }
    int rc = ::poll(fds.data(), fds.size(), kTickMs);
    if (stop_.load()) break;
    if (rc < 0 && errno != EINTR) {
      CIUIC_LOG_WARN(log::kBoot, "bootstrap store %s: poll failed: %s",
                     address_.to_string().c_str(), std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(kTickMs));
      continue;
    }
    if (rc > 0) {
      if (fds[0].revents != 0) {
        uint64_t drained;
        (void)!::read(wake_fd_.get(), &drained, sizeof(drained));
      }
      if (listening && (fds[1].revents & POLLIN)) accept_new();
      for (size_t i = 0; i < ids.size(); ++i) {
        short revents = fds[i + 2].revents;
        if (revents == 0) continue;
        Connection* c = find(ids[i]);
        if (c != nullptr && !c->dead) service(*c, revents);
      }
    }
    check_deadlines();
    reap();
  }
}

Connection* StoreServerImpl::find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

std::string StoreServerImpl::describe(const Connection& c) const {
  if (!c.joined) return c.peer;
  return c.peer + " (rank " + std::to_string(c.rank) + " of namespace '" + c.name_space + "')";
}

void StoreServerImpl::accept_new() {
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    net::Fd fd;
    net::SocketAddress peer;
    Status s = net::accept_one(listen_fd_.get(), &fd, &peer);
    if (!s.ok()) {
      // Out of descriptors, most likely: stop accepting for a moment instead of spinning.
      CIUIC_LOG_WARN(log::kBoot, "bootstrap store %s: %s; pausing accepts for 100 ms",
                     address_.to_string().c_str(), s.message().c_str());
      accept_paused_until_ = Deadline::after_ms(100);
      break;
    }
    if (!fd.valid()) break;
    auto c = std::make_unique<Connection>();
    c->id = next_id_++;
    c->peer = peer.to_string();
    c->handshake_deadline = Deadline::after_ms(handshake_timeout_ms_);
    c->handshake = std::make_unique<Handshake>(
        fd.get(), Handshake::Role::kServer, kBootstrapMagic, kBootstrapVersion, secret_,
        std::vector<uint8_t>{}, c->handshake_deadline, "bootstrap client " + c->peer);
    c->fd = std::move(fd);
    Connection& ref = *c;
    connections_.emplace(ref.id, std::move(c));
    CIUIC_LOG_TRACE(log::kBoot, "bootstrap store: connection from %s", ref.peer.c_str());
    advance_handshake(ref);  // sends the challenge
  }
  enforce_unauthenticated_cap();
}

void StoreServerImpl::enforce_unauthenticated_cap() {
  size_t unauthenticated = 0;
  for (auto& [id, c] : connections_)
    if (c->handshake && !c->dead) ++unauthenticated;
  for (auto it = connections_.begin();
       unauthenticated > max_unauthenticated_ && it != connections_.end(); ++it) {
    Connection& c = *it->second;
    if (!c.handshake || c.dead) continue;
    // One warning per burst, then every 100th: a flood must not flood the log too.
    bool warn = cap_drops_++ % 100 == 0;
    drop(c,
         "too many connections mid-handshake (CIUIC_BOOTSTRAP_MAX_PENDING=" +
             std::to_string(max_unauthenticated_) + "), dropped the oldest (" +
             std::to_string(cap_drops_) + " so far)",
         warn);
    --unauthenticated;
  }
}

void StoreServerImpl::service(Connection& c, short revents) {
  if (c.handshake) {
    advance_handshake(c);
    return;
  }
  if (revents & POLLOUT) flush(c);
  if (!c.dead && (revents & (POLLIN | POLLHUP | POLLERR))) read_requests(c);
}

void StoreServerImpl::advance_handshake(Connection& c) {
  for (;;) {
    bool done = false;
    Status s = c.handshake->progress(&done);
    if (!s.ok()) {
      drop(c, s.message(), true);
      return;
    }
    if (c.handshake->awaiting_decision()) {
      decide(c);
      continue;
    }
    if (done) {
      c.handshake.reset();
      CIUIC_LOG_INFO(log::kBoot, "bootstrap store: %s joined", describe(c).c_str());
    }
    return;
  }
}

void StoreServerImpl::read_requests(Connection& c) {
  for (;;) {
    size_t moved = 0;
    if (!c.have_header) {
      Status s = net::recv_some(c.fd.get(), c.header_bytes + c.header_done,
                                store::kRequestHeaderBytes - c.header_done, &moved);
      c.header_done += moved;
      if (!s.ok()) {
        // A clean close between requests is how a rank says goodbye.
        drop(c, s.message(), c.header_done != 0 || c.awaiting);
        return;
      }
      if (c.header_done < store::kRequestHeaderBytes) return;
      store::RequestHeader h = store::decode_request_header(c.header_bytes);
      std::string bad;
      if (h.magic != store::kRequestMagic) bad = "bad request magic (not a ciuic store frame)";
      else if (h.op != store::kAllgather) bad = "unknown request op " + std::to_string(h.op);
      else if (h.tag_len > store::kMaxTagBytes)
        bad = "tag of " + std::to_string(h.tag_len) + " bytes (limit " +
              std::to_string(store::kMaxTagBytes) + ")";
      else if (h.value_len > store::kMaxValueBytes)
        bad = "value of " + std::to_string(h.value_len) + " bytes (limit 16 MiB)";
      else if (c.awaiting) bad = "a second request while its allgather is still in flight";
      if (!bad.empty()) {
        drop(c, "protocol violation: " + bad, true);
        return;
      }
      c.header = h;
      c.have_header = true;
      c.body.assign(size_t{h.tag_len} + h.value_len, 0);
      c.body_done = 0;
    }
    moved = 0;
    Status s = net::recv_some(c.fd.get(), c.body.data() + c.body_done, c.body.size() - c.body_done,
                              &moved);
    c.body_done += moved;
    if (!s.ok()) {
      drop(c, "closed in the middle of a request: " + s.message(), true);
      return;
    }
    if (c.body_done < c.body.size()) return;
    std::string tag(c.body.begin(), c.body.begin() + c.header.tag_len);
    std::vector<uint8_t> value(c.body.begin() + c.header.tag_len, c.body.end());
    c.have_header = false;
    c.header_done = 0;
    c.body = {};
    handle_allgather(c, std::move(tag), std::move(value), c.header.wait_ms);
    if (c.dead) return;
  }
}

void StoreServerImpl::enqueue(Connection& c, Buffer data) {
  c.out.push_back({std::move(data), 0});
  flush(c);
}

void StoreServerImpl::flush(Connection& c) {
  while (!c.out.empty() && !c.dead) {
    Outgoing& o = c.out.front();
    size_t moved = 0;
    Status s = net::send_some(c.fd.get(), o.data->data() + o.done, o.data->size() - o.done, &moved);
    o.done += moved;
    if (!s.ok()) {
      drop(c, "while sending a reply: " + s.message(), true);
      return;
    }
    if (o.done < o.data->size()) return;
    c.out.pop_front();
  }
}

void StoreServerImpl::drop(Connection& c, const std::string& why, bool warn) {
  if (c.dead) return;
  c.dead = true;
  dropped_.push_back(c.id);
  if (warn)
    CIUIC_LOG_WARN(log::kBoot, "bootstrap store %s: dropped the connection from %s: %s",
                   address_.to_string().c_str(), describe(c).c_str(), why.c_str());
  else
    CIUIC_LOG_INFO(log::kBoot, "bootstrap store %s: closed the connection from %s: %s",
                   address_.to_string().c_str(), describe(c).c_str(), why.c_str());
}

void StoreServerImpl::reap() {
  // leave() may drop more connections (a failed reply), so loop until none is left.
  while (!dropped_.empty()) {
    uint64_t id = dropped_.back();
    dropped_.pop_back();
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    std::unique_ptr<Connection> c = std::move(it->second);
    connections_.erase(it);
    if (c->joined) leave(*c);
  }
}

}  // namespace store_detail

Status StoreServer::start(const net::SocketAddress& bind, const Key128& secret,
                          std::shared_ptr<StoreServer>* out) {
  auto server = std::make_shared<store_detail::StoreServerImpl>(secret);
  CIUIC_RETURN_IF_ERROR(server->start(bind));
  *out = std::move(server);
  return Status::Ok();
}

}  // namespace ciuic::core
