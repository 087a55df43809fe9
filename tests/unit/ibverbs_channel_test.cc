// What only the ibverbs transport does, on a real RDMA device (Soft-RoCE in tests/rdma-vm,
// or an adapter): messages striped over several queue pairs, staged and registered on the
// fly; the GPUDirect flush; a peer process that dies; a queue pair forced into the error
// state mid-stream. Skips, saying why, where no device is usable. The semantics every transport
// shares (sizes, grouped receives, errors, abort, waking): ibverbs_conformance_test.cc.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "transports/ibverbs/ib_testing.h"
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

// One side's queue pairs moved to the error state behind the channel's back in the middle
// of a stream, as a failing adapter or link would. Every request pending then fails on both
// sides, in bounded time: the forced side with the flushed completion's status, the peer
// with that reason relayed over the side socket (or, had the relay been lost, its own
// retry-exceeded completion). Later posts fail at once, and a new channel between the same
// two endpoints carries data.
//
// What is pending for certain: receives announced and never matched, and sends posted after
// the error (on a forced sender they are flushed; toward a forced receiver their writes are
// never acknowledged). A send posted just before the error may have completed on the wire
// already (Soft-RoCE often runs a loopback write inside ibv_post_send): it may succeed.
class IbQueuePairErrorTest : public IbChannelTest, public ::testing::WithParamInterface<bool> {};

// Every failure names the channel's peer and a verbs completion status.
void expect_names_peer_and_status(const Status& s, const std::string& peer) {
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.message();
  EXPECT_NE(s.message().find(peer), std::string::npos)
      << "without the peer " << peer << ": " << s.message();
  const bool flushed = s.message().find("IBV_WC_WR_FLUSH_ERR") != std::string::npos;
  const bool retries = s.message().find("IBV_WC_RETRY_EXC_ERR") != std::string::npos;
  EXPECT_TRUE(flushed || retries) << "without a verbs status: " << s.message();
}

