// Hostile clients against every transport's listener (transports/common/acceptor.h), as
// one suite parameterised by transport: a client that sends garbage, one that stops after
// 10 bytes, one that announces an oversized payload, one that sends a byte a second, and a
// flood of connections that stay silent or send garbage. Each is refused once, with a
// WARN that names it, and its socket is closed; meanwhile a good peer connects well within
// the handshake deadline and moves data; afterwards no descriptor is left open.
//
// listener_hostile_test.cc runs it for tcp and shm; ibverbs_listener_hostile_test.cc for
// ibverbs (its side channel is a TCP listener) where an RDMA device exists (the rdma-vm
// guest runs every ibverbs_*_test).
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/le_bytes.h"
#include "base/net.h"
#include "support/scoped_config.h"
#include "transports/common/handle_codec.h"
#include "unit/transport_test_helpers.h"

namespace ciuic::transport::transport_test {

struct ListenerCase {
  const char* label;      // the tests' name suffix
  const char* transport;  // as registered: "tcp", "shm", "ibverbs"
  std::vector<std::pair<std::string, std::string>> config;  // CIUIC_* settings of this case
  bool needs_device = false;  // skips, saying why, where the transport cannot be created
  // A plain socket connected to the listener behind `handle` (invalid on failure).
  net::Fd (*dial)(const ConnectHandle& handle);
  // How the listener names the client on `fd` in its warnings: "127.0.0.1:41234",
  // "pid 7" (every client of this process has that name).
  std::string (*peer_name)(int fd);
};

// gtest prints a case (in test lists and ctest's names) by its label.
inline void PrintTo(const ListenerCase& c, std::ostream* out) { *out << c.label; }

inline std::string listener_case_name(const ::testing::TestParamInfo<ListenerCase>& info) {
  return info.param.label;
}

// ---- dialling the listeners that listen on TCP (tcp, ibverbs) ----

// A TCP connection to the address in a socket handle of `codec`'s transport.
inline net::Fd dial_socket_handle(const common::SocketHandleCodec& codec,
                                  const ConnectHandle& handle) {
  common::SocketHandle h;
  if (!codec.decode(handle, &h).ok()) return net::Fd();
  net::Fd fd(::socket(h.address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.valid() && ::connect(fd.get(), h.address.sa(), h.address.length) != 0) fd.reset();
  return fd;
}

// The local address of a TCP client: how a TCP listener names it.
inline std::string local_address(int fd) {
  net::SocketAddress me;
  me.length = sizeof(me.storage);
  if (::getsockname(fd, me.sa(), &me.length) != 0) return "(getsockname failed)";
  return me.to_string();
}

// Descriptors this process has open.
inline size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

// Reads `size` bytes, waiting at most `ms` for them.
inline bool read_within(int fd, void* data, size_t size, int64_t ms) {
  Deadline deadline = Deadline::after_ms(ms);
  size_t got = 0;
  while (got < size && !deadline.expired()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    ssize_t n = ::recv(fd, static_cast<uint8_t*>(data) + got, size - got, MSG_DONTWAIT);
    if (n == 0) return false;
    if (n > 0) got += static_cast<size_t>(n);
  }
  return got == size;
}

// True once the listener closed its end of `fd` (EOF or reset after whatever it sent),
// waiting at most `ms`.
inline bool closed_by_listener(int fd, int64_t ms) {
  Deadline deadline = Deadline::after_ms(ms);
  uint8_t buffer[512];
  while (!deadline.expired()) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n > 0) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 20);
  }
  return false;
}

// Serves a listener from its own thread, as a rank's progress loop would: accept() in a
// loop, sleeping in poll() on its descriptors, keeping each channel it yields.
class ServedListener {
 public:
  explicit ServedListener(Listener* listener) : listener_(listener), thread_([this] { serve(); }) {}
  ~ServedListener() { (void)stop(); }
  ServedListener(const ServedListener&) = delete;
  ServedListener& operator=(const ServedListener&) = delete;

