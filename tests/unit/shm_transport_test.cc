// The shm transport inside one process: both ends are threads (or this thread), each
// driving its own channel and sleeping in poll() between progress calls. Every data-path
// test runs with large messages read by CMA and with them copied through the ring.
// Separate processes, killed peers and privilege checks: shm_process_test.cc.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>

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
  DeviceProperties p;
  ASSERT_TRUE(transport_->device_properties(0, &p).ok());
  EXPECT_EQ(p.name, "shm");
  EXPECT_EQ(p.pointer_support, kHostMemory);
  EXPECT_EQ(p.max_recvs, kMaxGroupedRecvs);
  EXPECT_EQ(p.max_requests, kMaxRequests);
  EXPECT_GT(p.speed_mbps, 0);
  EXPECT_GT(p.latency_us, 0);
  EXPECT_FALSE(transport_->device_properties(1, &p).ok());
  std::unique_ptr<Listener> l;
  EXPECT_EQ(transport_->listen(1, &l).code(), CIUIC_ERR_INVALID_ARGUMENT);
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

TEST_F(ShmTransportTest, GpuMemoryIsRefusedWithAReason) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::unique_ptr<MemoryRegion> region;
  char buf[16];
  EXPECT_TRUE(pair.send->register_memory(buf, sizeof(buf), kHostMemory, &region).ok());
  Status s = pair.recv->register_memory(buf, sizeof(buf), kCudaMemory, &region);
  EXPECT_EQ(s.code(), CIUIC_ERR_UNSUPPORTED) << s.to_string();
  EXPECT_NE(s.message().find("host memory only"), std::string::npos) << s.message();
}

TEST_P(ShmPathTest, ChannelsNameThePeerAndThePath) {
  ChannelPair pair;
  Status s = connect_pair(transport_.get(), &pair);
  ASSERT_TRUE(s.ok()) << s.to_string();
  const std::string pid = "pid " + std::to_string(::getpid());
  EXPECT_NE(pair.send->peer_description().find(pid), std::string::npos)
      << pair.send->peer_description();
  EXPECT_NE(pair.recv->peer_description().find(pid + " " + path_text()), std::string::npos)
      << pair.recv->peer_description();
  EXPECT_NE(pair.send->peer_description().find(path_text()), std::string::npos);
}

// Each size once, receive buffer 64 bytes larger than the message and pre-filled, so a
// short, long or misplaced write shows.
TEST_P(ShmPathTest, EdgeSizesArriveIntact) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  const size_t sizes[] = {
      0, 1, 7, kEagerBytes - 1, kEagerBytes, kEagerBytes + 1, (1u << 20) + 3, size_t{64} << 20};
  uint64_t message = 0;
  for (size_t size : sizes) {
    std::vector<uint8_t> out(size), in(size + 64, 0xee);
    fill(out.data(), size, message);
    void* data = in.data();
    size_t cap = in.size();
    int tag = static_cast<int>(message);
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
    ASSERT_TRUE(pair.send->isend(out.data(), size, tag, nullptr, &sr).ok());
    ASSERT_NE(sr, nullptr);
    size_t got = 0;
    Status s = wait_both(pair.send.get(), sr, pair.recv.get(), rr, &got);
    ASSERT_TRUE(s.ok()) << size << " bytes: " << s.to_string();
    EXPECT_EQ(got, size);
    EXPECT_EQ(first_mismatch(in.data(), size, message), -1) << size << " bytes";
    EXPECT_EQ(std::count(in.begin() + static_cast<ptrdiff_t>(size), in.end(), 0xee), 64)
        << "bytes written past a " << size << "-byte message";
    ++message;
  }
}

