#include "transports/shm/shm_connect.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

#include "base/log.h"

namespace ciuic::transport::shm {
namespace {

constexpr int kPassedFds = 3;  // memfd, bell to receiver, bell to sender

socklen_t abstract_address(const std::string& name, sockaddr_un* out) {
  std::memset(out, 0, sizeof(*out));
  out->sun_family = AF_UNIX;
  // sun_path[0] == '\0': the abstract namespace (no file; gone with the socket).
  std::memcpy(out->sun_path + 1, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

pid_t peer_pid_of(int fd) {
  ucred cred{};
  socklen_t length = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return 0;
  return cred.pid;
}

std::string cma_hint(int err) {
  switch (err) {
    case EPERM:
      return "ptrace denied: Yama ptrace_scope, another user, or no CAP_SYS_PTRACE";
    case ENOSYS:
      return "blocked by seccomp (containers) or a kernel without CROSS_MEMORY_ATTACH";
    case ESRCH:
      return "the sender is not visible here: another pid namespace?";
    default:
      return "";
  }
}

// True the first time `kind` is seen in this process.
bool first_of_kind(int kind) {
  static std::mutex mutex;
  static std::set<int>* seen = new std::set<int>();
  std::lock_guard<std::mutex> lock(mutex);
  return seen->insert(kind).second;
}

}  // namespace

// ---- listener ----

ShmListener::ShmListener(int64_t handshake_timeout_ms)
    : AuthenticatedListener(
          {"shm listener", kHandshakeMagic, kWireVersion, handshake_timeout_ms, "segment"}) {}

Status ShmListener::create(int64_t handshake_timeout_ms, std::unique_ptr<Listener>* out) {
  std::unique_ptr<ShmListener> l(new ShmListener(handshake_timeout_ms));
  l->listen_fd_ = net::Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!l->listen_fd_.valid()) return errno_error("shm transport listener: socket(AF_UNIX)", errno);
  HandleContents contents;
  for (int attempt = 0;; ++attempt) {
    uint8_t random[8];
    net::random_bytes(random, sizeof(random));
    char name[64];
    std::snprintf(name, sizeof(name), "ciuic-shm-%d-%02x%02x%02x%02x%02x%02x%02x%02x",
                  static_cast<int>(::getpid()), random[0], random[1], random[2], random[3],
                  random[4], random[5], random[6], random[7]);
    contents.name = name;
    sockaddr_un address;
    socklen_t length = abstract_address(contents.name, &address);
    if (::bind(l->listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), length) == 0) break;
    if (errno != EADDRINUSE || attempt == 3)
      return errno_error("shm transport listener: bind of @" + contents.name, errno);
  }
  l->name_ = "@" + contents.name;
  if (::listen(l->listen_fd_.get(), common::kListenBacklog) != 0)
    return errno_error("shm transport listener: listen on " + l->name_, errno);
  contents.token = l->token_;
  read_boot_id(contents.boot_id);
  contents.netns_inode = read_netns_inode();
  contents.pid = static_cast<uint32_t>(::getpid());
  encode_handle(contents, &l->handle_);
  CIUIC_LOG_TRACE(log::kNet, "shm listener on %s", l->name_.c_str());
  *out = std::move(l);
  return Status::Ok();
}

Status ShmListener::accept_socket(Pending* p) {
  int fd;
  do {
    fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return Status::Ok();
    return errno_error("accept", errno);
  }
  p->fd = net::Fd(fd);
  const pid_t pid = peer_pid_of(fd);
  static_cast<ShmPending*>(p)->pid = pid;
  p->peer = "pid " + std::to_string(pid);
  return Status::Ok();
}

Status ShmListener::decide(Pending* pending, const std::vector<uint8_t>& payload,
                           std::vector<uint8_t>* reply) {
  auto* p = static_cast<ShmPending*>(pending);
  CIUIC_RETURN_IF_ERROR(decode_hello(payload.data(), payload.size(), &p->hello));
  const uint64_t ring = p->hello.ring_bytes;
  if (ring < kMinRingBytes || ring > kMaxRingBytes || (ring & (ring - 1)) != 0)
    return invalid_argument("a ring of " + std::to_string(ring) +
                            " bytes (a power of two in 64K..1G expected)");
  const CmaSetting mine = configured_cma();
  const CmaSetting theirs = p->hello.cma;
  std::string why;
  int cause = 0;  // what decided the path: 0 the probe worked, -1/-2 a setting, else errno
  if (mine == CmaSetting::kOff || theirs == CmaSetting::kOff) {
    cause = mine == CmaSetting::kOff ? -1 : -2;
    p->path = Path::kCopy;
    why = std::string("CIUIC_SHM_CMA=off on the ") +
          (mine == CmaSetting::kOff ? "receiver" : "sender");
  } else {
    uint64_t value = 0;
    iovec local{&value, sizeof(value)};
    iovec remote{reinterpret_cast<void*>(p->hello.probe_address), sizeof(value)};
    ssize_t n = p->pid > 0 ? ::process_vm_readv(p->pid, &local, 1, &remote, 1, 0) : -1;
    const int err = p->pid > 0 ? errno : ESRCH;
    if (n == static_cast<ssize_t>(sizeof(value)) && value == p->hello.probe_value) {
      p->path = Path::kCma;
      why = "process_vm_readv of the sender works";
    } else {
      std::string failure = n < 0 ? "process_vm_readv of pid " + std::to_string(p->pid) +
                                        " fails: " + std::strerror(err) +
                                        (cma_hint(err).empty() ? "" : " (" + cma_hint(err) + ")")
                                  : "process_vm_readv of pid " + std::to_string(p->pid) +
                                        " read something other than the probe word";
      // Kept short: the reason travels in the handshake's verdict (at most 256 bytes).
      if (mine == CmaSetting::kOn || theirs == CmaSetting::kOn)
        return unsupported(std::string("CIUIC_SHM_CMA=on on the ") +
                           (mine == CmaSetting::kOn ? "receiver" : "sender") + " but " + failure +
                           "; auto would copy instead");
      p->path = Path::kCopy;
      why = failure;
      cause = n < 0 ? err : 999;
    }
  }
  // INFO the first time this process sees a path for a given cause; TRACE afterwards (a
  // rank on a node of 64 has 63 such channels, all alike).
  const bool first = first_of_kind(static_cast<int>(p->path) * 1000 + cause);
  const log::Level level = first ? log::Level::kInfo : log::Level::kTrace;
  if (p->path == Path::kCma) {
    CIUIC_LOG(level, log::kNet,
              "shm channel from pid %d: messages above the sender's eager size are read "
              "straight from its buffer (single-copy CMA, process_vm_readv)%s",
              static_cast<int>(p->pid), first ? "; further such channels are logged at TRACE" : "");
  } else {
    CIUIC_LOG(level, log::kNet,
              "shm channel from pid %d: every message is copied through the %" PRIu64
              "-byte shared ring, large ones pipelined in chunks (no CMA: %s)%s",
              static_cast<int>(p->pid), ring, why.c_str(),
              first ? "; further such channels are logged at TRACE" : "");
  }
  reply->resize(kReplyBytes);
  encode_reply(p->path, reply->data());
  return Status::Ok();
}

Status ShmListener::after_handshake(Pending* pending, bool* done) {
  *done = false;
  auto* p = static_cast<ShmPending*>(pending);
  uint8_t byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kPassedFds + 1))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(p->fd.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::Ok();
  if (n < 0) return errno_error("recvmsg of the segment", errno);
  if (n == 0) return remote_error("the connector closed before it passed its segment");
  std::vector<net::Fd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.emplace_back(fd);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0 || fds.size() != kPassedFds || byte != 'F')
    return invalid_argument("the connector passed " + std::to_string(fds.size()) +
                            " descriptors (expected " + std::to_string(kPassedFds) + ")");
  // The doorbells are eventfds; a blocking descriptor in their place must not block us.
  for (int i = 1; i < kPassedFds; ++i) {
    int flags = ::fcntl(fds[static_cast<size_t>(i)].get(), F_GETFL);
    if (flags < 0 || ::fcntl(fds[static_cast<size_t>(i)].get(), F_SETFL, flags | O_NONBLOCK) != 0)
      return errno_error("fcntl on a passed doorbell", errno);
  }
  ChannelSetup setup;
  CIUIC_RETURN_IF_ERROR(Segment::attach(fds[0].get(), p->hello.ring_bytes, &setup.segment));
  setup.socket = std::move(p->fd);
  setup.bell_to_receiver = std::move(fds[1]);
  setup.bell_to_sender = std::move(fds[2]);
  setup.peer_pid = p->pid;
  setup.path = p->path;
  deliver(std::make_unique<ShmRecvChannel>(std::move(setup)));
  *done = true;
  return Status::Ok();
}

