// The semantics every transport must meet (transports/transport.h), as one suite
// parameterised by transport: messages of every size arrive intact (0, 1, odd, large, many
// in flight), grouped receives put each tag in its buffer, a receive buffer may be larger
// than the message, a message larger than its buffer fails both sides, at most
// kMaxRequests requests are outstanding, an abort reaches the peer with its reason, a
// peer that goes away is an error that names it, idle channels sleep and wake, and a
// listener refuses a wrong token and keeps serving.
//
// transport_conformance_test.cc runs it for tcp (bytes moved on the caller's thread and by
// I/O threads) and shm (large messages read by CMA and copied through the ring);
// ibverbs_conformance_test.cc for ibverbs where an RDMA device exists (the rdma-vm guest).
// Where the interface leaves a choice to the transport (which side matches tags and
// sizes, whether a send waits for its receive), the TransportCase says which, and the test
// checks that side. What only one transport does stays in that transport's own tests.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/scoped_config.h"
#include "unit/transport_test_helpers.h"

namespace ciuic::transport::transport_test {

struct TransportCase {
  const char* label;      // the tests' name suffix: "Inline", "cma"
  const char* transport;  // as registered: "tcp", "shm", "ibverbs"
  std::vector<std::pair<std::string, std::string>> config;  // CIUIC_* settings of this case
  std::string (*peer)();      // how errors and descriptions name the peer: "127.0.0.1", "pid 7"
  const char* description;    // in every peer_description(): "(tcp, 4 sockets)", "(shm, cma)"
  bool needs_device = false;  // skips, saying why, where the transport cannot be created
  // The sender matches each send to its receive's buffers (ibverbs): a send waits until
  // its receive is posted, and a tag or size mismatch is found by the sender (the receiver
  // hears why). Otherwise the receiver matches and a send leaves at once.
  bool sender_matches = false;
  bool host_memory_only = true;   // other pointer kinds are refused with a reason
  size_t token_offset = 0;        // where the handle's token starts
  const char* refused_peer = "";  // the WARN of a refusal names the peer so: "127.0.0.1:"
  // The random stream: stream_count messages of log-uniform sizes up to stream_max_bytes,
  // every 150th up to stream_large_bytes.
  int stream_count = 1000;
  size_t stream_max_bytes = size_t{1} << 20;
  size_t stream_large_bytes = size_t{1} << 20;
  size_t largest_message = size_t{64} << 20;  // the largest size of the edge sizes
  // A receiver takes part of a large message while its sender does not progress (tcp; shm
  // by CMA takes the whole of it at once): the peer-gone tests then let it start first.
  bool partial_receive = false;
  // What the survivor's error says when the sender or receiver went away mid-transfer.
  std::vector<std::string> sender_gone;
  std::vector<std::string> receiver_gone;
  // A message of this size still arrives after its sender left; the next receive's error
  // then says these.
  size_t last_send_bytes = 20000;
  std::vector<std::string> closed_sender;
  // Descriptors an idle receiver sleeps on, at least (shm: its doorbell and its socket).
  size_t idle_fds = 1;
  // Tests this transport does not join, with the reason.
  std::vector<std::pair<std::string, std::string>> not_joined;
};

// Expects `s` to fail with `code` and to say each of `texts`.
inline void expect_error(const Status& s, ciuic_result_t code,
                         const std::vector<std::string>& texts) {
  EXPECT_EQ(s.code(), code) << s.to_string();
  for (const std::string& text : texts)
    EXPECT_NE(s.message().find(text), std::string::npos)
        << "no \"" << text << "\" in " << s.message();
}

// Sends 1-byte messages until one fails (at most two: the first may have left before the
// failure reached this side); the failure.
inline Status send_until_failure(SendChannel* send) {
  static const uint8_t byte = 1;
  Status s;
  for (int i = 0; i < 2 && s.ok(); ++i) {
    Request* r = nullptr;
    s = isend_retry(send, &byte, 1, 0, &r);
    if (s.ok()) s = wait_done(send, r, static_cast<size_t*>(nullptr), 5000);
  }
  return s;
}

inline std::string case_name(const ::testing::TestParamInfo<TransportCase>& info) {
  return info.param.label;
}

class TransportConformanceTest : public ::testing::TestWithParam<TransportCase> {
 protected:
  void SetUp() override {
    const TransportCase& c = GetParam();
    for (const auto& [name, value] : c.config)
      config_.push_back(std::make_unique<testing::ScopedConfig>(name, value));
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (const auto& [name, why] : c.not_joined) {
      if (test.rfind(name + "/", 0) == 0) GTEST_SKIP() << c.transport << " does not join: " << why;
    }
    Status s = create_transport(c.transport, TransportOptions{}, &transport_);
    if (!s.ok() && c.needs_device) GTEST_SKIP() << "no usable RDMA device here: " << s.message();
    ASSERT_TRUE(s.ok()) << s.to_string();
  }