// Sends `count` messages of random sizes (log-uniform in 0..max) from one thread to
// another, up to `depth` in flight on each side, and checks every byte and size.
void stream_random_messages(Transport* t, int count, size_t max_size, int depth) {
  ChannelPair pair;
  Status s = connect_pair(t, &pair);
  ASSERT_TRUE(s.ok()) << s.to_string();
  std::vector<size_t> sizes(static_cast<size_t>(count));
  std::mt19937_64 rng(4242);
  for (auto& size : sizes) {
    double e = std::uniform_real_distribution<double>(
        0, std::log2(static_cast<double>(max_size) + 1))(rng);
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
        send_status = wait_done(pair.send.get(), inflight[slot], static_cast<size_t*>(nullptr));
        if (!send_status.ok()) return;
      }
      buffers[slot].resize(sizes[static_cast<size_t>(i)]);
      fill(buffers[slot].data(), buffers[slot].size(), static_cast<uint64_t>(i));
      Request* r = nullptr;
      send_status =
          pair.send->isend(buffers[slot].data(), buffers[slot].size(), i % 5, nullptr, &r);
      if (send_status.ok() && r == nullptr) send_status = internal_error("isend refused below 32");
      inflight[slot] = r;
    }
    for (Request* r : inflight) {
      if (r != nullptr && send_status.ok())
        send_status = wait_done(pair.send.get(), r, static_cast<size_t*>(nullptr));
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
    if (wrong >= 0 && bad++ < 5)
      ADD_FAILURE() << "message " << i << " (" << got << " bytes) differs at " << wrong;
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

TEST_P(ShmPathTest, ThousandsOfRandomMessagesArriveIntact) {
  stream_random_messages(transport_.get(), 1000, size_t{1} << 20, 8);
}

// The smallest ring and a small eager size: records wrap at the ring's end mid-header
// boundary and mid-payload, large messages stream through many times the ring.
TEST_P(ShmPathTest, SmallRingWrapsAndStreamsIntact) {
  ScopedConfig ring("CIUIC_SHM_RING_BYTES", "64K");
  ScopedConfig eager("CIUIC_SHM_EAGER_BYTES", "1000");
  stream_random_messages(transport_.get(), 800, size_t{256} << 10, 6);
}

TEST_P(ShmPathTest, GroupedReceivesPutEachTagInItsBuffer) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::mt19937 rng(7);
  for (int n = 1; n <= kMaxGroupedRecvs; ++n) {
    // Receive tags in one order, send them in another; sizes differ per tag and cross the
    // eager size (some go through the ring, some by the large-message path).
    std::vector<int> tags(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) tags[static_cast<size_t>(i)] = 3 * i + (i % 2 == 0 ? 1 : 40);
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
    // Large sends finish only as the receive progresses: drive the receive until done,
    // then each send.
    for (size_t i = 0; i < sends.size(); ++i) {
      Status s =
          wait_both(pair.send.get(), sends[i], pair.recv.get(), i == 0 ? rr : nullptr, got.data());
      ASSERT_TRUE(s.ok()) << s.to_string();
    }
    for (int i = 0; i < n; ++i) {
      int tag = tags[static_cast<size_t>(i)];
      EXPECT_EQ(got[static_cast<size_t>(i)], size_of(tag)) << "n=" << n << " tag " << tag;
      EXPECT_EQ(first_mismatch(rbuf[static_cast<size_t>(i)].data(), size_of(tag),
                               static_cast<uint64_t>(tag)),
                -1)
          << "n=" << n << " buffer for tag " << tag;
    }
  }
}

TEST_P(ShmPathTest, ReceiveLargerThanSendReportsTheRealSize) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  for (size_t size : {size_t{1000}, size_t{100000}}) {
    std::vector<uint8_t> out(size), in(5 * size, 0xee);
    fill(out.data(), out.size(), size);
    void* data = in.data();
    size_t cap = in.size();
    int tag = 0;
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
    ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
    size_t got = 0;
    ASSERT_TRUE(wait_both(pair.send.get(), sr, pair.recv.get(), rr, &got).ok());
    EXPECT_EQ(got, size);
    EXPECT_EQ(first_mismatch(in.data(), size, size), -1);
    EXPECT_EQ(in[size], 0xee);  // nothing written past the message
  }
}

// Small (through the ring) and large (the large-message path): the receiver fails naming
// both sizes, and the sender hears why.
TEST_P(ShmPathTest, SendLargerThanReceiveIsAnErrorOnBothSides) {
  for (size_t size : {size_t{5000}, size_t{500000}}) {
    ChannelPair pair;
    ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
    const size_t small = size / 5;
    std::vector<uint8_t> out(size), in(small);
    void* data = in.data();
    size_t cap = in.size();
    int tag = 4;
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
    ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 4, nullptr, &sr).ok());
    size_t got = 0;
    Status s = wait_done(pair.recv.get(), rr, &got);
    const std::string sizes_text = std::to_string(size) + "-byte message";
    const std::string buffer_text = std::to_string(small) + "-byte receive buffer";
    EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << s.to_string();
    EXPECT_NE(s.message().find(sizes_text), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(buffer_text), std::string::npos) << s.message();
    // The send either left whole into the ring before the receiver looked (then the next
    // one fails) or fails itself; either way the sender learns the receiver's reason.
    Status sent = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
    if (sent.ok()) {
      Request* next = nullptr;
      sent = pair.send->isend(out.data(), 10, 4, nullptr, &next);
      if (sent.ok()) sent = wait_done(pair.send.get(), next, static_cast<size_t*>(nullptr), 5000);
    }
    EXPECT_EQ(sent.code(), CIUIC_ERR_REMOTE) << sent.to_string();
    EXPECT_NE(sent.message().find(buffer_text), std::string::npos) << sent.message();
  }
}

