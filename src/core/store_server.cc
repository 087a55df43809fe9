// The bootstrap store: one thread, poll() over the listener and every connection, each
// connection a small state machine (handshake, then framed requests). Nothing here ever
// blocks on a peer, so a slow or hostile client cannot hold up the job.
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <system_error>
#include <thread>

#include "base/config.h"
#include "base/log.h"
#include "core/bootstrap.h"
#include "core/store_protocol.h"

namespace ciuic::core {
namespace {

const config::IntParam kHandshakeTimeoutMs{
    "CIUIC_BOOTSTRAP_HANDSHAKE_TIMEOUT_MS", 10000,
    "Time a new connection to the bootstrap store has to prove it knows the job secret"};
const config::IntParam kMaxUnauthenticated{
    "CIUIC_BOOTSTRAP_MAX_PENDING", 64,
    "Connections to the bootstrap store allowed mid-handshake at once; the oldest is dropped"};

constexpr int kTickMs = 50;            // how often deadlines are checked when nothing happens
constexpr int kAcceptsPerWakeup = 128;  // bounds the time spent accepting before serving others
constexpr size_t kMissingRanksListed = 16;

using Buffer = std::shared_ptr<const std::vector<uint8_t>>;

struct Outgoing {
  Buffer data;
  size_t done = 0;
};

struct Connection {
  uint64_t id = 0;
  net::Fd fd;
  std::string peer;                      // the source address, for every log line
  std::unique_ptr<Handshake> handshake;  // until authenticated
  Deadline handshake_deadline = Deadline::never();
  bool dead = false;
  // Set once the handshake accepted the join.
  bool joined = false;
  std::string name_space;
  int rank = -1;
  // Request being read.
  uint8_t header_bytes[store::kRequestHeaderBytes] = {};
  size_t header_done = 0;
  bool have_header = false;
  store::RequestHeader header;
  std::vector<uint8_t> body;
  size_t body_done = 0;
  bool awaiting = false;  // an allgather of this connection waits for the others
  std::deque<Outgoing> out;
};

struct Contribution {
  std::vector<uint8_t> value;
  bool awaiting = true;
  uint32_t wait_ms = store::kWaitForever;
  Deadline deadline = Deadline::never();
};

struct PendingGather {
  std::vector<std::optional<Contribution>> slots;
  int contributed = 0;
};

struct Member {
  enum State { kAbsent, kJoined, kLeft };
  State state = kAbsent;
  uint64_t connection = 0;
  std::string peer;
};

struct Namespace {
  int nranks = 0;
  std::vector<Member> members;
  int live = 0;
  std::optional<int> first_left;
  std::map<std::string, PendingGather, std::less<>> pending;
};

bool is_wildcard(const net::SocketAddress& a) {
  if (a.family() == AF_INET)
    return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (a.family() == AF_INET6)
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr);
  return false;
}

class StoreServerImpl final : public StoreServer {
 public:
  explicit StoreServerImpl(const Key128& secret)
      : secret_(secret),
        handshake_timeout_ms_(kHandshakeTimeoutMs.get()),
        max_unauthenticated_(static_cast<size_t>(std::max<int64_t>(1, kMaxUnauthenticated.get()))) {}
  ~StoreServerImpl() override;
  Status start(const net::SocketAddress& bind);
  const net::SocketAddress& address() const override { return address_; }

 private:
  void run();
  void accept_new();
  void enforce_unauthenticated_cap();
  void service(Connection& c, short revents);
  void advance_handshake(Connection& c);
  void decide(Connection& c);
  void read_requests(Connection& c);
  void handle_allgather(Connection& c, std::string tag, std::vector<uint8_t> value,
                        uint32_t wait_ms);
  void complete(Namespace& ns, const std::string& tag, PendingGather& gather);
  void send_error(Connection& c, uint16_t status, const std::string& tag, std::string message);
  void enqueue(Connection& c, Buffer data);
  void flush(Connection& c);
  void drop(Connection& c, const std::string& why, bool warn);
  void reap();
  void leave(Connection& c);
  void check_deadlines();
  Connection* find(uint64_t id);
  std::string describe(const Connection& c) const;