  const TransportCase& tc() const { return GetParam(); }
  ChannelPair connected() {
    ChannelPair pair;
    Status s = connect_pair(transport_.get(), &pair);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return pair;
  }
  std::vector<std::unique_ptr<testing::ScopedConfig>> config_;
  std::unique_ptr<Transport> transport_;
};

// ---- devices and connections ----

TEST_P(TransportConformanceTest, DevicesHaveTheCommonPropertiesAndIndicesAreChecked) {
  const int count = transport_->device_count();
  ASSERT_GE(count, 1);
  for (int d = 0; d < count; ++d) {
    DeviceProperties p;
    ASSERT_TRUE(transport_->device_properties(d, &p).ok());
    EXPECT_FALSE(p.name.empty());
    EXPECT_TRUE(p.pointer_support & kHostMemory);
    EXPECT_EQ(p.max_recvs, kMaxGroupedRecvs);
    EXPECT_EQ(p.max_requests, kMaxRequests);
  }
  DeviceProperties p;
  EXPECT_EQ(transport_->device_properties(count, &p).code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(transport_->device_properties(-1, &p).code(), CIUIC_ERR_INVALID_ARGUMENT);
  std::unique_ptr<Listener> listener;
  Status s = transport_->listen(count, &listener);
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << s.to_string();
  EXPECT_NE(s.message().find("not device " + std::to_string(count)), std::string::npos);
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  std::unique_ptr<Connector> connector;
  EXPECT_EQ(transport_->connect(count, listener->handle(), &connector).code(),
            CIUIC_ERR_INVALID_ARGUMENT);
}

TEST_P(TransportConformanceTest, ConnectsAndBothEndsNameThePeer) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  for (const std::string& d : {pair.send->peer_description(), pair.recv->peer_description()}) {
    EXPECT_NE(d.find(tc().peer()), std::string::npos) << d;
    EXPECT_NE(d.find(tc().description), std::string::npos) << d;
  }
}

TEST_P(TransportConformanceTest, OneListenerAcceptsManyChannels) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  std::vector<ChannelPair> pairs(5);
  for (auto& pair : pairs) ASSERT_TRUE(connect_pair(transport_.get(), &pair, listener.get()).ok());
  // Each pair's channels belong together: a message on pair i's sender lands at pair i.
  for (size_t i = 0; i < pairs.size(); ++i) {
    uint8_t out = static_cast<uint8_t>(i + 1), in = 0;
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(irecv_retry(pairs[i].recv.get(), &in, 1, 0, &rr).ok());
    ASSERT_TRUE(isend_retry(pairs[i].send.get(), &out, 1, 0, &sr).ok());
    ASSERT_TRUE(wait_both(pairs[i].send.get(), sr, pairs[i].recv.get(), rr, nullptr).ok());
    EXPECT_EQ(in, out);
  }
}

