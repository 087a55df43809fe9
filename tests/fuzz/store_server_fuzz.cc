// The bootstrap store as a stranger who knows the secret sees it (a buggy or compromised
// rank): after a valid handshake, arbitrary request bytes. The server must answer, refuse
// or drop the connection, and keep serving: every input ends with a fresh, well-formed
// client whose one-rank allgather must still succeed.
#include <poll.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/handshake.h"
#include "base/net.h"
#include "core/bootstrap.h"
#include "core/store_protocol.h"

namespace {

using namespace ciuic;

struct Server {
  std::shared_ptr<core::StoreServer> server;
  core::UniqueId id;
};

Server& the_server() {
  static Server* s = [] {
    auto* made = new Server();
    (void)net::parse_address("127.0.0.1", 0, &made->id.root);
    for (size_t i = 0; i < made->id.secret.size(); ++i) made->id.secret[i] = static_cast<uint8_t>(i * 7 + 1);
    if (!core::StoreServer::start(made->id.root, made->id.secret, &made->server).ok()) __builtin_trap();
    made->id.root = made->server->address();
    return made;
  }();
  return *s;
}

// An authenticated connection that joined `name_space` as rank `rank` of `nranks`.
bool join(const std::string& name_space, int rank, int nranks, net::Fd* out) {
  Server& s = the_server();
  net::Fd fd;
  if (!net::connect_start(s.id.root, &fd).ok()) return false;
  bool ready = false;
  if (!net::wait_fd(fd.get(), POLLOUT, 1000, &ready).ok() || !ready) return false;
  if (!net::connect_finished(fd.get(), s.id.root).ok()) return false;
  core::store::Join j{name_space, rank, nranks};
  Handshake handshake(fd.get(), Handshake::Role::kClient, core::kBootstrapMagic, core::kBootstrapVersion,
                      s.id.secret, core::store::encode_join(j), Deadline::after_ms(2000), "the fuzzed store");
  for (;;) {
    bool done = false;
    if (!handshake.progress(&done).ok()) return false;
    if (done) break;
    if (!net::wait_fd(fd.get(), handshake.wanted_events(), 1000, &ready).ok() || !ready) return false;
  }
  *out = std::move(fd);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static uint64_t iteration = 0;
  ++iteration;
  if (size == 0 || size > (1 << 16)) return 0;
  net::Fd fd;
  const int nranks = 1 + data[0] % 3;
  if (!join("fuzz" + std::to_string(iteration), 0, nranks, &fd)) __builtin_trap();
  size_t sent = 0;
  while (sent < size - 1) {
    bool ready = false;
    if (!net::wait_fd(fd.get(), POLLOUT, 200, &ready).ok() || !ready) break;
    ssize_t n = ::send(fd.get(), data + 1 + sent, size - 1 - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd.get(), SHUT_WR);
  char sink[4096];
  for (int i = 0; i < 20; ++i) {  // whatever the server answers, until it closes
    bool ready = false;
    if (!net::wait_fd(fd.get(), POLLIN, 50, &ready).ok() || !ready) break;
    if (::recv(fd.get(), sink, sizeof(sink), 0) <= 0) break;
  }
  fd.reset();

  // The server still serves a well-formed client.
  net::Fd good;
  if (!join("good" + std::to_string(iteration), 0, 1, &good)) __builtin_trap();
  std::vector<uint8_t> request(core::store::kRequestHeaderBytes);
  core::store::RequestHeader header;
  header.tag_len = 1;
  header.value_len = 4;
  header.wait_ms = 2000;
  core::store::encode_request_header(header, request.data());
  request.insert(request.end(), {'t', 'v', 'a', 'l', 'u'});
  if (::send(good.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    __builtin_trap();
  uint8_t reply[core::store::kReplyHeaderBytes];
  size_t got = 0;
  while (got < sizeof(reply)) {
    bool ready = false;
    if (!net::wait_fd(good.get(), POLLIN, 2000, &ready).ok() || !ready) __builtin_trap();
    ssize_t n = ::recv(good.get(), reply + got, sizeof(reply) - got, 0);
    if (n <= 0) __builtin_trap();
    got += static_cast<size_t>(n);
  }
  if (core::store::decode_reply_header(reply).status != core::store::kOk) __builtin_trap();
  return 0;
}