TEST_P(ShmPathTest, TagMatchingNoBufferIsAnErrorNamingTheTags) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> a(100), b(100), out(50);
  void* data[2] = {a.data(), b.data()};
  size_t caps[2] = {a.size(), b.size()};
  int tags[2] = {3, 5};
  Request *rr = nullptr, *sr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(2, data, caps, tags, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 9, nullptr, &sr).ok());
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr));
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << s.to_string();
  EXPECT_NE(s.message().find("tag 9"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("tags 3, 5"), std::string::npos) << s.message();
}

TEST_P(ShmPathTest, MoreThan32OutstandingRequestsAreRefusedUntilOneIsDone) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  // Large sends stay outstanding until the receiver takes them on either path (CMA:
  // until read; copy: 32 x 100 KB does not fit the 1 MiB ring).
  std::vector<uint8_t> out(100000);
  fill(out.data(), out.size(), 3);
  std::vector<Request*> sends;
  for (int i = 0; i < kMaxRequests; ++i) {
    Request* r = nullptr;
    ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &r).ok());
    ASSERT_NE(r, nullptr) << "send " << i;
    sends.push_back(r);
  }
  Request* extra = nullptr;
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &extra).ok());
  EXPECT_EQ(extra, nullptr);

  std::vector<std::vector<uint8_t>> in(kMaxRequests + 2, std::vector<uint8_t>(out.size()));
  std::vector<Request*> recvs;
  for (int i = 0; i <= kMaxRequests; ++i) {
    void* data = in[static_cast<size_t>(i)].data();
    size_t cap = out.size();
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
  ASSERT_TRUE(wait_both(pair.send.get(), sends[0], pair.recv.get(), recvs[0], nullptr).ok());
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &extra).ok());
  EXPECT_NE(extra, nullptr);
  sends.push_back(extra);
  void* data = in[kMaxRequests].data();
  size_t cap = out.size();
  int tag = 0;
  Request* last = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &last).ok());
  ASSERT_NE(last, nullptr);
  recvs.push_back(last);
  for (size_t i = 1; i < recvs.size(); ++i)
    ASSERT_TRUE(wait_both(pair.send.get(), sends[i], pair.recv.get(), recvs[i], nullptr).ok());
  for (size_t i = 0; i < recvs.size(); ++i) {
    size_t index = i < static_cast<size_t>(kMaxRequests) ? i : kMaxRequests;
    EXPECT_EQ(first_mismatch(in[index].data(), out.size(), 3), -1) << "receive " << i;
  }
}

// A sender that goes away with a large message unread: the receiver fails naming it.
TEST_P(ShmPathTest, SenderGoneMidTransferFailsTheReceiver) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{64} << 20), in(out.size());
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request *rr = nullptr, *sr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  pair.send.reset();  // the sending side closes with its send unfinished
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("lost during a 67108864-byte receive"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("pid " + std::to_string(::getpid())), std::string::npos);
  EXPECT_NE(s.message().find("closed its end"), std::string::npos) << s.message();
}

TEST_P(ShmPathTest, ReceiverGoneMidTransferFailsTheSender) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{64} << 20), in(out.size());
  Request* sr = nullptr;
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  pair.recv.reset();
  Status s = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("lost during a 67108864-byte send"), std::string::npos) << s.message();
}

// The last message of a sender that leaves at once is still delivered; a further receive
// can never be filled, and that is the error.
TEST_P(ShmPathTest, SenderLeavingRightAfterItsLastSendLosesNothing) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(20000);  // below the eager size: done once in the ring
  fill(out.data(), out.size(), 7);
  Request* sr = nullptr;
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  ASSERT_TRUE(wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr)).ok());
  pair.send.reset();
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
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  s = wait_done(pair.recv.get(), rr, &got, 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("closed its end"), std::string::npos) << s.message();
}

TEST_P(ShmPathTest, SenderAbortReasonReachesTheReceiver) {
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
  Status local = pair.send->isend(&byte, 1, 0, nullptr, &sr);
  EXPECT_EQ(local.code(), CIUIC_ERR_ABORTED);
  EXPECT_NE(local.message().find("rank 3 ran out of memory"), std::string::npos);
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("rank 3 ran out of memory"), std::string::npos) << s.message();
  // Later requests fail the same way.
  EXPECT_NE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).message().find("out of memory"),
            std::string::npos);
}

