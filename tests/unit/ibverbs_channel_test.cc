// The ibverbs transport on a real RDMA device (Soft-RoCE in tests/rdma-vm, or an adapter):
// connection setup, random-size streams with every byte checked, grouped tagged receives,
// registered and unregistered buffers, a send too large for its buffer, abort, and a peer
// that dies. Skips, saying why, where no device is usable.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "tcp_test_helpers.h"

namespace ciuic::transport::ib_test {
namespace {

using tcp_test::ChannelPair;
using tcp_test::connect_pair;
using tcp_test::fill;
using tcp_test::first_mismatch;
using tcp_test::sleep_on;
using tcp_test::wait_done;

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

// Posts with retry: a null request means "not now".
template <typename Post, typename Channel>
Status post_retry(Channel* channel, Post post, Request** request) {
  Deadline deadline = Deadline::after_ms(tcp_test::kWaitMs);
  for (;;) {
    CIUIC_RETURN_IF_ERROR(post(request));
    if (*request != nullptr) return Status::Ok();
    if (deadline.expired()) return timeout_error("post not accepted in time");
    std::vector<pollfd> fds;
    channel->collect_poll_fds(&fds);
    sleep_on(fds);
  }
}

struct Message {
  size_t size;
  size_t capacity;
  int tag;
  bool registered;
};

std::vector<Message> random_messages(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Message> out;
  for (int i = 0; i < count; ++i) {
    Message m;
    if (i % 150 == 7) {
      m.size = rng() % ((4u << 20) + 1);  // a few up to 4 MiB: staged, registered and striped paths
    } else {
      int exponent = static_cast<int>(rng() % 17);  // most up to 64 KiB: rxe under TCG is slow
      m.size = exponent == 0 ? 0 : rng() % (size_t{1} << exponent);
    }
    m.capacity = m.size + (rng() % 3 == 0 ? rng() % 5000 : 0);
    m.tag = static_cast<int>(rng() % 4);
    m.registered = rng() % 2 == 0;
    out.push_back(m);
  }
  return out;
}

void stream(Transport* transport, int count, uint32_t seed) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport, &pair).ok());
  std::vector<Message> messages = random_messages(count, seed);
  constexpr int kWindow = 8;
  Status send_status;
  std::thread sender([&] {
    std::vector<std::vector<uint8_t>> buffers(kWindow);
    std::vector<std::unique_ptr<MemoryRegion>> regions(kWindow);
    std::vector<Request*> inflight(kWindow, nullptr);
    for (int i = 0; i < count && send_status.ok(); ++i) {
      int slot = i % kWindow;
      if (inflight[slot] != nullptr) {
        send_status = wait_done(pair.send.get(), inflight[slot], static_cast<size_t*>(nullptr));
        if (!send_status.ok()) return;
      }
      const Message& m = messages[static_cast<size_t>(i)];
      buffers[slot].assign(std::max<size_t>(m.size, 1), 0);
      fill(buffers[slot].data(), m.size, static_cast<uint64_t>(i));
      regions[slot].reset();
      if (m.registered) {
        send_status = pair.send->register_memory(buffers[slot].data(), buffers[slot].size(),
                                                 kHostMemory, &regions[slot]);
        if (!send_status.ok()) return;
      }
      send_status = post_retry(pair.send.get(), [&](Request** r) {
        return pair.send->isend(buffers[slot].data(), m.size, m.tag, regions[slot].get(), r);
      }, &inflight[slot]);
    }
    for (Request* r : inflight)
      if (r != nullptr && send_status.ok())
        send_status = wait_done(pair.send.get(), r, static_cast<size_t*>(nullptr));
  });
  std::vector<std::vector<uint8_t>> buffers(kWindow);
  std::vector<std::unique_ptr<MemoryRegion>> regions(kWindow);
  std::vector<Request*> inflight(kWindow, nullptr);
  auto check = [&](int i) {
    int slot = i % kWindow;
    size_t got = 0;
    Status s = wait_done(pair.recv.get(), inflight[slot], &got);
    ASSERT_TRUE(s.ok()) << "message " << i << ": " << s.message();
    const Message& m = messages[static_cast<size_t>(i)];
    ASSERT_EQ(got, m.size) << "message " << i;
    ASSERT_EQ(first_mismatch(buffers[slot].data(), m.size, static_cast<uint64_t>(i)), -1)
        << "message " << i << " of " << m.size << " bytes";
    inflight[slot] = nullptr;
  };
  for (int i = 0; i < count; ++i) {
    int slot = i % kWindow;
    if (inflight[slot] != nullptr) {
      check(i - kWindow);
      if (::testing::Test::HasFatalFailure()) break;
    }
    const Message& m = messages[static_cast<size_t>(i)];
    buffers[slot].assign(std::max<size_t>(m.capacity, 1), 0xee);
    regions[slot].reset();
    if (!m.registered) {  // the opposite of the sender's choice: all four combinations occur
      ASSERT_TRUE(pair.recv->register_memory(buffers[slot].data(), buffers[slot].size(),
                                             kHostMemory, &regions[slot]).ok());
    }
    void* data = buffers[slot].data();
    MemoryRegion* region = regions[slot].get();
    ASSERT_TRUE(post_retry(pair.recv.get(), [&](Request** r) {
      return pair.recv->irecv(1, &data, &m.capacity, &m.tag, &region, r);
    }, &inflight[slot]).ok());
  }
  for (int i = std::max(0, count - kWindow); i < count && !::testing::Test::HasFatalFailure(); ++i)
    if (inflight[i % kWindow] != nullptr) check(i);
  sender.join();
  EXPECT_TRUE(send_status.ok()) << send_status.message();
}

