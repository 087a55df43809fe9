// The TCP transport's data path over loopback: ranks are threads of this process, each
// side driving its own channel and sleeping in poll() between progress calls. Connection
// setup and hostile clients: tcp_listener_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <tuple>

#include "unit/tcp_test_helpers.h"

namespace ciuic::transport {
namespace {

using testing::ScopedConfig;
using tcp_test::ChannelPair;
using tcp_test::connect_pair;
using tcp_test::first_mismatch;
using tcp_test::fill;
using tcp_test::TcpTransportTest;
using tcp_test::wait_done;

// Every data-path test runs twice: every byte moved on the caller's thread
// (CIUIC_TCP_THREADS=0), and the pieces of striped messages moved by I/O threads.
class TcpDataPathTest : public TcpTransportTest, public ::testing::WithParamInterface<int> {
 protected:
  ScopedConfig threads_{"CIUIC_TCP_THREADS", std::to_string(GetParam())};
};

std::string threads_name(const ::testing::TestParamInfo<int>& info) {
  return info.param == 0 ? "Inline" : "Threads" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Io, TcpDataPathTest, ::testing::Values(0, 3), threads_name);

TEST_F(TcpTransportTest, DeviceIsTheChosenInterfaceAndHostOnly) {
  DeviceProperties p;
  ASSERT_TRUE(transport_->device_properties(0, &p).ok());
  EXPECT_EQ(p.name, "lo");
  EXPECT_EQ(p.pointer_support, kHostMemory);
  EXPECT_EQ(p.max_recvs, 8);
  EXPECT_EQ(p.max_requests, 32);
  EXPECT_FALSE(transport_->device_properties(1, &p).ok());
}

TEST_P(TcpDataPathTest, ConnectAndAcceptFromTwoThreads) {
  ChannelPair pair;
  Status s = connect_pair(transport_.get(), &pair);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_NE(pair.send->peer_description().find("tcp"), std::string::npos);
  EXPECT_NE(pair.recv->peer_description().find("127.0.0.1"), std::string::npos);
}

// Sends `count` messages of random sizes (log-uniform in 0..max) from one thread to
// another, up to `depth` in flight on each side, and checks every byte and size.
void stream_random_messages(Transport* t, int count, size_t max_size, int depth) {
  ChannelPair pair;
  Status s = connect_pair(t, &pair);
  ASSERT_TRUE(s.ok()) << s.to_string();
  std::vector<size_t> sizes(static_cast<size_t>(count));
  std::mt19937_64 rng(12345);
  for (auto& size : sizes) {
    double e = std::uniform_real_distribution<double>(0, std::log2(static_cast<double>(max_size) + 1))(rng);
    size = std::min(max_size, static_cast<size_t>(std::exp2(e)) - 1);
  }
  sizes[0] = 0;
  sizes[1] = max_size;
  Status send_status;
  std::thread sender([&] {
    std::vector<std::vector<uint8_t>> buffers(static_cast<size_t>(depth));
    std::vector<Request*> inflight(static_cast<size_t>(depth), nullptr);
    for (int i = 0; i < count && send_status.ok(); ++i) {
      size_t slot = static_cast<size_t>(i % depth);
      if (inflight[slot] != nullptr) {
        size_t sent = 0;
        send_status = wait_done(pair.send.get(), inflight[slot], &sent);
        if (!send_status.ok()) return;
      }
      buffers[slot].resize(sizes[static_cast<size_t>(i)]);
      fill(buffers[slot].data(), buffers[slot].size(), static_cast<uint64_t>(i));
      Request* r = nullptr;
      send_status = pair.send->isend(buffers[slot].data(), buffers[slot].size(), i % 5, nullptr, &r);
      if (send_status.ok() && r == nullptr) send_status = internal_error("isend refused below 32");
      inflight[slot] = r;
    }
    for (Request* r : inflight) {
      size_t sent = 0;
      if (r != nullptr && send_status.ok()) send_status = wait_done(pair.send.get(), r, &sent);
    }
  });
  std::vector<std::vector<uint8_t>> buffers(static_cast<size_t>(depth),
                                            std::vector<uint8_t>(max_size + 16));
  std::vector<Request*> inflight(static_cast<size_t>(depth), nullptr);
  std::vector<int> posted_for(static_cast<size_t>(depth), -1);
  int bad = 0;
  auto finish = [&](size_t slot) {
    size_t got = 0;
    Status rs = wait_done(pair.recv.get(), inflight[slot], &got);
    ASSERT_TRUE(rs.ok()) << rs.to_string();
    int i = posted_for[slot];
    ASSERT_EQ(got, sizes[static_cast<size_t>(i)]) << "message " << i;
    int64_t wrong = first_mismatch(buffers[slot].data(), got, static_cast<uint64_t>(i));
    if (wrong >= 0 && bad++ < 5) ADD_FAILURE() << "message " << i << " (" << got << " bytes) differs at " << wrong;
  };
  auto receive_all = [&] {  // ASSERTs return from here, so the sender is always joined
    for (int i = 0; i < count; ++i) {
      size_t slot = static_cast<size_t>(i % depth);
      if (inflight[slot] != nullptr) finish(slot);
      if (::testing::Test::HasFatalFailure()) break;
      size_t capacity = buffers[slot].size();
      void* data = buffers[slot].data();
      int tag = i % 5;
      Request* r = nullptr;
      ASSERT_TRUE(pair.recv->irecv(1, &data, &capacity, &tag, nullptr, &r).ok());
      ASSERT_NE(r, nullptr);
      inflight[slot] = r;
      posted_for[slot] = i;
    }
    for (int i = std::max(0, count - depth); i < count && !::testing::Test::HasFatalFailure(); ++i)
      finish(static_cast<size_t>(i % depth));  // drain in posting order
  };
  receive_all();
  if (::testing::Test::HasFatalFailure()) pair.recv->abort("receiver test failed");
  sender.join();
  EXPECT_TRUE(send_status.ok()) << send_status.to_string();
  EXPECT_EQ(bad, 0);
}

TEST_P(TcpDataPathTest, ThousandsOfRandomMessagesArriveIntact) {
  stream_random_messages(transport_.get(), 3000, size_t{8} << 20, 8);
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
  std::string expected = "(tcp, " + std::to_string(stripes) +
                         (stripes == 1 ? " socket)" : " sockets)");
  EXPECT_NE(probe.send->peer_description().find(expected), std::string::npos)
      << probe.send->peer_description();
  EXPECT_NE(probe.recv->peer_description().find(expected), std::string::npos);
  stream_random_messages(transport_.get(), 400, size_t{8} << 20, 6);
}

INSTANTIATE_TEST_SUITE_P(Stripes, TcpStripesTest,
                         ::testing::Combine(::testing::Values(1, 2, 3, 8), ::testing::Values(0, 2)),
                         [](const ::testing::TestParamInfo<std::tuple<int, int>>& param) {
                           return std::to_string(std::get<0>(param.param)) + "Sockets" +
                                  std::to_string(std::get<1>(param.param)) + "Threads";
                         });

TEST_P(TcpDataPathTest, GroupedReceivesPutEachTagInItsBuffer) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::mt19937 rng(7);
  for (int n = 1; n <= kMaxGroupedRecvs; ++n) {
    // Receive tags in one order, send them in another; sizes differ per tag.
    std::vector<int> tags(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) tags[static_cast<size_t>(i)] = 100 + 3 * i;
    std::vector<int> send_order = tags;
    std::shuffle(send_order.begin(), send_order.end(), rng);
    auto size_of = [](int tag) { return static_cast<size_t>(tag) * 1000 + 17; };
    std::vector<std::vector<uint8_t>> rbuf(static_cast<size_t>(n), std::vector<uint8_t>(200000));
    std::vector<void*> data;
    std::vector<size_t> caps;
    for (auto& b : rbuf) {
      data.push_back(b.data());
      caps.push_back(b.size());
    }
    Request* rr = nullptr;
    ASSERT_TRUE(pair.recv->irecv(n, data.data(), caps.data(), tags.data(), nullptr, &rr).ok());
    ASSERT_NE(rr, nullptr);
    std::vector<std::vector<uint8_t>> sbuf;
    std::vector<Request*> sends;
    for (int tag : send_order) {
      sbuf.emplace_back(size_of(tag));
      fill(sbuf.back().data(), sbuf.back().size(), static_cast<uint64_t>(tag));
      Request* r = nullptr;
      ASSERT_TRUE(pair.send->isend(sbuf.back().data(), sbuf.back().size(), tag, nullptr, &r).ok());
      sends.push_back(r);
    }
    std::vector<size_t> got(static_cast<size_t>(n));
    Status s = wait_done(pair.recv.get(), rr, got.data());
    ASSERT_TRUE(s.ok()) << s.to_string();
    for (Request* r : sends) ASSERT_TRUE(wait_done(pair.send.get(), r, static_cast<size_t*>(nullptr)).ok());
    for (int i = 0; i < n; ++i) {
      int tag = tags[static_cast<size_t>(i)];
      EXPECT_EQ(got[static_cast<size_t>(i)], size_of(tag)) << "n=" << n << " tag " << tag;
      EXPECT_EQ(first_mismatch(rbuf[static_cast<size_t>(i)].data(), size_of(tag),
                               static_cast<uint64_t>(tag)), -1)
          << "n=" << n << " buffer for tag " << tag;
    }
  }
}

TEST_P(TcpDataPathTest, ReceiveLargerThanSendReportsTheRealSize) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(1000), in(5000, 0xee);
  fill(out.data(), out.size(), 1);
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request *rr = nullptr, *sr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  size_t sent = 0, got = 0;
  ASSERT_TRUE(wait_done(pair.send.get(), sr, &sent).ok());
  ASSERT_TRUE(wait_done(pair.recv.get(), rr, &got).ok());
  EXPECT_EQ(sent, 1000u);
  EXPECT_EQ(got, 1000u);
  EXPECT_EQ(first_mismatch(in.data(), 1000, 1), -1);
  EXPECT_EQ(in[1000], 0xee);  // nothing written past the message
}