TEST_P(TransportConformanceTest, WrongTokenIsRefusedAndTheListenerKeepsWorking) {
  WarningCapture warnings;
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  ConnectHandle forged = listener->handle();
  forged.bytes[tc().token_offset + 15] ^= 0x5a;  // the token's last byte
  std::unique_ptr<Connector> intruder;
  ASSERT_TRUE(transport_->connect(0, forged, &intruder).ok());
  std::unique_ptr<SendChannel> never;
  Status s;
  Deadline deadline = Deadline::after_ms(kWaitMs);
  while (s.ok() && !deadline.expired()) {
    std::unique_ptr<RecvChannel> accepted;
    ASSERT_TRUE(listener->accept(&accepted).ok());
    EXPECT_EQ(accepted, nullptr) << "a connection with the wrong token was accepted";
    s = intruder->progress(&never);
    EXPECT_EQ(never, nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  expect_error(s, CIUIC_ERR_INVALID_ARGUMENT, {"refused", "secret mismatch"});
  // The listener said whom it refused once the refusal left (accept() sends it).
  for (int i = 0; i < 1000 && !warnings.saw("refused a connection from "); ++i) {
    std::unique_ptr<RecvChannel> none;
    ASSERT_TRUE(listener->accept(&none).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(warnings.saw(std::string("refused a connection from ") + tc().refused_peer));
  ChannelPair pair;
  Status good = connect_pair(transport_.get(), &pair, listener.get());
  EXPECT_TRUE(good.ok()) << good.to_string();
}

TEST_P(TransportConformanceTest, OtherPointerKindsAreRefusedWithAReason) {
  if (!tc().host_memory_only) GTEST_SKIP() << tc().transport << " registers GPU memory";
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::unique_ptr<MemoryRegion> region;
  char buf[16];
  EXPECT_TRUE(pair.send->register_memory(buf, sizeof(buf), kHostMemory, &region).ok());
  EXPECT_TRUE(pair.recv->register_memory(buf, sizeof(buf), kHostMemory, &region).ok());
  for (int kind : {kCudaMemory, kDmabufMemory}) {
    Status s = pair.recv->register_memory(buf, sizeof(buf), kind, &region);
    expect_error(s, CIUIC_ERR_UNSUPPORTED, {"host memory only"});
    s = pair.send->register_memory(buf, sizeof(buf), kind, &region);
    expect_error(s, CIUIC_ERR_UNSUPPORTED, {"host memory only"});
  }
}

// ---- data ----

// Each size once, receive buffer 64 bytes larger than the message and pre-filled, so a
// short, long or misplaced write shows. Sizes around 32 KiB cross shm's eager size.
TEST_P(TransportConformanceTest, EdgeSizesArriveIntact) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  const size_t sizes[] = {0,
                          1,
                          7,
                          32 * 1024 - 1,
                          32 * 1024,
                          32 * 1024 + 1,
                          65537,
                          (1u << 20) + 3,
                          tc().largest_message};
  uint64_t message = 0;
  for (size_t size : sizes) {
    std::vector<uint8_t> out(size), in(size + 64, 0xee);
    fill(out.data(), size, message);
    int tag = static_cast<int>(message);
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), tag, &rr).ok());
    ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), size, tag, &sr).ok());
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

TEST_P(TransportConformanceTest, ThousandsOfRandomMessagesArriveIntact) {
  stream_messages(
      transport_.get(), tc().sender_matches,
      random_stream(tc().stream_count, tc().stream_max_bytes, tc().stream_large_bytes, 12345), 8);
}

// A full window: kMaxRequests receives of odd sizes (0 and 1 among them) posted at once,
// then as many sends from another thread; each lands in its own, larger buffer.
TEST_P(TransportConformanceTest, AFullWindowInFlightArrivesInOrder) {
  std::vector<StreamMessage> messages;
  for (int i = 0; i < kMaxRequests; ++i) {
    size_t size = i == 0 ? 0 : i == 1 ? 1 : (size_t{1} << (i % 20)) * 3 + static_cast<size_t>(i);
    messages.push_back({size, size + 4096, i % 3, i % 2 == 0});
  }
  stream_messages(transport_.get(), tc().sender_matches, messages, kMaxRequests);
}

