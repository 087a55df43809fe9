// What only the shm transport does, inside one process: its device and its place in the
// registry, the smallest ring wrapping records mid-header and mid-payload, hostile clients
// on its Unix socket, handles from another host or of another transport, and the handle's
// bytes. The semantics every transport shares (sizes, grouped receives, errors, abort, peers
// that go away, waking), on both large-message paths: transport_conformance_test.cc.
// Separate processes, killed peers and privilege checks: shm_process_test.cc.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "base/net.h"
#include "transports/shm/shm_wire.h"
#include "unit/shm_test_helpers.h"

namespace ciuic::transport {
namespace {

using testing::ScopedConfig;
using namespace shm_test;

INSTANTIATE_TEST_SUITE_P(Large, ShmPathTest, ::testing::Values("cma", "copy"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST_F(ShmTransportTest, DeviceIsHostMemoryOnThisHost) {
  ASSERT_EQ(transport_->device_count(), 1);
  DeviceProperties p;
  ASSERT_TRUE(transport_->device_properties(0, &p).ok());
  EXPECT_EQ(p.name, "shm");
  EXPECT_EQ(p.pointer_support, kHostMemory);
  EXPECT_GT(p.speed_mbps, 0);
  EXPECT_GT(p.latency_us, 0);
}

TEST_F(ShmTransportTest, RegisteredForSameHostPeersAndNeverPickedByAuto) {
  bool found = false;
  for (const TransportEntry& e : registered_transports()) {
    if (std::string(e.name) != "shm") continue;
    found = true;
    EXPECT_TRUE(e.same_host_only);
  }
  EXPECT_TRUE(found);
  ScopedConfig ifname("CIUIC_SOCKET_IFNAME", "lo");
  std::unique_ptr<Transport> picked;
  std::string why;
  if (create_transport("auto", TransportOptions{}, &picked, &why).ok()) {
    EXPECT_STRNE(picked->name(), "shm") << why;
  }
}

// The smallest ring and a small eager size: records wrap at the ring's end mid-header
// boundary and mid-payload, large messages stream through many times the ring.
TEST_P(ShmPathTest, SmallRingWrapsAndStreamsIntact) {
  ScopedConfig ring("CIUIC_SHM_RING_BYTES", "64K");
  ScopedConfig eager("CIUIC_SHM_EAGER_BYTES", "1000");
  stream_messages(transport_.get(), false,
                  random_stream(800, size_t{256} << 10, size_t{256} << 10, 4242), 6);
}

// Raw clients on the listener's socket: one silent, one sending garbage. Neither delays a
// real connection, and neither yields a channel.
TEST_F(ShmTransportTest, SilentAndGarbageClientsDelayNoOne) {
  ScopedConfig ifname("CIUIC_SOCKET_IFNAME", "lo");
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  shm::HandleContents contents;
  ASSERT_TRUE(shm::decode_handle(listener->handle(), &contents).ok());
  auto raw = [&] {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, contents.name.data(), contents.name.size());
    socklen_t len =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + contents.name.size());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), len), 0) << std::strerror(errno);
    return net::Fd(fd);
  };
  net::Fd silent = raw();
  net::Fd garbage = raw();
  std::vector<uint8_t> junk(4096, 0x41);
  ASSERT_GT(::send(garbage.get(), junk.data(), junk.size(), MSG_NOSIGNAL), 0);
  ChannelPair pair;
  Status s = connect_pair(transport_.get(), &pair, listener.get());
  ASSERT_TRUE(s.ok()) << s.to_string();
  std::vector<uint8_t> out(777), in(777);
  fill(out.data(), out.size(), 5);
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request *rr = nullptr, *sr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  ASSERT_TRUE(wait_both(pair.send.get(), sr, pair.recv.get(), rr, nullptr).ok());
  EXPECT_EQ(first_mismatch(in.data(), in.size(), 5), -1);
  std::unique_ptr<RecvChannel> extra;
  ASSERT_TRUE(listener->accept(&extra).ok());
  EXPECT_EQ(extra, nullptr);
}

TEST_F(ShmTransportTest, HandlesFromElsewhereAreRefusedWithAReason) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  std::unique_ptr<Connector> connector;

  ConnectHandle other_host = listener->handle();
  other_host.bytes[24] ^= 0xff;  // first byte of the boot id
  Status s = transport_->connect(0, other_host, &connector);
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << s.to_string();
  EXPECT_NE(s.message().find("another host"), std::string::npos) << s.message();

  ConnectHandle tcp_handle = listener->handle();
  tcp_handle.bytes[0] ^= 0xff;
  s = transport_->connect(0, tcp_handle, &connector);
  EXPECT_NE(s.message().find("not a shm transport handle"), std::string::npos) << s.message();

  // A listener that is gone: the name no longer exists.
  ConnectHandle gone = listener->handle();
  listener.reset();
  s = transport_->connect(0, gone, &connector);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("is the listening process alive"), std::string::npos) << s.message();
}

// The handle's bytes are those earlier builds wrote: {u32 magic "CSHM", u16 version 1,
// u16 name length, token, boot id, u64 netns inode, u32 pid, u32 0, name}.
TEST(ShmWire, HandleBytesAreThoseOfEarlierBuilds) {
  shm::HandleContents in;
  in.name = "ciuic-shm-4242-0011223344556677";
  for (size_t i = 0; i < 16; ++i) in.token[i] = static_cast<uint8_t>(i * 7 + 1);
  for (size_t i = 0; i < 16; ++i) in.boot_id[i] = static_cast<uint8_t>(0xa0 + i);
  in.netns_inode = 4026531992ull;
  in.pid = 4242;
  ConnectHandle h;
  shm::encode_handle(in, &h);
  std::string hex;
  char byte[3];
  for (size_t i = 0; i < kHandleBytes; ++i) {
    std::snprintf(byte, sizeof(byte), "%02x", h.bytes[i]);
    hex += byte;
  }
  const std::string expected =
      "4353484d01001f0001080f161d242b323940474e555c636aa0a1a2a3a4a5a6a7a8a9aaabacadaeaf980000f0"
      "00000000921000000000000063697569632d73686d2d343234322d30303131323233333434353536363737";
  EXPECT_EQ(hex, expected + std::string(2 * kHandleBytes - expected.size(), '0'));
  shm::HandleContents out;
  ASSERT_TRUE(shm::decode_handle(h, &out).ok());
  EXPECT_EQ(out.name, in.name);
  EXPECT_EQ(out.token, in.token);
  EXPECT_EQ(std::memcmp(out.boot_id, in.boot_id, 16), 0);
  EXPECT_EQ(out.netns_inode, in.netns_inode);
  EXPECT_EQ(out.pid, in.pid);
}

}  // namespace
}  // namespace ciuic::transport