TEST_P(TcpDataPathTest, SendLargerThanReceiveIsAnErrorOnTheReceiver) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(5000), in(1000);
  void* data = in.data();
  size_t cap = in.size();
  int tag = 4;
  Request *rr = nullptr, *sr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 4, nullptr, &sr).ok());
  size_t got = 0;
  Status s = wait_done(pair.recv.get(), rr, &got);
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << s.to_string();
  EXPECT_NE(s.message().find("5000-byte message"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("1000-byte receive buffer"), std::string::npos) << s.message();
  // The sender hears why instead of waiting on a stream nobody reads any more.
  ASSERT_TRUE(wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr)).ok());
  Request* next = nullptr;
  Status sent = pair.send->isend(out.data(), 10, 4, nullptr, &next);
  if (sent.ok()) sent = wait_done(pair.send.get(), next, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(sent.code(), CIUIC_ERR_REMOTE) << sent.to_string();
  EXPECT_NE(sent.message().find("1000-byte receive buffer"), std::string::npos) << sent.message();
}

TEST_P(TcpDataPathTest, MoreThan32OutstandingRequestsAreRefusedUntilOneIsDone) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  uint8_t byte = 1;
  std::vector<Request*> sends;
  for (int i = 0; i < kMaxRequests; ++i) {
    Request* r = nullptr;
    ASSERT_TRUE(pair.send->isend(&byte, 1, 0, nullptr, &r).ok());
    ASSERT_NE(r, nullptr) << "send " << i;
    sends.push_back(r);
  }
  Request* extra = nullptr;
  ASSERT_TRUE(pair.send->isend(&byte, 1, 0, nullptr, &extra).ok());
  EXPECT_EQ(extra, nullptr);
  ASSERT_TRUE(wait_done(pair.send.get(), sends[0], static_cast<size_t*>(nullptr)).ok());
  ASSERT_TRUE(pair.send->isend(&byte, 1, 0, nullptr, &extra).ok());
  EXPECT_NE(extra, nullptr);

  std::vector<uint8_t> in(kMaxRequests + 1);
  std::vector<Request*> recvs;
  for (int i = 0; i <= kMaxRequests; ++i) {
    void* data = &in[static_cast<size_t>(i)];
    size_t cap = 1;
    int tag = 0;
    Request* r = nullptr;
    ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &r).ok());
    if (i < kMaxRequests) {
      ASSERT_NE(r, nullptr) << "receive " << i;
      recvs.push_back(r);
    } else {
      EXPECT_EQ(r, nullptr);
    }
  }
  for (Request* r : recvs) ASSERT_TRUE(wait_done(pair.recv.get(), r, static_cast<size_t*>(nullptr)).ok());
}