TEST_P(TransportConformanceTest, GroupedReceivesPutEachTagInItsBuffer) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::mt19937 rng(7);
  for (int n = 1; n <= kMaxGroupedRecvs; ++n) {
    // Receive tags in one order, send them in another; sizes differ per tag and cross
    // shm's eager size.
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
    ASSERT_TRUE(
        irecv_group_retry(pair.recv.get(), n, data.data(), caps.data(), tags.data(), &rr).ok());
    std::vector<std::vector<uint8_t>> sbuf;
    std::vector<Request*> sends;
    for (int tag : send_order) {
      sbuf.emplace_back(size_of(tag));
      fill(sbuf.back().data(), sbuf.back().size(), static_cast<uint64_t>(tag));
      Request* r = nullptr;
      ASSERT_TRUE(
          isend_retry(pair.send.get(), sbuf.back().data(), sbuf.back().size(), tag, &r).ok());
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

// One tag on two buffers: its messages fill them in order; empty messages included. More
// rounds than requests, so every request slot is reused.
TEST_P(TransportConformanceTest, RepeatedTagsFillTheirBuffersInOrder) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  for (int round = 0; round < 40; ++round) {
    std::vector<uint8_t> a(100, 0), b(5000, 0), c(70000, 0);
    void* data[3] = {a.data(), b.data(), c.data()};
    size_t sizes[3] = {a.size(), b.size(), c.size()};
    int tags[3] = {7, 3, 7};
    Request* recv = nullptr;
    ASSERT_TRUE(irecv_group_retry(pair.recv.get(), 3, data, sizes, tags, &recv).ok());
    // Tag 3 first, then two tag-7 sends that take the tag-7 buffers in order.
    std::vector<uint8_t> s3(4000), s7a(60), s7b(round % 2 ? 0 : 65536);
    fill(s3.data(), s3.size(), 3 + round);
    fill(s7a.data(), s7a.size(), 70 + round);
    fill(s7b.data(), s7b.size(), 700 + round);
    std::vector<Request*> sends;
    for (auto [buf, tag] : {std::pair{&s3, 3}, {&s7a, 7}, {&s7b, 7}}) {
      Request* r = nullptr;
      ASSERT_TRUE(isend_retry(pair.send.get(), buf->data(), buf->size(), tag, &r).ok());
      sends.push_back(r);
    }
    size_t got[3] = {};
    for (size_t i = 0; i < sends.size(); ++i) {
      Status s =
          wait_both(pair.send.get(), sends[i], pair.recv.get(), i == 0 ? recv : nullptr, got);
      ASSERT_TRUE(s.ok()) << s.to_string();
    }
    EXPECT_EQ(got[0], s7a.size());
    EXPECT_EQ(got[1], s3.size());
    EXPECT_EQ(got[2], s7b.size());
    EXPECT_EQ(first_mismatch(b.data(), got[1], 3 + round), -1);
    EXPECT_EQ(first_mismatch(a.data(), got[0], 70 + round), -1);
    EXPECT_EQ(first_mismatch(c.data(), got[2], 700 + round), -1);
  }
}

TEST_P(TransportConformanceTest, ReceiveLargerThanSendReportsTheRealSize) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  for (size_t size : {size_t{1000}, size_t{100000}}) {
    std::vector<uint8_t> out(size), in(5 * size, 0xee);
    fill(out.data(), out.size(), size);
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
    ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), out.size(), 0, &sr).ok());
    size_t got = 0;
    ASSERT_TRUE(wait_both(pair.send.get(), sr, pair.recv.get(), rr, &got).ok());
    EXPECT_EQ(got, size);
    EXPECT_EQ(first_mismatch(in.data(), size, size), -1);
    EXPECT_EQ(in[size], 0xee);  // nothing written past the message
  }
}

// A message that its receive cannot take (too large, or no buffer with its tag): the side
// that matches fails with INVALID_ARGUMENT, the other hears why (CIUIC_ERR_REMOTE), and
// both messages say what did not match.
inline void expect_mismatch_fails_both_sides(const TransportCase& c, ChannelPair* pair, Request* rr,
                                             const std::vector<uint8_t>& out, int tag,
                                             const std::vector<std::string>& texts) {
  Request* sr = nullptr;
  Status sent = isend_retry(pair->send.get(), out.data(), out.size(), tag, &sr);
  Status received = wait_done(pair->recv.get(), rr, static_cast<size_t*>(nullptr), 10000);
  // The send either left whole before the receiver looked (then a later one fails) or
  // fails itself.
  if (sent.ok()) sent = wait_done(pair->send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  if (sent.ok()) sent = send_until_failure(pair->send.get());
  const Status& matcher = c.sender_matches ? sent : received;
  const Status& other = c.sender_matches ? received : sent;
  expect_error(matcher, CIUIC_ERR_INVALID_ARGUMENT, texts);
  expect_error(other, CIUIC_ERR_REMOTE, texts);
  // Later calls fail at once, with the same cause.
  uint8_t byte = 0;
  void* data = &byte;
  size_t capacity = 1;
  Request* again = nullptr;
  Status later = pair->recv->irecv(1, &data, &capacity, &tag, nullptr, &again);
  EXPECT_FALSE(later.ok());
  EXPECT_EQ(again, nullptr);
}

// Small (shm: through the ring) and large (the large-message paths).
TEST_P(TransportConformanceTest, SendLargerThanReceiveFailsBothSides) {
  for (size_t size : {size_t{5000}, size_t{500000}}) {
    SCOPED_TRACE(std::to_string(size) + "-byte send");
    ChannelPair pair = connected();
    ASSERT_NE(pair.send, nullptr);
    const size_t small = size / 5;
    std::vector<uint8_t> out(size), in(small);
    Request* rr = nullptr;
    ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 4, &rr).ok());
    expect_mismatch_fails_both_sides(tc(), &pair, rr, out, 4,
                                     {std::to_string(size), std::to_string(small) + "-byte"});
  }
}