// ---- connector ----

Status ShmConnector::create(const ConnectHandle& handle, int64_t handshake_timeout_ms,
                            std::unique_ptr<Connector>* out) {
  std::unique_ptr<ShmConnector> c(new ShmConnector());
  CIUIC_RETURN_IF_ERROR(decode_handle(handle, &c->remote_));
  uint8_t boot_id[16];
  read_boot_id(boot_id);
  static const uint8_t kZero[16] = {};
  if (std::memcmp(boot_id, kZero, 16) != 0 && std::memcmp(c->remote_.boot_id, kZero, 16) != 0 &&
      std::memcmp(boot_id, c->remote_.boot_id, 16) != 0)
    return invalid_argument("the shm listener (pid " + std::to_string(c->remote_.pid) +
                            ") is on another host (its boot id differs): shared memory reaches "
                            "processes on this host only");
  const uint64_t netns = read_netns_inode();
  if (netns != 0 && c->remote_.netns_inode != 0 && netns != c->remote_.netns_inode)
    return invalid_argument("the shm listener (pid " + std::to_string(c->remote_.pid) +
                            ") is in another network namespace, where its abstract Unix socket "
                            "cannot be reached: run both in one network namespace");
  c->deadline_ = Deadline::after_ms(handshake_timeout_ms);
  c->hello_.ring_bytes = configured_ring_bytes();
  c->hello_.cma = configured_cma();
  CIUIC_RETURN_IF_ERROR(
      Segment::create(c->hello_.ring_bytes, &c->segment_, &c->memfd_).prefix("shm transport"));
  CIUIC_RETURN_IF_ERROR(make_doorbell(&c->bell_to_receiver_));
  CIUIC_RETURN_IF_ERROR(make_doorbell(&c->bell_to_sender_));
  uint64_t probe = 0;
  while (probe == 0) net::random_bytes(&probe, sizeof(probe));
  c->probe_ = probe;
  c->hello_.probe_address = reinterpret_cast<uint64_t>(const_cast<uint64_t*>(&c->probe_));
  c->hello_.probe_value = probe;
  c->fd_ = net::Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c->fd_.valid()) return errno_error("shm transport: socket(AF_UNIX)", errno);
  bool connected = false;
  CIUIC_RETURN_IF_ERROR(c->try_connect(&connected));
  *out = std::move(c);
  return Status::Ok();
}

