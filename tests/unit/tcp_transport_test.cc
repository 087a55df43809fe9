// What only the TCP transport does: its one device is the chosen interface, and messages
// are striped over several sockets, with and without I/O threads. The semantics every
// transport shares (sizes, grouped receives, errors, abort, peers that go away, waking):
// transport_conformance_test.cc. Connection setup and hostile clients:
// tcp_listener_test.cc; the I/O threads: tcp_workers_test.cc.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

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

}  // namespace
}  // namespace ciuic::transport