TEST_P(TransportConformanceTest, TagWithNoBufferFailsBothSidesNamingTheTags) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::vector<uint8_t> a(100), b(100), out(50);
  void* data[2] = {a.data(), b.data()};
  size_t caps[2] = {a.size(), b.size()};
  int tags[2] = {3, 5};
  Request* rr = nullptr;
  ASSERT_TRUE(irecv_group_retry(pair.recv.get(), 2, data, caps, tags, &rr).ok());
  expect_mismatch_fails_both_sides(tc(), &pair, rr, out, 9, {"tag 9", "tags 3, 5"});
}

TEST_P(TransportConformanceTest, MoreThan32OutstandingRequestsAreRefusedUntilOneIsDone) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  // Large enough that sends stay outstanding until the receiver takes them (shm copy:
  // 32 x 100 KB do not fit the 1 MiB ring).
  std::vector<uint8_t> out(100000);
  fill(out.data(), out.size(), 3);
  std::vector<std::vector<uint8_t>> in(kMaxRequests + 1, std::vector<uint8_t>(out.size()));
  std::vector<Request*> recvs;
  for (int i = 0; i < kMaxRequests; ++i) {
    Request* r = nullptr;
    ASSERT_TRUE(
        irecv_retry(pair.recv.get(), in[static_cast<size_t>(i)].data(), out.size(), 0, &r).ok())
        << "receive " << i;
    recvs.push_back(r);
  }
  void* data = in[kMaxRequests].data();
  size_t cap = out.size();
  int tag = 0;
  Request* extra = nullptr;
  ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &extra).ok());
  EXPECT_EQ(extra, nullptr) << "a receive beyond kMaxRequests was taken";
  std::vector<Request*> sends;
  for (int i = 0; i < kMaxRequests; ++i) {
    Request* r = nullptr;
    if (tc().sender_matches) {
      ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), out.size(), 0, &r).ok()) << "send " << i;
    } else {
      ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &r).ok());
      ASSERT_NE(r, nullptr) << "send " << i;
    }
    sends.push_back(r);
  }
  ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &extra).ok());
  EXPECT_EQ(extra, nullptr) << "a send beyond kMaxRequests was taken";
  ASSERT_TRUE(wait_both(pair.send.get(), sends[0], pair.recv.get(), recvs[0], nullptr).ok());
  // One of each is done: one more of each is taken.
  Request* last = nullptr;
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in[kMaxRequests].data(), out.size(), 0, &last).ok());
  recvs.push_back(last);
  if (tc().sender_matches) {
    ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), out.size(), 0, &extra).ok());
  } else {
    ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &extra).ok());
    EXPECT_NE(extra, nullptr);
  }
  sends.push_back(extra);
  for (size_t i = 1; i < recvs.size(); ++i)
    ASSERT_TRUE(wait_both(pair.send.get(), sends[i], pair.recv.get(), recvs[i], nullptr).ok());
  for (size_t i = 0; i < in.size(); ++i)
    EXPECT_EQ(first_mismatch(in[i].data(), out.size(), 3), -1) << "receive " << i;
}

// ---- abort and peers that go away ----

TEST_P(TransportConformanceTest, SenderAbortReasonReachesTheReceiver) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::vector<uint8_t> in(100);
  Request* rr = nullptr;
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  pair.send->abort("rank 3 ran out of memory");
  Request* sr = nullptr;
  uint8_t byte = 0;
  expect_error(pair.send->isend(&byte, 1, 0, nullptr, &sr), CIUIC_ERR_ABORTED,
               {"rank 3 ran out of memory"});
  EXPECT_EQ(sr, nullptr);
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  expect_error(s, CIUIC_ERR_REMOTE, {"rank 3 ran out of memory", tc().peer()});
  // Later requests fail the same way.
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  EXPECT_NE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).message().find("out of memory"),
            std::string::npos);
}