TEST_F(IbChannelTest, ThousandsOfRandomSizesEveryByteChecked) {
  stream(transport_.get(), 2000, 1);
}

TEST_F(IbChannelTest, StripedOverSeveralQueuePairs) {
  testing::ScopedConfig qps{"CIUIC_IB_QPS_PER_CONN", "3"};
  testing::ScopedConfig bounce{"CIUIC_IB_BOUNCE_BYTES", "64K"};  // larger ones register on the fly
  stream(transport_.get(), 400, 2);
}

TEST_F(IbChannelTest, GroupedReceiveMatchesTags) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  for (int round = 0; round < 40; ++round) {  // more rounds than FIFO slots
    std::vector<uint8_t> a(100, 0), b(5000, 0), c(70000, 0);
    void* data[3] = {a.data(), b.data(), c.data()};
    size_t sizes[3] = {a.size(), b.size(), c.size()};
    int tags[3] = {7, 3, 7};
    MemoryRegion* regions[3] = {nullptr, nullptr, nullptr};
    Request* recv = nullptr;
    ASSERT_TRUE(post_retry(pair.recv.get(), [&](Request** r) {
      return pair.recv->irecv(3, data, sizes, tags, regions, r);
    }, &recv).ok());
    // Sends in another order than the buffers: tag 3 first, then two tag-7 sends that
    // take the tag-7 buffers in order.
    std::vector<uint8_t> s3(4000), s7a(60), s7b(round % 2 ? 0 : 65536);
    fill(s3.data(), s3.size(), 3 + round);
    fill(s7a.data(), s7a.size(), 70 + round);
    fill(s7b.data(), s7b.size(), 700 + round);
    std::vector<Request*> sends;
    for (auto [buf, tag] : {std::pair{&s3, 3}, {&s7a, 7}, {&s7b, 7}}) {
      Request* r = nullptr;
      ASSERT_TRUE(post_retry(pair.send.get(), [&](Request** out) {
        return pair.send->isend(buf->data(), buf->size(), tag, nullptr, out);
      }, &r).ok());
      sends.push_back(r);
    }
    size_t got[3] = {};
    Status s = wait_done(pair.recv.get(), recv, got);
    ASSERT_TRUE(s.ok()) << s.message();
    for (Request* r : sends) ASSERT_TRUE(wait_done(pair.send.get(), r, static_cast<size_t*>(nullptr)).ok());
    EXPECT_EQ(got[0], s7a.size());
    EXPECT_EQ(got[1], s3.size());
    EXPECT_EQ(got[2], s7b.size());
    EXPECT_EQ(first_mismatch(b.data(), got[1], 3 + round), -1);
    EXPECT_EQ(first_mismatch(a.data(), got[0], 70 + round), -1);
    EXPECT_EQ(first_mismatch(c.data(), got[2], 700 + round), -1);
  }
}

