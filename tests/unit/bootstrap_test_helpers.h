// Helpers shared by the bootstrap tests: a server on loopback, ranks as threads, raw
// sockets for hostile clients, and a capture of WARN lines.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "core/bootstrap.h"
#include "core/store_protocol.h"
#include "support/scoped_config.h"

namespace ciuic::core::bootstrap_testing {

using Bytes = std::vector<uint8_t>;
using std::chrono::milliseconds;

inline int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - since).count();
}

inline Key128 random_key() {
  Key128 k;
  net::random_bytes(k.data(), k.size());
  return k;
}

inline net::SocketAddress loopback(uint16_t port = 0) {
  net::SocketAddress a;
  EXPECT_TRUE(net::parse_address("127.0.0.1", port, &a).ok());
  return a;
}

struct Server {
  std::shared_ptr<StoreServer> server;
  UniqueId id;
};

inline Server start_server() {
  Server s;
  s.id.secret = random_key();
  Status st = StoreServer::start(loopback(), s.id.secret, &s.server);
  EXPECT_TRUE(st.ok()) << st.to_string();
  if (s.server) s.id.root = s.server->address();
  return s;
}

// The value rank `rank` contributes in round `round`: its size differs per rank and round
// (rank 0's first is empty) and every byte says whose it is.
inline Bytes value_of(int rank, int round) {
  Bytes v(static_cast<size_t>(rank * 37 + round * 5));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(rank * 31 + round * 7 + i);
  return v;
}

// Runs `nranks` ranks joining `name_space`, each doing `rounds` allgathers; returns the
// first failure (empty when all of them got exactly every rank's value).
inline std::string run_allgathers(const UniqueId& id, const std::string& name_space, int nranks,
                           int rounds, int64_t deadline_ms) {
  std::mutex mutex;
  std::string failure;
  testing::run_threads(nranks, [&](int rank) {
    auto fail = [&](const std::string& what) {
      std::lock_guard<std::mutex> lock(mutex);
      if (failure.empty()) failure = "rank " + std::to_string(rank) + ": " + what;
    };
    Deadline deadline = Deadline::after_ms(deadline_ms);
    std::unique_ptr<StoreClient> client;
    Status s = StoreClient::connect(id, name_space, rank, nranks, deadline, &client);
    if (!s.ok()) return fail(s.to_string());
    for (int round = 0; round < rounds; ++round) {
      std::vector<Bytes> all;
      s = client->allgather("round" + std::to_string(round), value_of(rank, round), &all, deadline);
      if (!s.ok()) return fail(s.to_string());
      if (all.size() != static_cast<size_t>(nranks)) return fail("wrong count");
      for (int r = 0; r < nranks; ++r)
        if (all[static_cast<size_t>(r)] != value_of(r, round))
          return fail("wrong value from rank " + std::to_string(r));
    }
  });
  return failure;
}

// Captures WARN lines so tests can check that a refusal names its source.
inline std::mutex g_log_mutex;
inline std::vector<std::string> g_warnings;
inline void capture(log::Level level, uint32_t, const char*, int, const char* message) {
  if (level != log::Level::kWarn) return;
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_warnings.emplace_back(message);
}
class LogCapture {
 public:
  LogCapture() {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_warnings.clear();
    log::set_sink(capture);
  }
  ~LogCapture() { log::set_sink(nullptr); }
  // Waits up to a second: the server logs on its own thread, maybe after the client
  // already saw the refusal.
  bool saw(const std::string& a, const std::string& b = "") const {
    Clock::time_point start = Clock::now();
    do {
      {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        for (const auto& w : g_warnings)
          if (w.find(a) != std::string::npos && w.find(b) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    } while (elapsed_ms(start) < 1000);
    return false;
  }
};

// ---- raw sockets for the hostile clients ----

inline net::Fd raw_connect(const net::SocketAddress& to, std::string* local = nullptr) {
  net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(fd.get(), to.sa(), to.length), 0) << std::strerror(errno);
  if (local != nullptr) {
    net::SocketAddress me;
    me.length = sizeof(me.storage);
    getsockname(fd.get(), me.sa(), &me.length);
    *local = me.to_string();
  }
  return fd;
}

inline void raw_send(int fd, const Bytes& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

inline Bytes raw_recv(int fd, size_t size) {
  Bytes out(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::recv(fd, out.data() + done, size - done, 0);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

// True once the server has closed `fd` (EOF or reset), within `ms`.
inline bool closed_by_server(int fd, int ms) {
  Clock::time_point start = Clock::now();
  while (elapsed_ms(start) < ms) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char sink[4096];
    ssize_t n = ::recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
  }
  return false;
}

// A connection that passed the handshake as `rank` of `nranks`, made blocking again.
inline net::Fd authenticated(const UniqueId& id, const std::string& name_space, int rank, int nranks,
                      std::string* local) {
  net::Fd fd;
  EXPECT_TRUE(net::connect_start(id.root, &fd).ok());
  bool ready = false;
  EXPECT_TRUE(net::wait_fd(fd.get(), POLLOUT, 2000, &ready).ok());
  Handshake hs(fd.get(), Handshake::Role::kClient, kBootstrapMagic, kBootstrapVersion, id.secret,
               store::encode_join({name_space, rank, nranks}), Deadline::after_ms(2000), "test");
  for (;;) {
    bool done = false;
    Status s = hs.progress(&done);
    EXPECT_TRUE(s.ok()) << s.to_string();
    if (!s.ok() || done) break;
    EXPECT_TRUE(net::wait_fd(fd.get(), hs.wanted_events(), 100, &ready).ok());
  }
  fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  net::SocketAddress me;
  me.length = sizeof(me.storage);
  getsockname(fd.get(), me.sa(), &me.length);
  *local = me.to_string();
  return fd;
}

inline Bytes request_header(uint16_t tag_len, uint32_t value_len) {
  store::RequestHeader h;
  h.tag_len = tag_len;
  h.value_len = value_len;
  Bytes out(store::kRequestHeaderBytes);
  store::encode_request_header(h, out.data());
  return out;
}

// A handshake Response with the right magic but the given version and a garbage MAC.
inline Bytes response_with_version(uint16_t version) {
  Bytes r(32, 0xab);
  for (int i = 0; i < 4; ++i) r[static_cast<size_t>(i)] = static_cast<uint8_t>(kBootstrapMagic >> (8 * i));
  r[4] = static_cast<uint8_t>(version);
  r[5] = static_cast<uint8_t>(version >> 8);
  r[6] = r[7] = 0;  // no payload
  return r;
}

}  // namespace ciuic::core::bootstrap_testing