TEST_P(TransportConformanceTest, ReceiverAbortReasonReachesTheSender) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::vector<uint8_t> out(size_t{32} << 20);
  Request* sr = nullptr;
  // A send under way when the receiver gives up (where sends need no receive).
  if (!tc().sender_matches) {
    ASSERT_TRUE(pair.send->isend(out.data(), out.size(), 0, nullptr, &sr).ok());
  }
  pair.recv->abort("checkpoint failed on rank 1");
  Status s = sr != nullptr ? wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000)
                           : Status::Ok();
  if (s.ok()) s = send_until_failure(pair.send.get());
  expect_error(s, CIUIC_ERR_REMOTE, {"checkpoint failed on rank 1", tc().peer()});
}

TEST_P(TransportConformanceTest, AbortFromAnotherThreadEndsAWaitingReceivePromptly) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::vector<uint8_t> in(size_t{1} << 20);
  Request* rr = nullptr;
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pair.recv->abort("watchdog fired");
  });
  Status s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  aborter.join();
  expect_error(s, CIUIC_ERR_ABORTED, {"watchdog fired"});
  expect_error(send_until_failure(pair.send.get()), CIUIC_ERR_REMOTE, {"watchdog fired"});
}

// Abort while the other side is inside a long transfer (shm: a long CMA read or copy) on
// another thread: both sides stop, the receiver with the sender's reason.
TEST_P(TransportConformanceTest, AbortDuringALargeTransferStopsBothSides) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::vector<uint8_t> out(size_t{64} << 20), in(out.size());
  std::thread receiver([&] {
    for (int i = 0; i < 1000; ++i) {
      Request* rr = nullptr;
      if (!irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok()) return;
      if (!wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 10000).ok()) return;
    }
  });
  Status s;
  for (int i = 0; i < 1000 && s.ok(); ++i) {
    Request* sr = nullptr;
    s = isend_retry(pair.send.get(), out.data(), out.size(), 0, &sr);
    if (s.ok() && i == 2) pair.send->abort("stop now");
    if (s.ok()) s = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 10000);
  }
  receiver.join();
  EXPECT_EQ(s.code(), CIUIC_ERR_ABORTED) << s.to_string();
  Request* rr = nullptr;
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  expect_error(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr), CIUIC_ERR_REMOTE,
               {"stop now"});
}

// A peer that goes away with a 64 MiB message under way: the survivor fails, naming it.
inline void leave_mid_transfer(Transport* t, const TransportCase& c, bool sender_leaves) {
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(t, &pair).ok());
  std::vector<uint8_t> out(size_t{64} << 20), in(out.size());
  Request *rr = nullptr, *sr = nullptr;
  // A receive under way, but for a receiver that leaves only where it takes part of a
  // message at a time (shm by CMA would take it whole) or a send needs it.
  if (sender_leaves || c.partial_receive || c.sender_matches) {
    ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  }
  ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), out.size(), 0, &sr).ok());
  bool done = false;
  for (int i = 0; i < 20 && c.partial_receive; ++i) {
    ASSERT_TRUE(pair.recv->test(rr, &done, nullptr).ok());  // some bytes move
    ASSERT_FALSE(done);
  }
  Status s;
  if (sender_leaves) {
    pair.send.reset();  // the sending side closes with its send unfinished
    s = wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr), 5000);
  } else {
    pair.recv.reset();  // the receiving process "exits"
    s = wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr), 5000);
  }
  std::vector<std::string> texts = sender_leaves ? c.sender_gone : c.receiver_gone;
  texts.push_back(c.peer());
  expect_error(s, CIUIC_ERR_REMOTE, texts);
}

TEST_P(TransportConformanceTest, SenderGoneMidTransferFailsTheReceiver) {
  leave_mid_transfer(transport_.get(), tc(), /*sender_leaves=*/true);
}

TEST_P(TransportConformanceTest, ReceiverGoneMidTransferFailsTheSender) {
  leave_mid_transfer(transport_.get(), tc(), /*sender_leaves=*/false);
}