  Key128 secret_;
  int64_t handshake_timeout_ms_;
  size_t max_unauthenticated_;
  net::SocketAddress address_;
  net::Fd listen_fd_;
  net::Fd wake_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  // Touched only by the serving thread.
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;  // ordered: oldest first
  std::vector<uint64_t> dropped_;
  std::map<std::string, Namespace, std::less<>> namespaces_;
  uint64_t cap_drops_ = 0;
  Deadline accept_paused_until_ = Deadline::after_ms(0);
};

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

void StoreServerImpl::decide(Connection& c) {
  store::Join join;
  Status s = store::decode_join(c.handshake->peer_payload(), &join);
  if (!s.ok()) {
    c.handshake->refuse("malformed join: " + s.message());
    return;
  }
  const std::string rank_text = "rank " + std::to_string(join.rank);
  if (join.nranks < 1 || join.nranks > store::kMaxRanks) {
    c.handshake->refuse("nranks " + std::to_string(join.nranks) + " out of range [1, " +
                        std::to_string(store::kMaxRanks) + "]");
    return;
  }
  if (join.rank < 0 || join.rank >= join.nranks) {
    c.handshake->refuse(rank_text + " out of range for " + std::to_string(join.nranks) +
                        " ranks");
    return;
  }
  auto it = namespaces_.find(join.name_space);
  if (it == namespaces_.end()) {
    it = namespaces_.emplace(join.name_space, Namespace{}).first;
    it->second.nranks = join.nranks;
    it->second.members.resize(static_cast<size_t>(join.nranks));
  }
  Namespace& ns = it->second;
  if (ns.nranks != join.nranks) {
    c.handshake->refuse(rank_text + " says namespace '" + join.name_space + "' has " +
                        std::to_string(join.nranks) + " ranks, but it has " +
                        std::to_string(ns.nranks) + ": every rank must pass the same nranks");
    return;
  }
  Member& m = ns.members[static_cast<size_t>(join.rank)];
  if (m.state != Member::kAbsent) {
    c.handshake->refuse(rank_text + " already joined namespace '" + join.name_space + "' from " +
                        m.peer + (m.state == Member::kLeft ? " (and left)" : ""));
    return;
  }
  m.state = Member::kJoined;
  m.connection = c.id;
  m.peer = c.peer;
  ++ns.live;
  c.joined = true;
  c.name_space = join.name_space;
  c.rank = join.rank;
  c.handshake->accept({});
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

void StoreServerImpl::handle_allgather(Connection& c, std::string tag, std::vector<uint8_t> value,
                                       uint32_t wait_ms) {
  Namespace& ns = namespaces_.at(c.name_space);
  if (ns.first_left) {
    const Member& gone = ns.members[static_cast<size_t>(*ns.first_left)];
    send_error(c, store::kPeerLeft, tag,
               "allgather '" + tag + "' in namespace '" + c.name_space + "': rank " +
                   std::to_string(*ns.first_left) + " has left (its connection from " +
                   gone.peer + " closed), so no allgather of this namespace can complete");
    return;
  }
  PendingGather& gather = ns.pending[tag];
  if (gather.slots.empty()) gather.slots.resize(static_cast<size_t>(ns.nranks));
  auto& slot = gather.slots[static_cast<size_t>(c.rank)];
  if (!slot) ++gather.contributed;  // else: a retry after this rank's own timeout
  slot = Contribution{std::move(value), true, wait_ms,
                      wait_ms == store::kWaitForever ? Deadline::never()
                                                     : Deadline::after_ms(wait_ms)};
  c.awaiting = true;
  CIUIC_LOG_TRACE(log::kBoot, "bootstrap store: %s contributed to '%s' (%d of %d)",
                  describe(c).c_str(), tag.c_str(), gather.contributed, ns.nranks);
  if (gather.contributed == ns.nranks) {
    complete(ns, tag, gather);
    ns.pending.erase(tag);
  }
}

void StoreServerImpl::complete(Namespace& ns, const std::string& tag, PendingGather& gather) {
  uint64_t body_len = tag.size();
  for (auto& slot : gather.slots) body_len += 4 + slot->value.size();
  auto reply = std::make_shared<std::vector<uint8_t>>(store::kReplyHeaderBytes);
  reply->reserve(store::kReplyHeaderBytes + body_len);
  store::ReplyHeader h;
  h.status = store::kOk;
  h.tag_len = static_cast<uint16_t>(tag.size());
  h.count = static_cast<uint32_t>(ns.nranks);
  h.body_len = body_len;
  store::encode_reply_header(h, reply->data());
  reply->insert(reply->end(), tag.begin(), tag.end());
  for (auto& slot : gather.slots) {
    store::put_u32(*reply, static_cast<uint32_t>(slot->value.size()));
    reply->insert(reply->end(), slot->value.begin(), slot->value.end());
  }
  Buffer shared = std::move(reply);
  for (size_t r = 0; r < gather.slots.size(); ++r) {
    if (!gather.slots[r]->awaiting) continue;  // it timed out and was told so
    Connection* member = find(ns.members[r].connection);
    if (member == nullptr || member->dead) continue;
    member->awaiting = false;
    enqueue(*member, shared);
  }
}

void StoreServerImpl::send_error(Connection& c, uint16_t status, const std::string& tag,
                                 std::string message) {
  if (message.size() > store::kMaxErrorBytes) message.resize(store::kMaxErrorBytes);
  auto reply = std::make_shared<std::vector<uint8_t>>(store::kReplyHeaderBytes);
  store::ReplyHeader h;
  h.status = status;
  h.tag_len = static_cast<uint16_t>(tag.size());
  h.body_len = tag.size() + message.size();
  store::encode_reply_header(h, reply->data());
  reply->insert(reply->end(), tag.begin(), tag.end());
  reply->insert(reply->end(), message.begin(), message.end());
  c.awaiting = false;
  enqueue(c, std::move(reply));
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

void StoreServerImpl::leave(Connection& c) {
  auto ns_it = namespaces_.find(c.name_space);
  if (ns_it == namespaces_.end()) return;
  Namespace& ns = ns_it->second;
  Member& m = ns.members[static_cast<size_t>(c.rank)];
  m.state = Member::kLeft;
  --ns.live;
  if (!ns.first_left) ns.first_left = c.rank;
  for (auto it = ns.pending.begin(); it != ns.pending.end();) {
    PendingGather& gather = it->second;
    if (gather.slots[static_cast<size_t>(c.rank)]) {
      ++it;  // it contributed: the others can still complete
      continue;
    }
    std::string message = "allgather '" + it->first + "' in namespace '" + c.name_space +
                          "': rank " + std::to_string(c.rank) + " left (its connection from " +
                          c.peer + " closed) before contributing";
    for (size_t r = 0; r < gather.slots.size(); ++r) {
      if (!gather.slots[r] || !gather.slots[r]->awaiting) continue;
      Connection* waiting = find(ns.members[r].connection);
      if (waiting != nullptr && !waiting->dead) send_error(*waiting, store::kPeerLeft, it->first, message);
    }
    it = ns.pending.erase(it);
  }
  if (ns.live == 0) namespaces_.erase(ns_it);
}

void StoreServerImpl::check_deadlines() {
  for (auto& [id, c] : connections_) {
    if (c->handshake && !c->dead && c->handshake_deadline.expired()) advance_handshake(*c);
  }
  for (auto& [name, ns] : namespaces_) {
    for (auto& [tag, gather] : ns.pending) {
      for (size_t r = 0; r < gather.slots.size(); ++r) {
        auto& slot = gather.slots[r];
        if (!slot || !slot->awaiting || !slot->deadline.expired()) continue;
        std::string missing;
        std::string never_joined;
        size_t listed = 0, count = 0;
        for (size_t q = 0; q < gather.slots.size(); ++q) {
          if (gather.slots[q]) continue;
          ++count;
          if (listed++ < kMissingRanksListed) {
            missing += (missing.empty() ? "" : ", ") + std::to_string(q);
            if (ns.members[q].state == Member::kAbsent)
              never_joined += (never_joined.empty() ? "" : ", ") + std::to_string(q);
          }
        }
        if (count > kMissingRanksListed)
          missing += " and " + std::to_string(count - kMissingRanksListed) + " more";
        std::string message = "allgather '" + tag + "' in namespace '" + name +
                              "': not all ranks arrived within " + std::to_string(slot->wait_ms) +
                              " ms; missing ranks: " + missing + " (of " +
                              std::to_string(ns.nranks) + ")";
        if (!never_joined.empty())
          message += "; never connected to the root: " + never_joined;
        Connection* waiting = find(ns.members[r].connection);
        slot->awaiting = false;
        if (waiting != nullptr && !waiting->dead) send_error(*waiting, store::kTimeout, tag, message);
      }
    }
  }
}

}  // namespace

Status StoreServer::start(const net::SocketAddress& bind, const Key128& secret,
                          std::shared_ptr<StoreServer>* out) {
  auto server = std::make_shared<StoreServerImpl>(secret);
  CIUIC_RETURN_IF_ERROR(server->start(bind));
  *out = std::move(server);
  return Status::Ok();
}

}  // namespace ciuic::core
