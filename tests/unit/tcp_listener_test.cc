// The TCP transport's connection setup: the handle, the stripe layout, and a listener
// that keeps serving good clients while garbage, truncated, oversized, slow and silent
// ones are refused (and named in a warning). A wrong token:
// transport_conformance_test.cc.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "base/net.h"
#include "transports/tcp/tcp_wire.h"
#include "unit/tcp_test_helpers.h"

namespace ciuic::transport {
namespace {

using tcp_test::TcpTransportTest;
using namespace transport_test;

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

// ---- hostile and broken clients ----

class TcpListenerHostileTest : public TcpTransportTest {
 protected:
  bool warned_about(const std::string& text) const { return warnings_.saw(text); }

  // A raw TCP client of the listener; returns its local address as text.
  net::Fd raw_client(Listener* l, std::string* local) {
    common::SocketHandle h;
    EXPECT_TRUE(tcp::kHandle.decode(l->handle(), &h).ok());
    net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(fd.get(), h.address.sa(), h.address.length), 0);
    net::SocketAddress me;
    me.length = sizeof(me.storage);
    ::getsockname(fd.get(), me.sa(), &me.length);
    *local = me.to_string();
    return fd;
  }

  WarningCapture warnings_;
};

TEST_F(TcpListenerHostileTest, GarbageAndSlowClientsDoNotDelayAGoodOne) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  std::string garbage_addr, slow_addr, truncated_addr, oversized_addr;
  net::Fd oversized = raw_client(listener.get(), &oversized_addr);
  {  // a well-formed response header announcing a 1000-byte payload (at most 256 allowed)
    uint8_t challenge[24], response[32] = {};
    ssize_t got = 0;
    std::unique_ptr<RecvChannel> none;
    for (int i = 0; i < 1000 && got < 24; ++i) {  // the listener sends it from accept()
      ASSERT_TRUE(listener->accept(&none).ok());
      ssize_t n = ::recv(oversized.get(), challenge + got, sizeof(challenge) - got, MSG_DONTWAIT);
      if (n > 0) got += n;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(got, 24);
    std::memcpy(response, challenge, 6);  // magic and version
    tcp::put_u16(response + 6, 1000);
    ASSERT_EQ(::send(oversized.get(), response, sizeof(response), MSG_NOSIGNAL), 32);
  }
  net::Fd garbage = raw_client(listener.get(), &garbage_addr);
  net::Fd slow = raw_client(listener.get(), &slow_addr);
  net::Fd truncated = raw_client(listener.get(), &truncated_addr);
  std::vector<uint8_t> junk(4096);
  net::random_bytes(junk.data(), junk.size());
  ASSERT_EQ(::send(garbage.get(), junk.data(), junk.size(), MSG_NOSIGNAL), 4096);
  ASSERT_EQ(::send(truncated.get(), junk.data(), 10, MSG_NOSIGNAL), 10);
  truncated.reset();  // gone after 10 bytes of a 32-byte response
  std::atomic<bool> stop{false};
  std::thread trickle([&] {  // one byte a second, the classic slow-loris
    while (!stop.load()) {
      ::send(slow.get(), "x", 1, MSG_NOSIGNAL);
      for (int i = 0; i < 100 && !stop.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  auto start = Clock::now();
  ChannelPair pair;
  Status good = connect_pair(transport_.get(), &pair, listener.get());
  auto elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  stop = true;
  trickle.join();
  ASSERT_TRUE(good.ok()) << good.to_string();
  EXPECT_LT(elapsed_ms, 2000) << "a hostile client held up the good one";
  // The good channel works.
  uint8_t out[3] = {1, 2, 3}, in[3] = {};
  void* data = in;
  size_t cap = 3;
  int tag = 0;
  Request *rr = nullptr, *sr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(out, 3, 0, nullptr, &sr).ok());
  ASSERT_TRUE(wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr)).ok());
  EXPECT_EQ(std::memcmp(in, out, 3), 0);
  EXPECT_TRUE(warned_about(garbage_addr)) << "garbage sender not named in a warning";
  EXPECT_TRUE(warned_about(truncated_addr)) << "truncated client not named in a warning";
  EXPECT_TRUE(warned_about(oversized_addr)) << "oversized payload not named in a warning";
}

TEST_F(TcpListenerHostileTest, SilentClientsExpireAtTheHandshakeDeadline) {
  TransportOptions options;
  options.handshake_timeout_ms = 300;
  std::unique_ptr<Transport> quick;
  ASSERT_TRUE(create_transport("tcp", options, &quick).ok());
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(quick->listen(0, &listener).ok());
  std::string silent_addr;
  net::Fd silent = raw_client(listener.get(), &silent_addr);
  std::unique_ptr<RecvChannel> none;
  Deadline deadline = Deadline::after_ms(3000);
  while (!warned_about(silent_addr) && !deadline.expired()) {
    ASSERT_TRUE(listener->accept(&none).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(warned_about(silent_addr)) << "the silent client was never expired";
  // Its socket was closed by the listener.
  char byte;
  pollfd p{silent.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 1000), 1);
  EXPECT_LE(::recv(silent.get(), &byte, 1, MSG_DONTWAIT), 24);  // the challenge, then EOF
}

}  // namespace
}  // namespace ciuic::transport
