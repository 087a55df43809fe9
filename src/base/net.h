// Socket plumbing shared by the bootstrap and the TCP transport: addresses, interface
// choice (CIUIC_SOCKET_IFNAME), non-blocking sockets, randomness.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"

namespace ciuic::net {

// An IPv4 or IPv6 socket address.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  bool is_loopback() const;
  std::string to_string() const;  // "10.0.0.1:5000" or "[fe80::1]:5000"
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&storage); }

  // Packs into / unpacks from 20 bytes (family, port, 16 address bytes) for handles and ids.
  static constexpr size_t kPackedBytes = 20;
  void pack(uint8_t out[kPackedBytes]) const;
  static Status unpack(const uint8_t in[kPackedBytes], SocketAddress* out);
};

// "host:port", "[v6]:port" or "host" (port = default_port). Resolves names with getaddrinfo.
Status parse_address(std::string_view text, uint16_t default_port, SocketAddress* out);

// The local address to bind listeners to. CIUIC_SOCKET_IFNAME selects the interface with
// NCCL's syntax: "eth" matches names starting with eth, "=eth0" exactly eth0, "^docker"
// excludes; a comma separates several. Unset: the first non-loopback interface that is up,
// else loopback. `why` says what was chosen and why (logged once at INFO by the caller).
Status choose_local_address(SocketAddress* out, std::string* why);
// The same choice made against an explicit spec (for tests).
Status choose_local_address_from(std::string_view ifname_spec, SocketAddress* out, std::string* why);

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A non-blocking listening socket bound to `address` (port 0 = ephemeral); `bound` gets
// the actual address.
Status listen_on(const SocketAddress& address, int backlog, Fd* out, SocketAddress* bound);
// Starts a non-blocking connect; completion is reported by connect_finished().
Status connect_start(const SocketAddress& address, Fd* out);
// After the socket is writable: Ok when connected, the connect error otherwise.
Status connect_finished(int fd, const SocketAddress& address);
// Accepts one pending connection, non-blocking. *out is invalid when none is pending.
Status accept_one(int listen_fd, Fd* out, SocketAddress* peer);

Status set_nonblocking(int fd);
// TCP_NODELAY, plus keepalive probes and TCP_USER_TIMEOUT from CIUIC_KEEPALIVE_MS, so a
// vanished peer fails the connection even while it is idle. Every ciuic connection gets it.
void set_connection_options(int fd);
// The error for a failed send/recv on a connection: errnos that mean the peer or the path to
// it is gone (no answer within CIUIC_KEEPALIVE_MS, unreachable, reset) are CIUIC_ERR_REMOTE
// with a hint; anything else is a local system error.
Status connection_error(std::string_view what, int err);
void set_buffer_sizes(int fd, int bytes);

// Moves bytes on a non-blocking socket. Returns Ok and adds to *done whatever moved;
// EAGAIN is not an error. A closed peer is CIUIC_ERR_REMOTE ("closed the connection").
Status send_some(int fd, const void* data, size_t size, size_t* done);
Status recv_some(int fd, void* data, size_t size, size_t* done);

// Waits (poll) for `events` on fd for at most timeout_ms. Ok(ready=false) on timeout.
Status wait_fd(int fd, short events, int timeout_ms, bool* ready);

// Sends all of [data, data+size) on a non-blocking socket, waiting for room in poll() (at
// most poll_cap_ms at a time) until `deadline`; past it, a timeout saying "<what> did not
// finish in time". A failure of the socket is send_some's.
Status send_all(int fd, const void* data, size_t size, Deadline deadline, int poll_cap_ms,
                std::string_view what);

// Cryptographically random bytes (getrandom).
void random_bytes(void* out, size_t size);

}  // namespace ciuic::net
