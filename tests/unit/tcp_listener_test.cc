// The TCP transport's connection setup: the handle and the stripe layout. Its listener
// against garbage, truncated, oversized, slow, silent and flooding clients:
// listener_hostile_test.cc (every transport's); a wrong token: transport_conformance_test.cc.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <utility>

#include "base/net.h"
#include "transports/tcp/tcp_wire.h"
#include "unit/tcp_test_helpers.h"

namespace ciuic::transport {
namespace {

using tcp_test::TcpTransportTest;

TEST_F(TcpTransportTest, HandleFitsAndNamesTheLoopbackListener) {
  static_assert(common::kSocketHandleBytes <= kHandleBytes);
  std::unique_ptr<Listener> a, b;
  ASSERT_TRUE(transport_->listen(0, &a).ok());
  ASSERT_TRUE(transport_->listen(0, &b).ok());
  common::SocketHandle ca, cb;
  ASSERT_TRUE(tcp::kHandle.decode(a->handle(), &ca).ok());
  ASSERT_TRUE(tcp::kHandle.decode(b->handle(), &cb).ok());
  EXPECT_TRUE(ca.address.is_loopback());  // bound to lo's address, not to every interface
  EXPECT_NE(ca.address.port(), 0);
  EXPECT_NE(ca.token, cb.token);  // each listener has its own token
  for (size_t i = common::kSocketHandleBytes; i < kHandleBytes; ++i) EXPECT_EQ(a->handle().bytes[i], 0);
  ConnectHandle bad = a->handle();
  bad.bytes[0] ^= 0xff;
  std::unique_ptr<Connector> c;
  EXPECT_EQ(transport_->connect(0, bad, &c).code(), CIUIC_ERR_INVALID_ARGUMENT);
}

// The handle's bytes are those earlier builds wrote (so old and new builds, and the NCCL
// plugin's handles, agree): {u32 magic "CTCP", u16 version 1, u16 0, address, token}.
TEST(TcpWire, HandleBytesAreThoseOfEarlierBuilds) {
  const char* expected[] = {
      "43544350010000000200d7110a01020300000000000000000000000001080f161d242b323940474e555c636a",
      "43544350010000000a00fffffe80000000000000000000000001000201080f161d242b323940474e555c636a"};
  const char* addresses[] = {"10.1.2.3:4567", "[fe80::1:2]:65535"};
  for (int k = 0; k < 2; ++k) {
    common::SocketHandle in;
    ASSERT_TRUE(net::parse_address(addresses[k], 0, &in.address).ok());
    for (size_t i = 0; i < 16; ++i) in.token[i] = static_cast<uint8_t>(i * 7 + 1);
    ConnectHandle h;
    tcp::kHandle.encode(in, &h);
    std::string hex;
    char byte[3];
    for (size_t i = 0; i < kHandleBytes; ++i) {
      std::snprintf(byte, sizeof(byte), "%02x", h.bytes[i]);
      hex += byte;
    }
    EXPECT_EQ(hex, std::string(expected[k]) + std::string(2 * (kHandleBytes - 44), '0'));
    common::SocketHandle out;
    ASSERT_TRUE(tcp::kHandle.decode(h, &out).ok());
    EXPECT_EQ(out.address.to_string(), in.address.to_string());
    EXPECT_EQ(out.token, in.token);
    // Another transport's magic, another version, a reserved field that is not 0.
    for (auto [offset, text] : {std::pair{0, "not a TCP transport handle"},
                                {4, "TCP handle has wire version"}, {6, "reserved field"}}) {
      ConnectHandle bad = h;
      bad.bytes[offset] ^= 0x40;
      Status s = tcp::kHandle.decode(bad, &out);
      EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT);
      EXPECT_NE(s.message().find(text), std::string::npos) << s.message();
    }
  }
}

TEST(TcpStripeLayout, CoversTheMessageInOrder) {
  for (int stripes : {1, 2, 3, 8, 16}) {
    for (uint64_t size : {0ull, 1ull, 4095ull, 65536ull, 1000003ull, 64ull << 20}) {
      tcp::StripeLayout l = tcp::split_message(size, stripes, 65536);
      ASSERT_GE(l.pieces, 1);
      ASSERT_LE(l.pieces, stripes);
      EXPECT_EQ(l.offset(0), 0u);
      uint64_t total = 0;
      for (int s = 0; s < stripes; ++s) {
        if (s > 0 && l.length(s) > 0) {
          EXPECT_EQ(l.offset(s), l.offset(s - 1) + l.length(s - 1));
        }
        total += l.length(s);
      }
      EXPECT_EQ(total, size);
      if (size < 2 * 65536) {
        EXPECT_EQ(l.pieces, 1) << "below two minimum pieces stays whole";
      }
    }
  }
}

}  // namespace
}  // namespace ciuic::transport