TEST_F(IbChannelTest, SendLargerThanTheBufferFailsBothSides) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> small(1000), big(1001);
  void* data = small.data();
  size_t size = small.size();
  int tag = 0;
  MemoryRegion* region = nullptr;
  Request* recv = nullptr;
  ASSERT_TRUE(post_retry(pair.recv.get(), [&](Request** r) {
    return pair.recv->irecv(1, &data, &size, &tag, &region, r);
  }, &recv).ok());
  Request* send = nullptr;
  Status s = post_retry(pair.send.get(), [&](Request** r) {
    return pair.send->isend(big.data(), big.size(), 0, nullptr, r);
  }, &send);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("larger than the 1000-byte buffer"), std::string::npos) << s.message();
  Status r = wait_done(pair.recv.get(), recv, static_cast<size_t*>(nullptr), 10000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), CIUIC_ERR_REMOTE) << r.message();
  EXPECT_NE(r.message().find("1001 bytes"), std::string::npos) << r.message();
  // Later calls fail fast with the same cause.
  Request* again = nullptr;
  EXPECT_FALSE(pair.recv->irecv(1, &data, &size, &tag, &region, &again).ok());
}

TEST_F(IbChannelTest, AbortReachesThePeerWithItsReason) {
  for (bool receiver_aborts : {true, false}) {
    ChannelPair pair;
    ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
    std::vector<uint8_t> buf(64);
    void* data = buf.data();
    size_t size = buf.size();
    int tag = 1;
    MemoryRegion* region = nullptr;
    Request* recv = nullptr;
    if (receiver_aborts) {
      pair.recv->abort("rank 3 gave up");
      Request* send = nullptr;
      Status s = post_retry(pair.send.get(), [&](Request** r) {
        return pair.send->isend(buf.data(), 8, 1, nullptr, r);
      }, &send);
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.message();
      EXPECT_NE(s.message().find("rank 3 gave up"), std::string::npos) << s.message();
    } else {
      ASSERT_TRUE(post_retry(pair.recv.get(), [&](Request** r) {
        return pair.recv->irecv(1, &data, &size, &tag, &region, r);
      }, &recv).ok());
      pair.send->abort("rank 5 gave up");
      Status s = wait_done(pair.recv.get(), recv, static_cast<size_t*>(nullptr), 10000);
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.message();
      EXPECT_NE(s.message().find("rank 5 gave up"), std::string::npos) << s.message();
      Request* send = nullptr;
      Status local = pair.send->isend(buf.data(), 8, 1, nullptr, &send);
      EXPECT_EQ(local.code(), CIUIC_ERR_ABORTED) << local.message();
    }
  }
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
  ASSERT_TRUE(post_retry(pair.recv.get(), [&](Request** out) {
    return pair.recv->irecv(1, &data, &size, &tag, &r, out);
  }, &recv).ok());
  std::vector<uint8_t> msg(300);
  fill(msg.data(), msg.size(), 42);
  Request* send = nullptr;
  ASSERT_TRUE(post_retry(pair.send.get(), [&](Request** out) {
    return pair.send->isend(msg.data(), msg.size(), 0, nullptr, out);
  }, &send).ok());
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
    ASSERT_TRUE(post_retry(recv.get(), [&](Request** out) {
      return recv->irecv(1, &data, &size, &tag, &region, out);
    }, &r).ok());
    ASSERT_TRUE(wait_done(recv.get(), r, static_cast<size_t*>(nullptr)).ok());
    EXPECT_EQ(got, 'x');
    ASSERT_TRUE(post_retry(recv.get(), [&](Request** out) {
      return recv->irecv(1, &data, &size, &tag, &region, out);
    }, &r).ok());
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
