// The fixture of the TCP transport's own tests: the transport over loopback. Connecting,
// waiting, data patterns and checked streams: transport_test_helpers.h.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "support/scoped_config.h"
#include "transports/transport.h"
#include "unit/transport_test_helpers.h"

namespace ciuic::transport::tcp_test {

class TcpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(create_transport("tcp", TransportOptions{}, &transport_).ok());
  }
  testing::ScopedConfig ifname_{"CIUIC_SOCKET_IFNAME", "lo"};
  std::unique_ptr<Transport> transport_;
};

}  // namespace ciuic::transport::tcp_test