  // The next accepted channel, waiting at most `ms`.
  Status take(std::unique_ptr<RecvChannel>* out, int64_t ms) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return !accepted_.empty(); }))
      return timeout_error("no channel accepted in " + std::to_string(ms) + " ms");
    *out = std::move(accepted_.front());
    accepted_.pop_front();
    return Status::Ok();
  }
  // Stops serving; the first error accept() returned, if any.
  Status stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    accepted_.clear();
    return error_;
  }

 private:
  void serve() {
    while (!stopping_) {
      std::unique_ptr<RecvChannel> channel;
      Status s = listener_->accept(&channel);
      std::lock_guard<std::mutex> lock(mutex_);
      if (!s.ok() && error_.ok()) error_ = s;
      if (channel) {
        accepted_.push_back(std::move(channel));
        cv_.notify_all();
        continue;
      }
      std::vector<pollfd> fds;
      listener_->collect_poll_fds(&fds);
      ::poll(fds.data(), fds.size(), 20);
    }
  }

  Listener* listener_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<RecvChannel>> accepted_;
  Status error_;
  std::thread thread_;  // last: starts once the rest is built
};

// A client that reads the listener's challenge, then answers with its magic and version
// (a plausible start) and more bytes, one a second, never finishing: the classic slow-loris.
class SlowClient {
 public:
  explicit SlowClient(net::Fd fd) : fd_(std::move(fd)), thread_([this] { trickle(); }) {}
  ~SlowClient() {
    stop_ = true;
    thread_.join();
  }
  int fd() const { return fd_.get(); }
  int sent() const { return sent_; }

 private:
  void trickle() {
    uint8_t challenge[24] = {};
    if (!read_within(fd_.get(), challenge, sizeof(challenge), kWaitMs)) return;
    for (size_t i = 0; !stop_; ++i) {
      const uint8_t byte = i < 6 ? challenge[i] : static_cast<uint8_t>('x');
      if (::send(fd_.get(), &byte, 1, MSG_NOSIGNAL) == 1) ++sent_;
      for (int k = 0; k < 100 && !stop_; ++k)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  net::Fd fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sent_{0};
  std::thread thread_;
};

class ListenerHostileTest : public ::testing::TestWithParam<ListenerCase> {
 protected:
  // The handshake deadline of the flood test; a good peer must be through in a quarter.
  static constexpr int64_t kHandshakeMs = 6000;
  static constexpr int64_t kGoodPeerBoundMs = kHandshakeMs / 4;

  void SetUp() override {
    const ListenerCase& c = GetParam();
    for (const auto& [name, value] : c.config)
      config_.push_back(std::make_unique<testing::ScopedConfig>(name, value));
    // Also loads what the transport keeps for the whole process (devices), before any
    // descriptor is counted.
    std::unique_ptr<Transport> probe;
    Status s = create_transport(c.transport, TransportOptions{}, &probe);
    if (!s.ok() && c.needs_device) GTEST_SKIP() << "no usable RDMA device here: " << s.message();
    ASSERT_TRUE(s.ok()) << s.to_string();
  }

  std::unique_ptr<Transport> transport(int64_t handshake_timeout_ms) {
    TransportOptions options;
    options.handshake_timeout_ms = handshake_timeout_ms;
    std::unique_ptr<Transport> t;
    Status s = create_transport(GetParam().transport, options, &t);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return t;
  }

  // A raw client of `listener`; *name gets how the listener names it.
  net::Fd dial(const Listener& listener, std::string* name) {
    net::Fd fd = GetParam().dial(listener.handle());
    EXPECT_TRUE(fd.valid()) << "could not dial the listener: " << std::strerror(errno);
    if (fd.valid()) *name = GetParam().peer_name(fd.get());
    return fd;
  }

  // Refusal warnings that name `peer`.
  size_t refusals_of(const std::string& peer) const {
    return warnings_.count({"refused a connection from " + peer + ": "});
  }
  // Waits at most `ms` until every client in `expected` (name -> connections) was
  // refused; each refused exactly once, with a warning naming it.
  void expect_refused(const std::map<std::string, size_t>& expected, int64_t ms) const {
    Deadline deadline = Deadline::after_ms(ms);
    auto all_refused = [&] {
      for (const auto& [peer, count] : expected)
        if (refusals_of(peer) < count) return false;
      return true;
    };
    while (!all_refused() && !deadline.expired())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (const auto& [peer, count] : expected)
      EXPECT_EQ(refusals_of(peer), count) << "refusal warnings naming " << peer;
  }

  // Connects a good peer through `served` and moves a few bytes each way it can (send
  // to receive); *took_ms gets how long the connection took.
  void expect_good_peer(Transport* t, const Listener& listener, ServedListener* served,
                        int64_t* took_ms) {
    const auto start = Clock::now();
    ChannelPair pair;
    Status s = connect_to(t, listener.handle(), &pair.send);
    ASSERT_TRUE(s.ok()) << "the good peer could not connect: " << s.to_string();
    s = served->take(&pair.recv, kWaitMs);
    ASSERT_TRUE(s.ok()) << "the good peer was not accepted: " << s.to_string();
    *took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    std::vector<uint8_t> out(100000), in(out.size() + 16, 0xee);
    fill(out.data(), out.size(), 7);
    Request *sr = nullptr, *rr = nullptr;
    ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 3, &rr).ok());
    ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), out.size(), 3, &sr).ok());
    size_t received = 0;
    s = wait_both(pair.send.get(), sr, pair.recv.get(), rr, &received);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(received, out.size());
    EXPECT_EQ(first_mismatch(in.data(), out.size(), 7), -1);
  }

  std::vector<std::unique_ptr<testing::ScopedConfig>> config_;
  WarningCapture warnings_;
};

