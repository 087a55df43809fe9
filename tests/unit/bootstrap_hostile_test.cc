// Hostile and broken clients of the bootstrap store. Each test checks two things: the
// intruder is dropped (and the drop is logged naming its address), and a real allgather
// among 4 ranks completes in time beside it.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "unit/bootstrap_test_helpers.h"

namespace ciuic::core {
namespace {

using namespace bootstrap_testing;  // NOLINT: test helpers

constexpr int kHandshakeTimeoutMs = 1500;
constexpr int64_t kJobDeadlineMs = 5000;
constexpr int64_t kJobInTimeMs = 2500;

class HostileClientTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = start_server(); }

  // A real job of 4 ranks beside the intruder.
  void expect_job_unharmed() {
    Clock::time_point start = Clock::now();
    EXPECT_EQ(run_allgathers(server_.id, "world", 4, 3, kJobDeadlineMs), "");
    int64_t took = elapsed_ms(start);
    EXPECT_LT(took, kJobInTimeMs);
    RecordProperty("job_ms", static_cast<int>(took));
  }

  testing::ScopedConfig handshake_timeout_{"CIUIC_BOOTSTRAP_HANDSHAKE_TIMEOUT_MS",
                                           std::to_string(kHandshakeTimeoutMs)};
  LogCapture logs_;
  Server server_;
};

TEST_F(HostileClientTest, GarbageBytesAreRefused) {
  std::string me;
  net::Fd fd = raw_connect(server_.id.root, &me);
  Bytes garbage(64);
  net::random_bytes(garbage.data(), garbage.size());
  raw_send(fd.get(), garbage);
  expect_job_unharmed();
  EXPECT_TRUE(closed_by_server(fd.get(), 1000));
  EXPECT_TRUE(logs_.saw(me, "bad magic"));
}

TEST_F(HostileClientTest, TruncatedHandshakeIsDroppedAtItsDeadline) {
  std::string me;
  net::Fd fd = raw_connect(server_.id.root, &me);
  ASSERT_EQ(raw_recv(fd.get(), 24).size(), 24u);  // the challenge
  Bytes response = response_with_version(kBootstrapVersion);
  response.resize(12);
  raw_send(fd.get(), response);  // and then nothing more
  Clock::time_point start = Clock::now();
  expect_job_unharmed();
  EXPECT_TRUE(closed_by_server(fd.get(), kHandshakeTimeoutMs + 1000));
  EXPECT_LT(elapsed_ms(start), kHandshakeTimeoutMs + 1000);
  EXPECT_TRUE(logs_.saw(me, "deadline"));
}

TEST_F(HostileClientTest, TruncatedRequestIsDropped) {
  std::string me;
  net::Fd fd = authenticated(server_.id, "intruder", 0, 1, &me);
  Bytes frame = request_header(4, 100);
  frame.insert(frame.end(), 10, 'x');  // 90 bytes short
  raw_send(fd.get(), frame);
  ::shutdown(fd.get(), SHUT_WR);
  expect_job_unharmed();
  EXPECT_TRUE(closed_by_server(fd.get(), 1000));
  EXPECT_TRUE(logs_.saw(me, "in the middle of a request"));
}

TEST_F(HostileClientTest, WrongVersionIsRefusedOnBothSides) {
  std::string me;
  net::Fd fd = raw_connect(server_.id.root, &me);
  ASSERT_EQ(raw_recv(fd.get(), 24).size(), 24u);
  raw_send(fd.get(), response_with_version(kBootstrapVersion + 1));
  Bytes verdict = raw_recv(fd.get(), 16);
  ASSERT_EQ(verdict.size(), 16u);
  EXPECT_EQ(verdict[4], Handshake::kBadVersion);
  EXPECT_TRUE(closed_by_server(fd.get(), 1000));
  EXPECT_TRUE(logs_.saw(me, "version"));

  // A newer client against this root fails on its own, saying which versions met.
  net::Fd newer;
  ASSERT_TRUE(net::connect_start(server_.id.root, &newer).ok());
  Handshake hs(newer.get(), Handshake::Role::kClient, kBootstrapMagic, kBootstrapVersion + 1,
               server_.id.secret, store::encode_join({"world", 0, 4}), Deadline::after_ms(2000),
               "root");
  Status st;
  for (;;) {
    bool done = false, ready = false;
    st = hs.progress(&done);
    if (!st.ok() || done) break;
    ASSERT_TRUE(net::wait_fd(newer.get(), hs.wanted_events(), 100, &ready).ok());
  }
  EXPECT_NE(st.message().find("version mismatch"), std::string::npos) << st.message();
  expect_job_unharmed();
}

TEST_F(HostileClientTest, OversizedLengthsAndBadFramesDropTheConnection) {
  struct Case {
    Bytes frame;
    const char* logged;
  };
  Bytes bad_magic = request_header(4, 4);
  bad_magic[0] ^= 0xff;
  std::vector<Case> cases = {
      {request_header(4, static_cast<uint32_t>(store::kMaxValueBytes + 1)), "limit 16 MiB"},
      {request_header(300, 1), "tag of 300 bytes"},
      {bad_magic, "bad request magic"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string me;
    // Each intruder knows the secret: the checks after the handshake must hold too.
    net::Fd fd = authenticated(server_.id, "intruder" + std::to_string(i), 0, 1, &me);
    raw_send(fd.get(), cases[i].frame);
    EXPECT_TRUE(closed_by_server(fd.get(), 1000)) << cases[i].logged;
    EXPECT_TRUE(logs_.saw(me, cases[i].logged)) << cases[i].logged;
  }
  expect_job_unharmed();
}

TEST_F(HostileClientTest, OneBytePerSecondClientDoesNotHoldUpTheJob) {
  std::string me;
  net::Fd fd = raw_connect(server_.id.root, &me);
  ASSERT_EQ(raw_recv(fd.get(), 24).size(), 24u);
  std::atomic<bool> stop{false};
  std::thread slow([&] {
    Bytes response = response_with_version(kBootstrapVersion);
    for (size_t i = 0; i < response.size() && !stop.load(); ++i) {
      if (::send(fd.get(), &response[i], 1, MSG_NOSIGNAL) != 1) return;
      for (int t = 0; t < 10 && !stop.load(); ++t) std::this_thread::sleep_for(milliseconds(100));
    }
  });
  expect_job_unharmed();
  EXPECT_TRUE(closed_by_server(fd.get(), kHandshakeTimeoutMs + 1000));
  stop.store(true);
  slow.join();
  EXPECT_TRUE(logs_.saw(me, "deadline"));
}

TEST_F(HostileClientTest, FloodOfIdleConnectionsIsShed) {
  constexpr int kFlood = 200;
  std::vector<net::Fd> flood;
  for (int i = 0; i < kFlood; ++i) flood.push_back(raw_connect(server_.id.root));
  expect_job_unharmed();
  // Beyond the cap the oldest go at once; the rest at the handshake deadline.
  Clock::time_point start = Clock::now();
  int closed = 0;
  std::vector<bool> seen(kFlood, false);
  while (closed < kFlood && elapsed_ms(start) < kHandshakeTimeoutMs + 2000) {
    for (int i = 0; i < kFlood; ++i) {
      if (seen[static_cast<size_t>(i)]) continue;
      char sink[64];
      ssize_t n = ::recv(flood[static_cast<size_t>(i)].get(), sink, sizeof(sink), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        seen[static_cast<size_t>(i)] = true;
        ++closed;
      }
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(closed, kFlood);
  EXPECT_TRUE(logs_.saw("too many connections mid-handshake"));
}

}  // namespace
}  // namespace ciuic::core