// A peer that goes away mid-transfer: the other side fails within a deadline, naming it.
TEST_P(TcpDataPathTest, ReceiverGoneMidTransferFailsTheSender) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{64} << 20);
  Request* sr = nullptr;
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  std::vector<uint8_t> in(out.size());
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request* rr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  bool done = false;
  ASSERT_TRUE(pair.recv->test(rr, &done, nullptr).ok());  // some bytes move
  pair.recv.reset();  // the receiving process "exits"
  Status s = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("127.0.0.1"), std::string::npos) << s.message();
}

TEST_P(TcpDataPathTest, SenderGoneMidTransferFailsTheReceiver) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{64} << 20);
  std::vector<uint8_t> in(out.size());
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request *rr = nullptr, *sr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  bool done = false;
  ASSERT_TRUE(pair.recv->test(rr, &done, nullptr).ok());
  ASSERT_FALSE(done);
  pair.send.reset();
  Deadline limit = Deadline::after_ms(5000);
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_FALSE(limit.expired());
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("closed by the peer during a 67108864-byte receive"), std::string::npos)
      << s.message();
}

// The last message of a sender that leaves at once: its socket 0 ends (cleanly) while
// the message's pieces on the other sockets are still to be read. That end is no error.
TEST_P(TcpDataPathTest, SenderLeavingRightAfterItsLastSendLosesNothing) {
  ScopedConfig sockets("CIUIC_TCP_SOCKETS", "4");
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{1} << 20);  // four 256 KiB pieces: all fit the socket buffers
  fill(out.data(), out.size(), 7);
  Request* sr = nullptr;
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  ASSERT_NE(sr, nullptr);
  ASSERT_TRUE(wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr)).ok());
  pair.send.reset();  // the sender is gone before the receiver reads anything
  std::vector<uint8_t> in(out.size());
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request* rr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  size_t got = 0;
  Status s = wait_done(pair.recv.get(), rr, &got);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(got, out.size());
  EXPECT_EQ(first_mismatch(in.data(), in.size(), 7), -1);
  // A further receive can never be filled: that is the error.
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  s = wait_done(pair.recv.get(), rr, &got, 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
}