// ---- one of each kind ----

TEST_P(ListenerHostileTest, GarbageTruncatedOversizedAndSlowClientsDoNotDelayAGoodOne) {
  std::unique_ptr<Transport> t = transport(kHandshakeMs);
  ASSERT_NE(t, nullptr);
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(t->listen(0, &listener).ok());
  ServedListener served(listener.get());
  std::map<std::string, size_t> hostile;  // name -> connections
  std::string name;
  // A well-formed response header announcing a 1000-byte payload (at most 256 allowed).
  net::Fd oversized = dial(*listener, &name);
  ++hostile[name];
  const std::string oversized_name = name;
  uint8_t challenge[24], response[32] = {};
  ASSERT_TRUE(read_within(oversized.get(), challenge, sizeof(challenge), kWaitMs));
  std::memcpy(response, challenge, 6);  // magic and version
  put_u16(response + 6, 1000);          // the payload's length
  ASSERT_EQ(::send(oversized.get(), response, sizeof(response), MSG_NOSIGNAL), 32);
  // 4 KiB of random bytes.
  net::Fd garbage = dial(*listener, &name);
  ++hostile[name];
  const std::string garbage_name = name;
  std::vector<uint8_t> junk(4096);
  net::random_bytes(junk.data(), junk.size());
  ASSERT_EQ(::send(garbage.get(), junk.data(), junk.size(), MSG_NOSIGNAL), 4096);
  // Gone after 10 bytes of a 32-byte response.
  net::Fd truncated = dial(*listener, &name);
  ++hostile[name];
  ASSERT_EQ(::send(truncated.get(), junk.data(), 10, MSG_NOSIGNAL), 10);
  truncated.reset();
  SlowClient slow(dial(*listener, &name));
  ++hostile[name];

  int64_t took_ms = 0;
  expect_good_peer(t.get(), *listener, &served, &took_ms);
  EXPECT_LT(took_ms, kGoodPeerBoundMs) << "a hostile client held up the good one";
  RecordProperty("good_peer_ms", static_cast<int>(took_ms));
  // The slow client is still trickling: it goes at the handshake deadline.
  expect_refused(hostile, kHandshakeMs + kWaitMs);
  EXPECT_GE(warnings_.count({oversized_name + ": ", "bad magic"}), 1u);
  EXPECT_GE(warnings_.count({garbage_name + ": ", "bad magic"}), 1u);
  EXPECT_TRUE(closed_by_listener(oversized.get(), 1000));
  EXPECT_TRUE(closed_by_listener(garbage.get(), 1000));
  EXPECT_TRUE(closed_by_listener(slow.fd(), 1000));
  EXPECT_TRUE(served.stop().ok());
}

