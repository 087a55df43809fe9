// The TCP transport over loopback: ranks are threads of this process, each side driving
// its own channel and sleeping in poll() between progress calls.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/net.h"
#include "support/scoped_config.h"
#include "transports/tcp/tcp_wire.h"
#include "transports/transport.h"

namespace ciuic::transport {
namespace {

using testing::ScopedConfig;

constexpr int64_t kWaitMs = 20000;

void sleep_on(const std::vector<pollfd>& collected) {
  std::vector<pollfd> fds = collected;
  if (fds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  ::poll(fds.data(), fds.size(), 50);
}

struct ChannelPair {
  std::unique_ptr<SendChannel> send;
  std::unique_ptr<RecvChannel> recv;
};

// Accepts on one thread while this one connects, as two ranks would.
Status connect_pair(Transport* t, ChannelPair* out, Listener* listener = nullptr) {
  std::unique_ptr<Listener> own;
  if (listener == nullptr) {
    CIUIC_RETURN_IF_ERROR(t->listen(0, &own));
    listener = own.get();
  }
  Status accept_status;
  std::thread acceptor([&] {
    Deadline deadline = Deadline::after_ms(kWaitMs);
    while (out->recv == nullptr && accept_status.ok()) {
      accept_status = listener->accept(&out->recv);
      if (out->recv != nullptr || !accept_status.ok()) break;
      if (deadline.expired()) accept_status = timeout_error("accept timed out");
      std::vector<pollfd> fds;
      listener->collect_poll_fds(&fds);
      sleep_on(fds);
    }
  });
  std::unique_ptr<Connector> connector;
  Status s = t->connect(0, listener->handle(), &connector);
  Deadline deadline = Deadline::after_ms(kWaitMs);
  while (s.ok() && out->send == nullptr) {
    s = connector->progress(&out->send);
    if (out->send != nullptr || !s.ok()) break;
    if (deadline.expired()) s = timeout_error("connect timed out");
    std::vector<pollfd> fds;
    connector->collect_poll_fds(&fds);
    sleep_on(fds);
  }
  acceptor.join();  // on a connect failure it gives up at its own deadline
  return s.ok() ? accept_status : s;
}

template <typename ChannelT, typename SizeT>
Status wait_done(ChannelT* channel, Request* request, SizeT* sizes, int64_t ms = kWaitMs) {
  Deadline deadline = Deadline::after_ms(ms);
  for (;;) {
    bool done = false;
    CIUIC_RETURN_IF_ERROR(channel->test(request, &done, sizes));
    if (done) return Status::Ok();
    if (deadline.expired()) return timeout_error("request not done in time");
    std::vector<pollfd> fds;
    channel->collect_poll_fds(&fds);
    sleep_on(fds);
  }
}

// Bytes that depend on (message, offset), so a misplaced or shifted piece is caught.
uint8_t pattern(uint64_t message, uint64_t offset) {
  uint64_t x = (message + 1) * 0x9E3779B97F4A7C15ULL ^ (offset >> 3) * 0xBF58476D1CE4E5B9ULL;
  return static_cast<uint8_t>((x >> 29) ^ (x >> 47) ^ offset);
}
void fill(uint8_t* p, size_t size, uint64_t message) {
  for (size_t i = 0; i < size; ++i) p[i] = pattern(message, i);
}
// The first wrong offset, or -1.
int64_t first_mismatch(const uint8_t* p, size_t size, uint64_t message) {
  for (size_t i = 0; i < size; ++i) {
    if (p[i] != pattern(message, i)) return static_cast<int64_t>(i);
  }
  return -1;
}

class TcpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(create_transport("tcp", TransportOptions{}, &transport_).ok());
  }
  ScopedConfig ifname_{"CIUIC_SOCKET_IFNAME", "lo"};
  std::unique_ptr<Transport> transport_;
};

TEST_F(TcpTransportTest, DeviceIsTheChosenInterfaceAndHostOnly) {
  DeviceProperties p;
  ASSERT_TRUE(transport_->device_properties(0, &p).ok());
  EXPECT_EQ(p.name, "lo");
  EXPECT_EQ(p.pointer_support, kHostMemory);
  EXPECT_EQ(p.max_recvs, 8);
  EXPECT_EQ(p.max_requests, 32);
  EXPECT_FALSE(transport_->device_properties(1, &p).ok());
}

TEST_F(TcpTransportTest, HandleFitsAndNamesTheLoopbackListener) {
  static_assert(tcp::kHandleUsedBytes <= kHandleBytes);
  std::unique_ptr<Listener> a, b;
  ASSERT_TRUE(transport_->listen(0, &a).ok());
  ASSERT_TRUE(transport_->listen(0, &b).ok());
  tcp::HandleContents ca, cb;
  ASSERT_TRUE(tcp::decode_handle(a->handle(), &ca).ok());
  ASSERT_TRUE(tcp::decode_handle(b->handle(), &cb).ok());
  EXPECT_TRUE(ca.address.is_loopback());  // bound to lo's address, not to every interface
  EXPECT_NE(ca.address.port(), 0);
  EXPECT_NE(ca.token, cb.token);  // each listener has its own token
  for (size_t i = tcp::kHandleUsedBytes; i < kHandleBytes; ++i) EXPECT_EQ(a->handle().bytes[i], 0);
  ConnectHandle bad = a->handle();
  bad.bytes[0] ^= 0xff;
  std::unique_ptr<Connector> c;
  EXPECT_EQ(transport_->connect(0, bad, &c).code(), CIUIC_ERR_INVALID_ARGUMENT);
}

TEST_F(TcpTransportTest, ConnectAndAcceptFromTwoThreads) {
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

TEST_F(TcpTransportTest, ThousandsOfRandomMessagesArriveIntact) {
  stream_random_messages(transport_.get(), 3000, size_t{8} << 20, 8);
}

class TcpStripesTest : public TcpTransportTest, public ::testing::WithParamInterface<int> {};

TEST_P(TcpStripesTest, StripedMessagesArriveIntact) {
  ScopedConfig sockets("CIUIC_TCP_SOCKETS", std::to_string(GetParam()));
  ScopedConfig min_piece("CIUIC_TCP_MIN_STRIPE_BYTES", "16K");  // split even mid-size messages
  ChannelPair probe;
  ASSERT_TRUE(connect_pair(transport_.get(), &probe).ok());
  std::string expected = "(tcp, " + std::to_string(GetParam()) +
                         (GetParam() == 1 ? " socket)" : " sockets)");
  EXPECT_NE(probe.send->peer_description().find(expected), std::string::npos)
      << probe.send->peer_description();
  EXPECT_NE(probe.recv->peer_description().find(expected), std::string::npos);
  stream_random_messages(transport_.get(), 400, size_t{8} << 20, 6);
}

INSTANTIATE_TEST_SUITE_P(Stripes, TcpStripesTest, ::testing::Values(1, 2, 3, 8));

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

TEST_F(TcpTransportTest, GroupedReceivesPutEachTagInItsBuffer) {
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

TEST_F(TcpTransportTest, ReceiveLargerThanSendReportsTheRealSize) {
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

TEST_F(TcpTransportTest, SendLargerThanReceiveIsAnErrorOnTheReceiver) {
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

TEST_F(TcpTransportTest, MoreThan32OutstandingRequestsAreRefusedUntilOneIsDone) {
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
TEST_F(TcpTransportTest, ReceiverGoneMidTransferFailsTheSender) {
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

TEST_F(TcpTransportTest, SenderGoneMidTransferFailsTheReceiver) {
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

TEST_F(TcpTransportTest, SenderAbortReasonReachesTheReceiver) {
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

TEST_F(TcpTransportTest, ReceiverAbortReasonReachesTheSender) {
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

// ---- hostile and broken clients ----

std::mutex g_log_mutex;
std::vector<std::string> g_warnings;
void capture(log::Level level, uint32_t, const char*, int, const char* message) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (level == log::Level::kWarn) g_warnings.emplace_back(message);
}
bool warned_about(const std::string& text) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  for (const auto& w : g_warnings) {
    if (w.find(text) != std::string::npos) return true;
  }
  return false;
}

class TcpListenerHostileTest : public TcpTransportTest {
 protected:
  void SetUp() override {
    TcpTransportTest::SetUp();
    log::set_sink(&capture);
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_warnings.clear();
  }
  void TearDown() override { log::set_sink(nullptr); }

  // A raw TCP client of the listener; returns its local address as text.
  net::Fd raw_client(Listener* l, std::string* local) {
    tcp::HandleContents h;
    EXPECT_TRUE(tcp::decode_handle(l->handle(), &h).ok());
    net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(fd.get(), h.address.sa(), h.address.length), 0);
    net::SocketAddress me;
    me.length = sizeof(me.storage);
    ::getsockname(fd.get(), me.sa(), &me.length);
    *local = me.to_string();
    return fd;
  }
};

TEST_F(TcpListenerHostileTest, WrongTokenIsRefusedAndTheListenerStillAccepts) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  ConnectHandle forged = listener->handle();
  forged.bytes[tcp::kHandleUsedBytes - 1] ^= 0x5a;  // last token byte
  std::unique_ptr<Connector> intruder;
  ASSERT_TRUE(transport_->connect(0, forged, &intruder).ok());
  std::unique_ptr<SendChannel> never;
  std::unique_ptr<RecvChannel> accepted;
  Status s;
  Deadline deadline = Deadline::after_ms(5000);
  while (s.ok() && !deadline.expired()) {
    ASSERT_TRUE(listener->accept(&accepted).ok());
    EXPECT_EQ(accepted, nullptr);
    s = intruder->progress(&never);
    EXPECT_EQ(never, nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << s.to_string();
  EXPECT_NE(s.message().find("secret mismatch"), std::string::npos) << s.message();
  EXPECT_TRUE(warned_about("refused a connection from 127.0.0.1:"));
  ChannelPair pair;
  Status good = connect_pair(transport_.get(), &pair, listener.get());
  EXPECT_TRUE(good.ok()) << good.to_string();
}

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
