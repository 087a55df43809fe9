#include "base/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/config.h"

namespace ciuic::net {
namespace {

const config::StringParam kSocketIfname{
    "CIUIC_SOCKET_IFNAME", "",
    "Interfaces for bootstrap and TCP traffic: 'eth' prefix, '=eth0' exact, '^docker' "
    "excludes, comma separated (NCCL syntax). Unset: first non-loopback interface that is up"};

}  // namespace

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

bool SocketAddress::is_loopback() const {
  if (family() == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr) >> 24) == 127;
  if (family() == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
  return false;
}

std::string SocketAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, host,
              sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(port());
  }
  return "<no address>";
}

void SocketAddress::pack(uint8_t out[kPackedBytes]) const {
  std::memset(out, 0, kPackedBytes);
  uint16_t fam = static_cast<uint16_t>(family());
  uint16_t p = port();
  out[0] = static_cast<uint8_t>(fam & 0xff);
  out[1] = static_cast<uint8_t>(fam >> 8);
  out[2] = static_cast<uint8_t>(p & 0xff);
  out[3] = static_cast<uint8_t>(p >> 8);
  if (family() == AF_INET)
    std::memcpy(out + 4, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, 4);
  else if (family() == AF_INET6)
    std::memcpy(out + 4, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, 16);
}

Status SocketAddress::unpack(const uint8_t in[kPackedBytes], SocketAddress* out) {
  uint16_t fam = static_cast<uint16_t>(in[0] | (in[1] << 8));
  uint16_t p = static_cast<uint16_t>(in[2] | (in[3] << 8));
  *out = SocketAddress{};
  if (fam == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out->storage);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, in + 4, 4);
    out->length = sizeof(sockaddr_in);
  } else if (fam == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, in + 4, 16);
    out->length = sizeof(sockaddr_in6);
  } else {
    return invalid_argument("packed address has unknown family " + std::to_string(fam));
  }
  out->set_port(p);
  return Status::Ok();
}

Status parse_address(std::string_view text, uint16_t default_port, SocketAddress* out) {
  std::string host;
  std::string port = std::to_string(default_port);
  std::string s(text);
  if (s.empty()) return invalid_argument("empty address");
  if (s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos) return invalid_argument("address '" + s + "': missing ']'");
    host = s.substr(1, close - 1);
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':') return invalid_argument("address '" + s + "': expected ':' after ']'");
      port = s.substr(close + 2);
    }
  } else {
    size_t colon = s.rfind(':');
    if (colon != std::string::npos && s.find(':') == colon) {
      host = s.substr(0, colon);
      port = s.substr(colon + 1);
    } else {
      host = s;  // bare host or bare IPv6 literal
    }
  }
  int64_t port_value;
  if (!config::parse_int(port, &port_value) || port_value < 0 || port_value > 65535)
    return invalid_argument("address '" + s + "': bad port '" + port + "'");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr)
    return invalid_argument("cannot resolve host '" + host + "': " + gai_strerror(rc));
  *out = SocketAddress{};
  std::memcpy(&out->storage, res->ai_addr, res->ai_addrlen);
  out->length = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  out->set_port(static_cast<uint16_t>(port_value));
  return Status::Ok();
}

