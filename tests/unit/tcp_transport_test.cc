// What only the TCP transport does: its one device is the chosen interface, messages are
// striped over several sockets, with and without I/O threads, and a sender's abort brings
// socket 0 to a frame boundary for its reason within a bounded wait. The semantics every
// transport shares (sizes, grouped receives, errors, abort, peers that go away, waking):
// transport_conformance_test.cc. Connection setup and hostile clients:
// tcp_listener_test.cc; the I/O threads: tcp_workers_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "unit/tcp_test_helpers.h"

namespace ciuic::transport {
namespace {

using tcp_test::TcpTransportTest;
using testing::ScopedConfig;
using namespace transport_test;

TEST_F(TcpTransportTest, DeviceIsTheChosenInterfaceAndHostOnly) {
  ASSERT_EQ(transport_->device_count(), 1);
  DeviceProperties p;
  ASSERT_TRUE(transport_->device_properties(0, &p).ok());
  EXPECT_EQ(p.name, "lo");
  EXPECT_EQ(p.pointer_support, kHostMemory);
  Status s = transport_->device_properties(1, &p);
  EXPECT_NE(s.message().find("tcp transport has one device (0), not device 1"), std::string::npos)
      << s.message();
}

// (stripes, I/O threads)
class TcpStripesTest : public TcpTransportTest,
                       public ::testing::WithParamInterface<std::tuple<int, int>> {};

TEST_P(TcpStripesTest, StripedMessagesArriveIntact) {
  const int stripes = std::get<0>(GetParam());
  ScopedConfig sockets("CIUIC_TCP_SOCKETS", std::to_string(stripes));
  ScopedConfig threads("CIUIC_TCP_THREADS", std::to_string(std::get<1>(GetParam())));
  ScopedConfig min_piece("CIUIC_TCP_MIN_STRIPE_BYTES", "16K");  // split even mid-size messages
  ChannelPair probe;
  ASSERT_TRUE(connect_pair(transport_.get(), &probe).ok());
  std::string expected =
      "(tcp, " + std::to_string(stripes) + (stripes == 1 ? " socket)" : " sockets)");
  EXPECT_NE(probe.send->peer_description().find(expected), std::string::npos)
      << probe.send->peer_description();
  EXPECT_NE(probe.recv->peer_description().find(expected), std::string::npos);
  stream_messages(transport_.get(), false,
                  random_stream(400, size_t{8} << 20, size_t{8} << 20, 12345), 6);
}

INSTANTIATE_TEST_SUITE_P(Stripes, TcpStripesTest,
                         ::testing::Combine(::testing::Values(1, 2, 3, 8), ::testing::Values(0, 2)),
                         [](const ::testing::TestParamInfo<std::tuple<int, int>>& param) {
                           return std::to_string(std::get<0>(param.param)) + "Sockets" +
                                  std::to_string(std::get<1>(param.param)) + "Threads";
                         });

void expect_remote(const Status& s, const std::string& text) {
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find(text), std::string::npos)
      << "no \"" << text << "\" in " << s.message();
}

// Small buffers, so that a message below two minimum pieces (whole on socket 0) cannot
// leave in one go: socket 0 stays in the middle of it.
class TcpAbortTest : public TcpTransportTest {
 protected:
  ScopedConfig buffers_{"CIUIC_TCP_BUFFER_BYTES", "64K"};
  ScopedConfig min_piece_{"CIUIC_TCP_MIN_STRIPE_BYTES", "1M"};
  ScopedConfig threads_{"CIUIC_TCP_THREADS", "0"};
  const size_t small_ = size_t{3} << 19;  // 1.5 MiB: below 2 MiB, so not split

  // Posts `out` and checks that socket 0 could not take all of it.
  void send_part_of(SendChannel* send, const std::vector<uint8_t>& out) {
    Request* sr = nullptr;
    ASSERT_TRUE(isend_retry(send, out.data(), out.size(), 0, &sr).ok());
    bool done = true;
    ASSERT_TRUE(send->test(sr, &done, nullptr).ok());
    ASSERT_FALSE(done) << "the sockets took all " << out.size() << " bytes: nothing to prove";
  }
};

// abort() while socket 0 is in the middle of a small message, with 4 sockets and with
// one: the receiver, reading, gets that message whole, and then the sender's reason.
TEST_F(TcpAbortTest, AbortInTheMiddleOfASmallMessageFinishesItThenSendsTheReason) {
  for (const char* sockets : {"4", "1"}) {
    SCOPED_TRACE(std::string(sockets) + " sockets");
    ScopedConfig stripes("CIUIC_TCP_SOCKETS", sockets);
    ChannelPair pair;
    ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
    std::vector<uint8_t> out(small_), in(small_);
    fill(out.data(), out.size(), 5);
    send_part_of(pair.send.get(), out);
    if (HasFatalFailure()) return;
    Status first, second;
    std::thread receiver([&] {
      Request* rr = nullptr;
      first = irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr);
      if (first.ok()) first = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr));
      if (!first.ok()) return;
      second = irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr);
      if (second.ok()) second = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr));
    });
    pair.send->abort("stop after this one");  // the receiver makes room as it reads
    receiver.join();
    ASSERT_TRUE(first.ok()) << first.to_string();
    EXPECT_EQ(first_mismatch(in.data(), in.size(), 5), -1);
    expect_remote(second, "aborted the connection: stop after this one");
  }
}

// A receiver that stopped reading makes no room: the sender's abort gives up on the reason
// at its deadline instead of waiting on the peer, and the receiver, once it reads again,
// learns that the connection closed in the middle of that message.
TEST_F(TcpAbortTest, AbortTowardsAReceiverThatStoppedReadingReturnsBoundedly) {
  ScopedConfig stripes("CIUIC_TCP_SOCKETS", "4");
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(small_), in(small_);
  send_part_of(pair.send.get(), out);
  if (HasFatalFailure()) return;
  const Deadline limit = Deadline::after_ms(3000);
  pair.send->abort("nobody reads");
  EXPECT_FALSE(limit.expired()) << "abort() must not wait on a receiver that does not read";
  Request* rr = nullptr;
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  expect_remote(wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr)),
                "closed by the peer during a 1572864-byte receive");
}

}  // namespace
}  // namespace ciuic::transport