TEST_P(ShmPathTest, ReceiverAbortReasonReachesTheSender) {
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

TEST_P(ShmPathTest, AbortFromAnotherThreadEndsAWaitingReceivePromptly) {
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
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  aborter.join();
  EXPECT_EQ(s.code(), CIUIC_ERR_ABORTED) << s.to_string();
  EXPECT_NE(s.message().find("watchdog fired"), std::string::npos) << s.message();
  Request* sr = nullptr;
  uint8_t byte = 0;
  Status sent = pair.send->isend(&byte, 1, 0, nullptr, &sr);
  if (sent.ok()) sent = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  EXPECT_EQ(sent.code(), CIUIC_ERR_REMOTE) << sent.to_string();
  EXPECT_NE(sent.message().find("watchdog fired"), std::string::npos) << sent.message();
}

// Abort while the receiver is inside a long CMA read or a long copy on another thread.
TEST_P(ShmPathTest, AbortDuringALargeTransferStopsBothSides) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{64} << 20), in(out.size());
  std::thread receiver([&] {
    void* data = in.data();
    size_t cap = in.size();
    int tag = 0;
    for (int i = 0; i < 1000; ++i) {
      Request* rr = nullptr;
      if (!pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok()) return;
      if (!wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 10000).ok()) return;
    }
  });
  Status s;
  for (int i = 0; i < 1000 && s.ok(); ++i) {
    Request* sr = nullptr;
    s = pair.send->isend(out.data(), out.size(), 0, nullptr, &sr);
    if (s.ok() && i == 2) pair.send->abort("stop now");
    if (s.ok()) s = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 10000);
  }
  receiver.join();
  EXPECT_EQ(s.code(), CIUIC_ERR_ABORTED) << s.to_string();
  Request* rr = nullptr;
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Status r = pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr);
  EXPECT_EQ(r.code(), CIUIC_ERR_REMOTE) << r.to_string();
  EXPECT_NE(r.message().find("stop now"), std::string::npos) << r.message();
}

// ---- waiting without spinning ----

// A receiver with nothing to receive sleeps: its descriptors stay quiet. A send wakes it.
TEST_P(ShmPathTest, IdleReceiverSleepsAndASendWakesIt) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  std::vector<uint8_t> out(size_t{3} << 20), in(out.size());
  fill(out.data(), out.size(), 11);
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request* rr = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
  bool done = false;
  ASSERT_TRUE(pair.recv->test(rr, &done, nullptr).ok());
  ASSERT_FALSE(done);
  std::vector<pollfd> fds;
  pair.recv->collect_poll_fds(&fds);
  ASSERT_GE(fds.size(), 2u);  // the doorbell and the socket (and the peer's pidfd)
  EXPECT_EQ(::poll(fds.data(), fds.size(), 200), 0) << "a descriptor is ready with nothing sent";
  Status send_status;
  std::thread sender([&] {
    Request* sr = nullptr;
    send_status = pair.send->isend(out.data(), out.size(), 0, nullptr, &sr);
    if (send_status.ok())
      send_status = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr));
  });
  EXPECT_GT(::poll(fds.data(), fds.size(), 10000), 0) << "the send did not wake the receiver";
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr));
  sender.join();
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_TRUE(send_status.ok()) << send_status.to_string();
  EXPECT_EQ(first_mismatch(in.data(), in.size(), 11), -1);
}