TEST_P(IbQueuePairErrorTest, PendingRequestsFailOnBothSidesAndANewChannelWorks) {
  const bool force_sender = GetParam();
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair, listener.get()).ok());
  const std::string send_peer = pair.send->peer_description();
  const std::string recv_peer = pair.recv->peer_description();

  // 8 receives of 64 KiB announced; 2 sends complete, 1 is posted right before the error
  // and 2 after it; 3 receives are never matched.
  constexpr size_t kBytes = size_t{64} << 10;
  constexpr int kReceives = 8, kSends = 5, kSentBefore = 2, kPostedAfter = 3;
  std::vector<std::vector<uint8_t>> in(kReceives, std::vector<uint8_t>(kBytes));
  std::vector<std::vector<uint8_t>> out(kSends, std::vector<uint8_t>(kBytes));
  std::vector<Request*> recvs(kReceives, nullptr), sends(kSends, nullptr);
  for (int i = 0; i < kReceives; ++i)
    ASSERT_TRUE(irecv_retry(pair.recv.get(), in[i].data(), kBytes, 0, &recvs[i]).ok());
  for (int i = 0; i < kSends; ++i) fill(out[i].data(), kBytes, static_cast<uint64_t>(i));
  for (int i = 0; i < kSentBefore; ++i) {
    ASSERT_TRUE(isend_retry(pair.send.get(), out[i].data(), kBytes, 0, &sends[i]).ok());
    size_t got = 0;
    ASSERT_TRUE(wait_both(pair.send.get(), sends[i], pair.recv.get(), recvs[i], &got).ok());
    EXPECT_EQ(first_mismatch(in[i].data(), got, static_cast<uint64_t>(i)), -1);
  }
  ASSERT_TRUE(
      isend_retry(pair.send.get(), out[kSentBefore].data(), kBytes, 0, &sends[kSentBefore]).ok());
  Status forced = force_sender ? ib::testing::force_queue_pair_error(pair.send.get())
                               : ib::testing::force_queue_pair_error(pair.recv.get());
  ASSERT_TRUE(forced.ok()) << forced.message();
  // Sends after the error: the sender may already know (the post fails, with the cause) or
  // not yet (the request must fail later). Their receives are announced, so nothing waits.
  for (int i = kPostedAfter; i < kSends; ++i) {
    Status s = pair.send->isend(out[i].data(), kBytes, 0, nullptr, &sends[i]);
    if (!s.ok()) {
      expect_names_peer_and_status(s, send_peer);
      sends[i] = nullptr;
      continue;
    }
    EXPECT_NE(sends[i], nullptr) << "the receive of send " << i << " was announced";
  }

  // Drive both sides until every request has an outcome.
  struct Outcome {
    bool known = false;
    Status status;
  };
  std::vector<Outcome> send_outcome(kSends), recv_outcome(kReceives);
  for (int i = 0; i < kSentBefore; ++i) send_outcome[i].known = recv_outcome[i].known = true;
  auto start = Clock::now();
  Deadline deadline = Deadline::after_ms(30000);
  for (;;) {
    bool all_known = true;
    for (int i = 0; i < kSends; ++i) {
      if (send_outcome[i].known || sends[i] == nullptr) continue;
      bool done = false;
      Status s = pair.send->test(sends[i], &done, nullptr);
      if (!s.ok() || done) send_outcome[i] = {true, s};
      all_known = all_known && send_outcome[i].known;
    }
    for (int i = 0; i < kReceives; ++i) {
      if (recv_outcome[i].known) continue;
      bool done = false;
      size_t got = 0;
      Status s = pair.recv->test(recvs[i], &done, &got);
      if (!s.ok() || done) recv_outcome[i] = {true, s};
      all_known = all_known && recv_outcome[i].known;
    }
    if (all_known) break;
    ASSERT_FALSE(deadline.expired()) << "requests still pending 30 s after the queue pair error";
    std::vector<pollfd> fds;
    pair.send->collect_poll_fds(&fds);
    pair.recv->collect_poll_fds(&fds);
    sleep_on(fds, 20);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_LT(seconds, 10.0) << "the failure took this long to reach every request";
  // The send just before the error and its receive: either outcome, but a named failure.
  for (const Status* s : {&send_outcome[kSentBefore].status, &recv_outcome[kSentBefore].status}) {
    if (!s->ok()) {
      expect_names_peer_and_status(*s,
                                   s == &send_outcome[kSentBefore].status ? send_peer : recv_peer);
    }
  }
  int pending_sends = 0;
  for (int i = kPostedAfter; i < kSends; ++i) {
    if (sends[i] == nullptr) continue;  // refused at once (checked above)
    ++pending_sends;
    const Status& s = send_outcome[i].status;
    EXPECT_FALSE(s.ok()) << "send " << i << ", posted after the error, succeeded";
    if (!s.ok()) {
      expect_names_peer_and_status(s, send_peer);
    }
  }
  for (int i = kPostedAfter; i < kReceives; ++i) {
    const Status& s = recv_outcome[i].status;
    EXPECT_FALSE(s.ok()) << "receive " << i << " succeeded after the error";
    if (!s.ok()) {
      expect_names_peer_and_status(s, recv_peer);
    }
  }
  // Toward a forced receiver the sender cannot know before its pending writes fail.
  if (!force_sender) {
    EXPECT_EQ(pending_sends, kSends - kPostedAfter);
  }
  // Later posts on the failed channel fail at once, with the same cause.
  Request* late = nullptr;
  auto posted = Clock::now();
  Status late_send = pair.send->isend(out[0].data(), kBytes, 0, nullptr, &late);
  EXPECT_FALSE(late_send.ok());
  EXPECT_EQ(late, nullptr);
  if (!late_send.ok()) {
    expect_names_peer_and_status(late_send, send_peer);
  }
  void* data = in[0].data();
  size_t capacity = kBytes;
  int tag = 0;
  MemoryRegion* region = nullptr;
  Status late_recv = pair.recv->irecv(1, &data, &capacity, &tag, &region, &late);
  EXPECT_FALSE(late_recv.ok());
  EXPECT_EQ(late, nullptr);
  if (!late_recv.ok()) {
    expect_names_peer_and_status(late_recv, recv_peer);
  }
  EXPECT_LT(Clock::now() - posted, std::chrono::seconds(1));
  // The forced side failed on its own flushed completion; the peer heard it from there.
  const Status& forced_side = force_sender ? late_send : late_recv;
  const Status& peer_side = force_sender ? late_recv : late_send;
  EXPECT_NE(forced_side.message().find("IBV_WC_WR_FLUSH_ERR"), std::string::npos)
      << forced_side.message();
  EXPECT_NE(peer_side.message().find("aborted the connection"), std::string::npos)
      << peer_side.message();

  // A new channel between the same two endpoints (same transport, same listener) works
  // while the failed one still exists.
  ChannelPair fresh;
  Status reconnected = connect_pair(transport_.get(), &fresh, listener.get());
  ASSERT_TRUE(reconnected.ok()) << reconnected.message();
  const size_t sizes[] = {0, 1, 4097, kBytes};
  for (size_t m = 0; m < std::size(sizes); ++m) {
    fill(out[0].data(), sizes[m], 100 + m);
    Request* rr = nullptr;
    Request* sr = nullptr;
    ASSERT_TRUE(irecv_retry(fresh.recv.get(), in[0].data(), kBytes, 0, &rr).ok());
    ASSERT_TRUE(isend_retry(fresh.send.get(), out[0].data(), sizes[m], 0, &sr).ok());
    size_t got = 0;
    Status s = wait_both(fresh.send.get(), sr, fresh.recv.get(), rr, &got);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(got, sizes[m]);
    EXPECT_EQ(first_mismatch(in[0].data(), got, 100 + m), -1) << "message of " << sizes[m] << " B";
  }
}

INSTANTIATE_TEST_SUITE_P(ForcedSide, IbQueuePairErrorTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return std::string(param.param ? "Sender" : "Receiver");
                         });

}  // namespace
}  // namespace ciuic::transport::ib_test