Status ShmConnector::try_connect(bool* connected) {
  *connected = false;
  sockaddr_un address;
  socklen_t length = abstract_address(remote_.name, &address);
  int rc;
  do {
    rc = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), length);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && (errno == EAGAIN || errno == EINPROGRESS)) return Status::Ok();  // backlog full
  if (rc != 0) {
    const int err = errno;
    return errno_error("shm transport: connect to @" + remote_.name + " (pid " +
                           std::to_string(remote_.pid) +
                           "): is the listening process alive and on this host, in this network "
                           "namespace?",
                       err);
  }
  *connected = true;
  peer_pid_ = peer_pid_of(fd_.get());
  std::vector<uint8_t> payload(kHelloBytes);
  encode_hello(hello_, payload.data());
  handshake_ = std::make_unique<Handshake>(fd_.get(), Handshake::Role::kClient, kHandshakeMagic,
                                           kWireVersion, remote_.token, std::move(payload),
                                           deadline_, "pid " + std::to_string(peer_pid_));
  state_ = State::kHandshake;
  return Status::Ok();
}

Status ShmConnector::send_fds(bool* sent) {
  *sent = false;
  uint8_t byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kPassedFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * kPassedFds);
  const int fds[kPassedFds] = {memfd_.get(), bell_to_receiver_.get(), bell_to_sender_.get()};
  std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
  ssize_t n;
  do {
    n = ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::Ok();
  if (n < 0)
    return errno_error("shm transport: passing the segment to pid " + std::to_string(peer_pid_),
                       errno);
  *sent = true;
  return Status::Ok();
}

Status ShmConnector::progress(std::unique_ptr<SendChannel>* out) {
  out->reset();
  if (!failed_.ok()) return failed_;
  if (state_ == State::kDone) return invalid_argument("this connector already gave its channel");
  const std::string who = "connecting to the shm listener of pid " + std::to_string(remote_.pid);
  if (state_ == State::kConnecting) {
    bool connected = false;
    Status s = try_connect(&connected);
    if (!s.ok()) return failed_ = s;
    if (!connected) {
      if (deadline_.expired())
        failed_ = timeout_error(who + ": its socket's backlog stayed full until the deadline");
      return failed_;
    }
  }
  if (state_ == State::kHandshake) {
    bool done = false;
    Status s = handshake_->progress(&done);
    if (!s.ok()) return failed_ = s.prefix(who);
    if (!done) return Status::Ok();
    const std::vector<uint8_t>& reply = handshake_->peer_payload();
    s = decode_reply(reply.data(), reply.size(), &path_);
    if (!s.ok()) return failed_ = s.prefix(who);
    state_ = State::kSendFds;
  }
  if (state_ == State::kSendFds) {
    bool sent = false;
    Status s = send_fds(&sent);
    if (!s.ok()) return failed_ = s;
    if (!sent) {
      if (deadline_.expired())
        failed_ = timeout_error(who + ": could not pass the segment in time");
      return failed_;
    }
    CIUIC_LOG_TRACE(log::kNet, "shm channel to pid %d: %s path", static_cast<int>(peer_pid_),
                    path_name(path_));
    ChannelSetup setup;
    setup.segment = std::move(segment_);
    setup.socket = std::move(fd_);
    setup.bell_to_receiver = std::move(bell_to_receiver_);
    setup.bell_to_sender = std::move(bell_to_sender_);
    setup.peer_pid = peer_pid_;
    setup.path = path_;
    memfd_.reset();
    *out = std::make_unique<ShmSendChannel>(std::move(setup));
    state_ = State::kDone;
  }
  return Status::Ok();
}

void ShmConnector::collect_poll_fds(std::vector<pollfd>* fds) const {
  if (state_ == State::kHandshake) {
    short events = handshake_->wanted_events();
    if (events != 0) fds->push_back(pollfd{fd_.get(), events, 0});
  } else if (state_ == State::kSendFds) {
    fds->push_back(pollfd{fd_.get(), POLLOUT, 0});
  }
}

}  // namespace ciuic::transport::shm
