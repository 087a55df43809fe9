// What only the ibverbs transport does, on a real RDMA device (Soft-RoCE in tests/rdma-vm,
// or an adapter): messages striped over several queue pairs, staged and registered on the
// fly; the GPUDirect flush; a peer process that dies. Skips, saying why, where no device is
// usable. The semantics every transport shares (sizes, grouped receives, errors, abort,
// waking): ibverbs_conformance_test.cc.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "unit/transport_test_helpers.h"

namespace ciuic::transport::ib_test {
namespace {

using namespace transport_test;

class IbChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    Status s = create_transport("ibverbs", TransportOptions{}, &transport_, &why);
    if (!s.ok()) GTEST_SKIP() << "no usable RDMA device here: " << s.message();
    DeviceProperties props;
    ASSERT_TRUE(transport_->device_properties(0, &props).ok());
    EXPECT_EQ(props.max_recvs, kMaxGroupedRecvs);
    EXPECT_EQ(props.max_requests, kMaxRequests);
    EXPECT_TRUE(props.pointer_support & kHostMemory);
  }
  testing::ScopedConfig ifname_{"CIUIC_SOCKET_IFNAME", "lo"};
  std::unique_ptr<Transport> transport_;
};

TEST_F(IbChannelTest, StripedOverSeveralQueuePairs) {
  testing::ScopedConfig qps{"CIUIC_IB_QPS_PER_CONN", "3"};
  testing::ScopedConfig bounce{"CIUIC_IB_BOUNCE_BYTES", "64K"};  // larger ones register on the fly
  // Most messages up to 64 KiB, every 150th up to 4 MiB: staged, registered and striped.
  stream_messages(transport_.get(), true, random_stream(400, size_t{64} << 10, size_t{4} << 20, 2),
                  8);
}

// The GPUDirect flush (an RDMA READ through a loopback QP) on host memory, which needs no
// flush but takes the same path when CIUIC_IB_FLUSH_HOST is set; without it, none is made.
TEST_F(IbChannelTest, FlushReadsThroughTheLoopbackQueuePair) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> buf(4096, 1);
  std::unique_ptr<MemoryRegion> region;
  ASSERT_TRUE(pair.recv->register_memory(buf.data(), buf.size(), kHostMemory, &region).ok());
  void* data = buf.data();
  size_t size = buf.size();
  MemoryRegion* r = region.get();
  Request* flush = nullptr;
  ASSERT_TRUE(pair.recv->iflush(1, &data, &size, &r, &flush).ok());
  EXPECT_EQ(flush, nullptr);  // host memory: nothing to wait for
  testing::ScopedConfig host{"CIUIC_IB_FLUSH_HOST", "1"};
  for (int i = 0; i < 40; ++i) {  // more than the request pool: each is freed by test()
    ASSERT_TRUE(pair.recv->iflush(1, &data, &size, &r, &flush).ok());
    ASSERT_NE(flush, nullptr);
    Status s = wait_done(pair.recv.get(), flush, static_cast<size_t*>(nullptr), 10000);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  // The channel still carries data afterwards.
  int tag = 0;
  Request* recv = nullptr;
  ASSERT_TRUE(post_retry(
                  pair.recv.get(),
                  [&](Request** out) { return pair.recv->irecv(1, &data, &size, &tag, &r, out); },
                  &recv)
                  .ok());
  std::vector<uint8_t> msg(300);
  fill(msg.data(), msg.size(), 42);
  Request* send = nullptr;
  ASSERT_TRUE(
      post_retry(
          pair.send.get(),
          [&](Request** out) { return pair.send->isend(msg.data(), msg.size(), 0, nullptr, out); },
          &send)
          .ok());
  size_t got = 0;
  ASSERT_TRUE(wait_done(pair.recv.get(), recv, &got).ok());
  EXPECT_EQ(got, msg.size());
  EXPECT_EQ(first_mismatch(buf.data(), got, 42), -1);
  ASSERT_TRUE(wait_done(pair.send.get(), send, static_cast<size_t*>(nullptr)).ok());
}

// A peer process killed mid-conversation: the survivor's pending request fails, naming the
// connection, within the grace period — not at a timeout.
TEST_F(IbChannelTest, KilledPeerIsAnErrorNotAHang) {
  {
    std::unique_ptr<Listener> listener;
    ASSERT_TRUE(transport_->listen(0, &listener).ok());
    ConnectHandle handle = listener->handle();
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // A fresh transport: the parent's verbs objects are not the child's to use.
      std::unique_ptr<Transport> t;
      if (!create_transport("ibverbs", TransportOptions{}, &t).ok()) _exit(2);
      std::unique_ptr<Connector> c;
      std::unique_ptr<SendChannel> send;
      if (!t->connect(0, handle, &c).ok()) _exit(3);
      Deadline d = Deadline::after_ms(20000);
      while (send == nullptr && !d.expired())
        if (!c->progress(&send).ok()) _exit(4);
      if (send == nullptr) _exit(5);
      char byte = 'x';
      Request* r = nullptr;
      while (r == nullptr && !d.expired())
        if (!send->isend(&byte, 1, 0, nullptr, &r).ok()) _exit(6);
      bool done = false;
      while (!done && !d.expired())
        if (!send->test(r, &done, nullptr).ok()) _exit(7);
      pause();  // until killed
      _exit(0);
    }
    std::unique_ptr<RecvChannel> recv;
    Deadline d = Deadline::after_ms(20000);
    while (recv == nullptr && !d.expired()) {
      ASSERT_TRUE(listener->accept(&recv).ok());
      std::vector<pollfd> fds;
      listener->collect_poll_fds(&fds);
      if (recv == nullptr) sleep_on(fds);
    }
    ASSERT_NE(recv, nullptr);
    char got = 0;
    void* data = &got;
    size_t size = 1;
    int tag = 0;
    MemoryRegion* region = nullptr;
    Request* r = nullptr;
    ASSERT_TRUE(post_retry(
                    recv.get(),
                    [&](Request** out) { return recv->irecv(1, &data, &size, &tag, &region, out); },
                    &r)
                    .ok());
    ASSERT_TRUE(wait_done(recv.get(), r, static_cast<size_t*>(nullptr)).ok());
    EXPECT_EQ(got, 'x');
    ASSERT_TRUE(post_retry(
                    recv.get(),
                    [&](Request** out) { return recv->irecv(1, &data, &size, &tag, &region, out); },
                    &r)
                    .ok());
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    auto start = Clock::now();
    Status s = wait_done(recv.get(), r, static_cast<size_t*>(nullptr), 15000);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.message();
    EXPECT_NE(s.message().find("closed by the sender"), std::string::npos) << s.message();
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  }
}

}  // namespace
}  // namespace ciuic::transport::ib_test