// The last message of a sender that leaves at once is still delivered (tcp: its pieces on
// the other sockets outlive socket 0's end); a further receive can never be filled, and
// that is the error.
TEST_P(TransportConformanceTest, SenderLeavingRightAfterItsLastSendLosesNothing) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::vector<uint8_t> out(tc().last_send_bytes);
  fill(out.data(), out.size(), 7);
  Request* sr = nullptr;
  ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), out.size(), 0, &sr).ok());
  ASSERT_TRUE(wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr)).ok());
  pair.send.reset();  // the sender is gone before the receiver reads anything
  std::vector<uint8_t> in(out.size());
  Request* rr = nullptr;
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  size_t got = 0;
  Status s = wait_done(pair.recv.get(), rr, &got);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(got, out.size());
  EXPECT_EQ(first_mismatch(in.data(), in.size(), 7), -1);
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  s = wait_done(pair.recv.get(), rr, &got, 5000);
  expect_error(s, CIUIC_ERR_REMOTE, tc().closed_sender);
}

// ---- waiting without spinning ----

// A receiver with nothing to receive sleeps: once it has handled its own work (ibverbs:
// the completion of its FIFO write), its descriptors stay quiet. A send wakes it.
TEST_P(TransportConformanceTest, IdleReceiverSleepsAndASendWakesIt) {
  ChannelPair pair = connected();
  ASSERT_NE(pair.send, nullptr);
  std::vector<uint8_t> out(size_t{3} << 20), in(out.size());
  fill(out.data(), out.size(), 11);
  Request* rr = nullptr;
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  std::vector<pollfd> fds;
  bool quiet = false;
  for (int round = 0; round < 3 && !quiet; ++round) {
    bool done = false;
    ASSERT_TRUE(pair.recv->test(rr, &done, nullptr).ok());
    ASSERT_FALSE(done);
    fds.clear();
    pair.recv->collect_poll_fds(&fds);
    ASSERT_GE(fds.size(), tc().idle_fds);
    quiet = ::poll(fds.data(), fds.size(), 200) == 0;
  }
  EXPECT_TRUE(quiet) << "a descriptor stays ready with nothing sent";
  Status send_status;
  std::thread sender([&] {
    Request* sr = nullptr;
    send_status = isend_retry(pair.send.get(), out.data(), out.size(), 0, &sr);
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
// timeout: a lost wake-up would stall a round for that long and fail the deadline.
TEST_P(TransportConformanceTest, PingPongWhileSleepingNeverLosesAWakeup) {
  ChannelPair ab = connected(), ba = connected();
  ASSERT_NE(ab.send, nullptr);
  ASSERT_NE(ba.send, nullptr);
  constexpr int kRounds = 1500;
  auto size_of = [](int round) -> size_t {
    return round % 7 == 3 ? 200000 + static_cast<size_t>(round) : static_cast<size_t>(round % 50);
  };
  // Waits sleeping in poll() for 5 s at a time: never woken means never done.
  auto sleep_wait = [](auto* channel, Request* r, size_t* got) {
    return wait_done(channel, r, got, 20000, 5000);
  };
  Status b_status;
  std::thread b([&] {
    std::vector<uint8_t> buf(300000);
    for (int round = 0; round < kRounds && b_status.ok(); ++round) {
      size_t got = 0;
      Request* rr = nullptr;
      b_status = irecv_retry(ab.recv.get(), buf.data(), buf.size(), round, &rr);
      if (b_status.ok()) b_status = sleep_wait(ab.recv.get(), rr, &got);
      if (b_status.ok() && (got != size_of(round) ||
                            first_mismatch(buf.data(), got, static_cast<uint64_t>(round)) != -1))
        b_status = internal_error("round " + std::to_string(round) + ": wrong data at b");
      Request* sr = nullptr;
      if (b_status.ok()) b_status = isend_retry(ba.send.get(), buf.data(), got, round, &sr);
      if (b_status.ok()) b_status = sleep_wait(ba.send.get(), sr, nullptr);
    }
  });
  std::vector<uint8_t> out(300000), back(300000);
  Status a_status;
  for (int round = 0; round < kRounds && a_status.ok(); ++round) {
    fill(out.data(), size_of(round), static_cast<uint64_t>(round));
    Request* rr = nullptr;
    // The reply's receive is posted before the message leaves (a transport whose sends
    // wait for their receive could otherwise not answer).
    a_status = irecv_retry(ba.recv.get(), back.data(), back.size(), round, &rr);
    Request* sr = nullptr;
    if (a_status.ok())
      a_status = isend_retry(ab.send.get(), out.data(), size_of(round), round, &sr);
    if (a_status.ok()) a_status = sleep_wait(ab.send.get(), sr, nullptr);
    size_t got = 0;
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

}  // namespace ciuic::transport::transport_test