// Ping-pong where both sides always sleep in poll() between tests, with a long poll
// timeout: a lost doorbell would stall a round for that long and fail the deadline.
TEST_P(ShmPathTest, PingPongWhileSleepingNeverLosesAWakeup) {
  ChannelPair ab, ba;
  ASSERT_TRUE(connect_pair(transport_.get(), &ab).ok());
  ASSERT_TRUE(connect_pair(transport_.get(), &ba).ok());
  constexpr int kRounds = 1500;
  auto size_of = [](int round) -> size_t {
    return round % 7 == 3 ? 200000 + static_cast<size_t>(round) : static_cast<size_t>(round % 50);
  };
  // Waits sleeping in poll() for 5 s at a time: never woken means never done.
  auto sleep_wait = [](auto* channel, Request* r, size_t* got) -> Status {
    Deadline deadline = Deadline::after_ms(20000);
    for (;;) {
      bool done = false;
      CIUIC_RETURN_IF_ERROR(channel->test(r, &done, got));
      if (done) return Status::Ok();
      if (deadline.expired()) return timeout_error("lost wake-up");
      std::vector<pollfd> fds;
      channel->collect_poll_fds(&fds);
      ::poll(fds.data(), fds.size(), 5000);
    }
  };
  Status b_status;
  std::thread b([&] {
    std::vector<uint8_t> buf(300000);
    for (int round = 0; round < kRounds && b_status.ok(); ++round) {
      void* data = buf.data();
      size_t cap = buf.size(), got = 0;
      int tag = round;
      Request* rr = nullptr;
      b_status = ab.recv->irecv(1, &data, &cap, &tag, nullptr, &rr);
      if (b_status.ok()) b_status = sleep_wait(ab.recv.get(), rr, &got);
      if (b_status.ok() && (got != size_of(round) ||
                            first_mismatch(buf.data(), got, static_cast<uint64_t>(round)) != -1))
        b_status = internal_error("round " + std::to_string(round) + ": wrong data at b");
      Request* sr = nullptr;
      if (b_status.ok()) b_status = ba.send->isend(buf.data(), got, round, nullptr, &sr);
      if (b_status.ok()) b_status = sleep_wait(ba.send.get(), sr, nullptr);
    }
  });
  std::vector<uint8_t> out(300000), back(300000);
  Status a_status;
  for (int round = 0; round < kRounds && a_status.ok(); ++round) {
    fill(out.data(), size_of(round), static_cast<uint64_t>(round));
    Request* sr = nullptr;
    a_status = ab.send->isend(out.data(), size_of(round), round, nullptr, &sr);
    if (a_status.ok()) a_status = sleep_wait(ab.send.get(), sr, nullptr);
    void* data = back.data();
    size_t cap = back.size(), got = 0;
    int tag = round;
    Request* rr = nullptr;
    if (a_status.ok()) a_status = ba.recv->irecv(1, &data, &cap, &tag, nullptr, &rr);
    if (a_status.ok()) a_status = sleep_wait(ba.recv.get(), rr, &got);
    if (a_status.ok() && (got != size_of(round) ||
                          first_mismatch(back.data(), got, static_cast<uint64_t>(round)) != -1))
      a_status = internal_error("round " + std::to_string(round) + ": wrong data back at a");
  }
  if (!a_status.ok()) ab.send->abort("a failed");
  b.join();
  EXPECT_TRUE(a_status.ok()) << a_status.to_string();
  EXPECT_TRUE(b_status.ok()) << b_status.to_string();
}

// ---- connection setup ----

TEST_F(ShmTransportTest, WrongTokenIsRefusedAndTheListenerKeepsWorking) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  ConnectHandle forged = listener->handle();
  forged.bytes[8] ^= 0x5a;  // first byte of the token
  std::unique_ptr<Connector> connector;
  ASSERT_TRUE(transport_->connect(0, forged, &connector).ok());
  Status s;
  std::unique_ptr<SendChannel> send;
  Deadline deadline = Deadline::after_ms(kWaitMs);
  while (s.ok() && send == nullptr && !deadline.expired()) {
    std::unique_ptr<RecvChannel> accepted;
    ASSERT_TRUE(listener->accept(&accepted).ok());
    EXPECT_EQ(accepted, nullptr) << "a connection with the wrong token was accepted";
    s = connector->progress(&send);
  }
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(send, nullptr);
  EXPECT_NE(s.message().find("refused"), std::string::npos) << s.message();
  ChannelPair pair;
  Status good = connect_pair(transport_.get(), &pair, listener.get());
  EXPECT_TRUE(good.ok()) << good.to_string();
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

TEST_F(ShmTransportTest, OneListenerAcceptsManyChannels) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  std::vector<ChannelPair> pairs(5);
  for (auto& pair : pairs) ASSERT_TRUE(connect_pair(transport_.get(), &pair, listener.get()).ok());
  // Each pair's channels belong together: a message on pair i's sender lands at pair i.
  for (size_t i = 0; i < pairs.size(); ++i) {
    uint8_t out = static_cast<uint8_t>(i + 1), in = 0;
    void* data = &in;
    size_t cap = 1;
    int tag = 0;
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(pairs[i].recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
    ASSERT_TRUE(pairs[i].send->isend(&out, 1, 0, nullptr, &sr).ok());
    ASSERT_TRUE(wait_both(pairs[i].send.get(), sr, pairs[i].recv.get(), rr, nullptr).ok());
    EXPECT_EQ(in, out);
  }
}

}  // namespace
}  // namespace ciuic::transport