namespace {

struct IfSpec {
  bool exclude = false;
  bool exact = false;
  std::vector<std::string> names;
};

IfSpec parse_ifspec(std::string_view spec) {
  IfSpec out;
  std::string s(spec);
  if (!s.empty() && s[0] == '^') {
    out.exclude = true;
    s.erase(0, 1);
  }
  if (!s.empty() && s[0] == '=') {
    out.exact = true;
    s.erase(0, 1);
  }
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.names.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool ifspec_matches(const IfSpec& spec, const char* name) {
  bool hit = false;
  for (const auto& n : spec.names) {
    if (spec.exact ? n == name : std::strncmp(name, n.c_str(), n.size()) == 0) hit = true;
  }
  return spec.exclude ? !hit : hit;
}

}  // namespace

Status choose_local_address_from(std::string_view ifname_spec, SocketAddress* out,
                                 std::string* why) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return errno_error("getifaddrs", errno);
  IfSpec spec = parse_ifspec(ifname_spec);
  bool have_spec = !spec.names.empty();
  const ifaddrs* chosen = nullptr;
  const ifaddrs* loopback = nullptr;
  std::string seen;
  // IPv4 before IPv6 on the same interface list order: two passes.
  for (int family : {AF_INET, AF_INET6}) {
    for (const ifaddrs* ifa = list; ifa != nullptr && chosen == nullptr; ifa = ifa->ifa_next) {
      if (ifa->ifa_addr == nullptr || ifa->ifa_addr->sa_family != family) continue;
      if (!(ifa->ifa_flags & IFF_UP)) continue;
      if (family == AF_INET6 &&
          IN6_IS_ADDR_LINKLOCAL(&reinterpret_cast<const sockaddr_in6*>(ifa->ifa_addr)->sin6_addr))
        continue;  // link-local needs a scope id to be useful; skip
      if (family == AF_INET) seen += std::string(seen.empty() ? "" : ", ") + ifa->ifa_name;
      bool is_lo = (ifa->ifa_flags & IFF_LOOPBACK) != 0;
      if (have_spec) {
        if (ifspec_matches(spec, ifa->ifa_name)) chosen = ifa;
      } else if (is_lo) {
        if (loopback == nullptr) loopback = ifa;
      } else {
        chosen = ifa;
      }
    }
    if (chosen != nullptr) break;
  }
  if (chosen == nullptr && !have_spec) chosen = loopback;
  if (chosen == nullptr) {
    freeifaddrs(list);
    return invalid_argument("CIUIC_SOCKET_IFNAME=" + std::string(ifname_spec) +
                            " matches no interface that is up (interfaces: " + seen + ")");
  }
  *out = SocketAddress{};
  size_t len = chosen->ifa_addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  std::memcpy(&out->storage, chosen->ifa_addr, len);
  out->length = static_cast<socklen_t>(len);
  out->set_port(0);
  if (why != nullptr) {
    *why = std::string("interface ") + chosen->ifa_name + " (" + out->to_string() + "), " +
           (have_spec ? "matched CIUIC_SOCKET_IFNAME=" + std::string(ifname_spec)
                      : std::string(chosen == loopback ? "only loopback is up"
                                                       : "first non-loopback interface that is up"));
  }
  freeifaddrs(list);
  return Status::Ok();
}

Status choose_local_address(SocketAddress* out, std::string* why) {
  return choose_local_address_from(kSocketIfname.get(), out, why);
}

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Status set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return errno_error("fcntl", errno);
  return Status::Ok();
}

namespace {
const config::IntParam kKeepaliveMs{
    "CIUIC_KEEPALIVE_MS", 60000,
    "A connection whose peer stays silent this long (keepalive probes unanswered while idle, or "
    "data unacknowledged while busy) fails with an error; 0 leaves the kernel's defaults"};
}  // namespace

void set_connection_options(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // Without this, a peer host that vanishes (power, cable, a link set down) leaves an idle
  // connection looking healthy for hours; the next operation would only fail at its deadline.
  const int64_t ms = kKeepaliveMs.get();
  if (ms <= 0) return;
  const int idle_s = static_cast<int>(std::max<int64_t>(1, ms / 3000));
  const int interval_s = static_cast<int>(std::max<int64_t>(1, ms / 9000));
  const int probes = 3;
  const unsigned user_timeout_ms = static_cast<unsigned>(std::min<int64_t>(ms, 0x7fffffff));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
}