TEST_P(TcpDataPathTest, SenderAbortReasonReachesTheReceiver) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> in(100);
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request* rr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  pair.send->abort("rank 3 ran out of memory");
  Request* sr = nullptr;
  uint8_t byte = 0;
  EXPECT_EQ(pair.send->isend(&byte, 1, 0, nullptr, &sr).code(), CIUIC_ERR_ABORTED);
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("rank 3 ran out of memory"), std::string::npos) << s.message();
  // Later requests fail the same way.
  EXPECT_NE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).message().find("out of memory"),
            std::string::npos);
}

TEST_P(TcpDataPathTest, ReceiverAbortReasonReachesTheSender) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{32} << 20);
  Request* sr = nullptr;
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  pair.recv->abort("checkpoint failed on rank 1");
  Status s = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("checkpoint failed on rank 1"), std::string::npos) << s.message();
}

TEST_P(TcpDataPathTest, AbortFromAnotherThreadEndsAWaitingReceivePromptly) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> in(size_t{1} << 20);
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request* rr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pair.recv->abort("watchdog fired");
  });
  Deadline limit = Deadline::after_ms(2000);
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_FALSE(limit.expired());
  aborter.join();
  EXPECT_EQ(s.code(), CIUIC_ERR_ABORTED) << s.to_string();
  EXPECT_NE(s.message().find("watchdog fired"), std::string::npos) << s.message();
  Request* sr = nullptr;
  uint8_t byte = 0;
  Status sent = pair.send->isend(&byte, 1, 0, nullptr, &sr);
  if (sent.ok()) sent = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  if (sent.ok()) {  // the byte may have left before the abort was heard: the next one fails
    sent = pair.send->isend(&byte, 1, 0, nullptr, &sr);
    if (sent.ok()) sent = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  }
  EXPECT_EQ(sent.code(), CIUIC_ERR_REMOTE) << sent.to_string();
  EXPECT_NE(sent.message().find("watchdog fired"), std::string::npos) << sent.message();
}

}  // namespace
}  // namespace ciuic::transport
