// Helpers shared by the TCP transport tests: connecting a pair of channels from two
// threads, waiting on requests in poll(), and data patterns that expose misplaced bytes.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "support/scoped_config.h"
#include "transports/transport.h"

namespace ciuic::transport::tcp_test {

constexpr int64_t kWaitMs = 20000;

inline void sleep_on(const std::vector<pollfd>& collected) {
  std::vector<pollfd> fds = collected;
  if (fds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  ::poll(fds.data(), fds.size(), 50);
}

struct ChannelPair {
  std::unique_ptr<SendChannel> send;
  std::unique_ptr<RecvChannel> recv;
};

// Accepts on one thread while this one connects, as two ranks would.
inline Status connect_pair(Transport* t, ChannelPair* out, Listener* listener = nullptr) {
  std::unique_ptr<Listener> own;
  if (listener == nullptr) {
    CIUIC_RETURN_IF_ERROR(t->listen(0, &own));
    listener = own.get();
  }
  Status accept_status;
  std::thread acceptor([&] {
    Deadline deadline = Deadline::after_ms(kWaitMs);
    while (out->recv == nullptr && accept_status.ok()) {
      accept_status = listener->accept(&out->recv);
      if (out->recv != nullptr || !accept_status.ok()) break;
      if (deadline.expired()) accept_status = timeout_error("accept timed out");
      std::vector<pollfd> fds;
      listener->collect_poll_fds(&fds);
      sleep_on(fds);
    }
  });
  std::unique_ptr<Connector> connector;
  Status s = t->connect(0, listener->handle(), &connector);
  Deadline deadline = Deadline::after_ms(kWaitMs);
  while (s.ok() && out->send == nullptr) {
    s = connector->progress(&out->send);
    if (out->send != nullptr || !s.ok()) break;
    if (deadline.expired()) s = timeout_error("connect timed out");
    std::vector<pollfd> fds;
    connector->collect_poll_fds(&fds);
    sleep_on(fds);
  }
  acceptor.join();  // on a connect failure it gives up at its own deadline
  return s.ok() ? accept_status : s;
}

template <typename ChannelT, typename SizeT>
Status wait_done(ChannelT* channel, Request* request, SizeT* sizes, int64_t ms = kWaitMs) {
  Deadline deadline = Deadline::after_ms(ms);
  for (;;) {
    bool done = false;
    CIUIC_RETURN_IF_ERROR(channel->test(request, &done, sizes));
    if (done) return Status::Ok();
    if (deadline.expired()) return timeout_error("request not done in time");
    std::vector<pollfd> fds;
    channel->collect_poll_fds(&fds);
    sleep_on(fds);
  }
}

// Bytes that depend on (message, offset), so a misplaced or shifted piece is caught.
inline uint8_t pattern(uint64_t message, uint64_t offset) {
  uint64_t x = (message + 1) * 0x9E3779B97F4A7C15ULL ^ (offset >> 3) * 0xBF58476D1CE4E5B9ULL;
  return static_cast<uint8_t>((x >> 29) ^ (x >> 47) ^ offset);
}
inline void fill(uint8_t* p, size_t size, uint64_t message) {
  for (size_t i = 0; i < size; ++i) p[i] = pattern(message, i);
}
// The first wrong offset, or -1.
inline int64_t first_mismatch(const uint8_t* p, size_t size, uint64_t message) {
  for (size_t i = 0; i < size; ++i) {
    if (p[i] != pattern(message, i)) return static_cast<int64_t>(i);
  }
  return -1;
}

class TcpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(create_transport("tcp", TransportOptions{}, &transport_).ok());
  }
  testing::ScopedConfig ifname_{"CIUIC_SOCKET_IFNAME", "lo"};
  std::unique_ptr<Transport> transport_;
};

}  // namespace ciuic::transport::tcp_test