void set_buffer_sizes(int fd, int bytes) {
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

Status listen_on(const SocketAddress& address, int backlog, Fd* out, SocketAddress* bound) {
  Fd s(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return errno_error("socket", errno);
  int one = 1;
  setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(s.get(), address.sa(), address.length) != 0)
    return errno_error("bind " + address.to_string(), errno);
  if (listen(s.get(), backlog) != 0) return errno_error("listen " + address.to_string(), errno);
  if (bound != nullptr) {
    *bound = SocketAddress{};
    bound->length = sizeof(bound->storage);
    if (getsockname(s.get(), bound->sa(), &bound->length) != 0)
      return errno_error("getsockname", errno);
  }
  *out = std::move(s);
  return Status::Ok();
}

Status connection_error(std::string_view what, int err) {
  const char* hint = nullptr;
  switch (err) {
    case ETIMEDOUT:
      hint = "the peer stopped answering for CIUIC_KEEPALIVE_MS: its host is down or the network "
             "to it is cut";
      break;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EHOSTDOWN:
    case ENETDOWN:
      hint = "no route to the peer: a link or interface on the path is down";
      break;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
      hint = "the peer's end of the connection is gone";
      break;
    default:
      return errno_error(what, err);
  }
  return remote_error(std::string(what) + ": " + std::strerror(err) + " (errno " + std::to_string(err) +
                      "; " + hint + ")");
}

Status connect_start(const SocketAddress& address, Fd* out) {
  Fd s(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return errno_error("socket", errno);
  set_connection_options(s.get());
  int rc = connect(s.get(), address.sa(), address.length);
  if (rc != 0 && errno != EINPROGRESS)
    return errno_error("connect to " + address.to_string(), errno);
  *out = std::move(s);
  return Status::Ok();
}

Status connect_finished(int fd, const SocketAddress& address) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno_error("getsockopt", errno);
  if (err != 0) return errno_error("connect to " + address.to_string(), err);
  return Status::Ok();
}

Status accept_one(int listen_fd, Fd* out, SocketAddress* peer) {
  SocketAddress addr;
  addr.length = sizeof(addr.storage);
  int fd = accept4(listen_fd, addr.sa(), &addr.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
      out->reset();
      return Status::Ok();
    }
    return errno_error("accept", errno);
  }
  set_connection_options(fd);
  out->reset(fd);
  if (peer != nullptr) *peer = addr;
  return Status::Ok();
}

Status send_some(int fd, const void* data, size_t size, size_t* done) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      *done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::Ok();
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return remote_error(std::string("peer closed the connection (") + std::strerror(errno) + ")");
    return errno_error("send", errno);
  }
  return Status::Ok();
}

Status recv_some(int fd, void* data, size_t size, size_t* done) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::recv(fd, p, size, 0);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      *done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return remote_error("peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Ok();
    if (errno == ECONNRESET)
      return remote_error("peer reset the connection (the process died or closed it)");
    return errno_error("recv", errno);
  }
  return Status::Ok();
}

Status send_all(int fd, const void* data, size_t size, Deadline deadline, int poll_cap_ms,
                std::string_view what) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  size_t done = 0;
  for (;;) {
    CIUIC_RETURN_IF_ERROR(send_some(fd, bytes + done, size - done, &done));
    if (done == size) return Status::Ok();
    if (deadline.expired()) return timeout_error(std::string(what) + " did not finish in time");
    bool ready = false;
    CIUIC_RETURN_IF_ERROR(wait_fd(fd, POLLOUT, deadline.poll_timeout_ms(poll_cap_ms), &ready));
  }
}

Status wait_fd(int fd, short events, int timeout_ms, bool* ready) {
  pollfd p{fd, events, 0};
  int rc = ::poll(&p, 1, timeout_ms);
  if (rc < 0) {
    if (errno == EINTR) {
      *ready = false;
      return Status::Ok();
    }
    return errno_error("poll", errno);
  }
  *ready = rc > 0;
  return Status::Ok();
}

void random_bytes(void* out, size_t size) {
  auto* p = static_cast<uint8_t*>(out);
  while (size > 0) {
    ssize_t n = getrandom(p, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    p += n;
    size -= static_cast<size_t>(n);
  }
  if (size == 0) return;
  // getrandom is missing (pre-3.17 kernel or seccomp): /dev/urandom gives the same bytes.
  Fd f(::open("/dev/urandom", O_RDONLY | O_CLOEXEC));
  while (f.valid() && size > 0) {
    ssize_t n = ::read(f.get(), p, size);
    if (n <= 0) break;
    p += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace ciuic::net