TEST_P(ListenerHostileTest, SilentClientsExpireAtTheHandshakeDeadline) {
  std::unique_ptr<Transport> quick = transport(300);
  ASSERT_NE(quick, nullptr);
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(quick->listen(0, &listener).ok());
  ServedListener served(listener.get());
  std::string name;
  net::Fd silent = dial(*listener, &name);
  const auto start = Clock::now();
  expect_refused({{name, 1}}, 3000);
  EXPECT_GE(warnings_.count({name + ": ", "deadline"}), 1u);
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(250)) << "expired before its deadline";
  // The listener sent its challenge, then closed the socket.
  EXPECT_TRUE(closed_by_listener(silent.get(), 1000));
  EXPECT_TRUE(served.stop().ok());
}

// ---- many at once ----

// While one client trickles a byte a second, 200 connect and stay silent and 200 more send
// garbage, a good peer connects in a quarter of the handshake deadline and moves data.
// Every hostile connection is refused with a warning naming it (the silent ones at the
// deadline), and once everything is closed, so is every descriptor.
TEST_P(ListenerHostileTest, AFloodAndASlowClientDoNotKeepAGoodPeerOut) {
  constexpr int kSilent = 200, kGarbage = 200;
  const size_t fds_before = open_fds();
  {
    std::unique_ptr<Transport> t = transport(kHandshakeMs);
    ASSERT_NE(t, nullptr);
    std::unique_ptr<Listener> listener;
    ASSERT_TRUE(t->listen(0, &listener).ok());
    ServedListener served(listener.get());
    std::map<std::string, size_t> hostile;
    std::string name;
    SlowClient slow(dial(*listener, &name));
    ++hostile[name];

    std::vector<net::Fd> silent(kSilent), garbage(kGarbage);
    std::vector<std::string> silent_names(kSilent), garbage_names(kGarbage);
    std::atomic<int> silent_dialled{0};
    std::thread flood([&] {
      for (int i = 0; i < kSilent; ++i, ++silent_dialled) {
        silent[i] = GetParam().dial(listener->handle());
        if (silent[i].valid()) silent_names[i] = GetParam().peer_name(silent[i].get());
      }
      std::vector<uint8_t> junk(512);
      for (int i = 0; i < kGarbage; ++i) {
        garbage[i] = GetParam().dial(listener->handle());
        if (!garbage[i].valid()) continue;
        garbage_names[i] = GetParam().peer_name(garbage[i].get());
        net::random_bytes(junk.data(), junk.size());
        (void)::send(garbage[i].get(), junk.data(), junk.size(), MSG_NOSIGNAL);
      }
    });
    // The good peer comes once the silent ones wait, while the garbage ones arrive.
    while (silent_dialled.load() < kSilent)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    int64_t took_ms = 0;
    expect_good_peer(t.get(), *listener, &served, &took_ms);
    flood.join();
    EXPECT_LT(took_ms, kGoodPeerBoundMs) << "the flood held up the good peer";
    RecordProperty("good_peer_ms", static_cast<int>(took_ms));

    for (int i = 0; i < kSilent; ++i) {
      ASSERT_TRUE(silent[i].valid()) << "silent client " << i << " could not connect";
      ++hostile[silent_names[i]];
    }
    for (int i = 0; i < kGarbage; ++i) {
      ASSERT_TRUE(garbage[i].valid()) << "garbage client " << i << " could not connect";
      ++hostile[garbage_names[i]];
    }
    expect_refused(hostile, kHandshakeMs + kWaitMs);
    size_t still_open = 0;
    for (const net::Fd& fd : silent) still_open += closed_by_listener(fd.get(), 100) ? 0 : 1;
    for (const net::Fd& fd : garbage) still_open += closed_by_listener(fd.get(), 100) ? 0 : 1;
    still_open += closed_by_listener(slow.fd(), 100) ? 0 : 1;
    EXPECT_EQ(still_open, 0u) << "hostile connections the listener did not close";
    EXPECT_TRUE(served.stop().ok());
  }
  EXPECT_EQ(open_fds(), fds_before) << "descriptors left open";
}

}  // namespace ciuic::transport::transport_test
