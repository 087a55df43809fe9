// The TCP transport's I/O threads (CIUIC_TCP_THREADS > 0): striped pieces moved off the
// caller's thread arrive byte for byte, a caller asleep in poll() is woken when workers
// finish, abort and close stop the workers promptly, and channels opened and closed a
// thousand times leave no thread or descriptor behind. Peers that die while workers move
// their bytes: the Threads3 cases of transport_conformance_test.cc.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "transports/tcp/tcp_channel.h"
#include "unit/tcp_test_helpers.h"

namespace ciuic::transport {
namespace {

using tcp_test::TcpTransportTest;
using testing::ScopedConfig;
using namespace transport_test;

int count_entries(const char* dir) {
  DIR* d = ::opendir(dir);
  if (d == nullptr) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

int thread_count() { return count_entries("/proc/self/task"); }

class TcpWorkersTest : public TcpTransportTest {
 protected:
  ScopedConfig threads_{"CIUIC_TCP_THREADS", "3"};
  ScopedConfig sockets_{"CIUIC_TCP_SOCKETS", "4"};
};

// Every message of `sizes` in flight at once, each into a buffer of its own 4 KiB larger:
// sizes and bytes checked, nothing written past a message.
void send_and_check(Transport* t, const std::vector<size_t>& sizes) {
  std::vector<StreamMessage> messages;
  for (size_t i = 0; i < sizes.size(); ++i)
    messages.push_back({sizes[i], sizes[i] + 4096, static_cast<int>(i), false});
  stream_messages(t, false, messages, static_cast<int>(messages.size()));
}

TEST_F(TcpWorkersTest, LargeStripedMessagesArriveByteForByte) {
  // 8 sockets over 3 threads: worker 0 owns stripes 1, 4, 7, worker 1 owns 2, 5, worker 2
  // owns 3, 6; odd sizes put the last piece off the 4 KiB grid.
  ScopedConfig sockets("CIUIC_TCP_SOCKETS", "8");
  ScopedConfig min_piece("CIUIC_TCP_MIN_STRIPE_BYTES", "64K");
  send_and_check(transport_.get(), {(size_t{64} << 20) + 13, 100, (size_t{3} << 20) + 1, 131072,
                                    131073, 0, 5 << 20, 524288, 1, (size_t{17} << 20) - 7});
}

TEST_F(TcpWorkersTest, TinyPiecesIncludingEmptyOnesArriveByteForByte) {
  // A 1-byte minimum piece cuts even a 2-byte message: piece 0 (stripe 0's) is then empty
  // and the bytes travel on a worker's stripe alone.
  ScopedConfig min_piece("CIUIC_TCP_MIN_STRIPE_BYTES", "1");
  send_and_check(transport_.get(), {2, 3, 4095, 4096, 4097, 8192, 12289, 1, 0, 65537, 9000});
}

// A caller that sleeps in poll() on collect_poll_fds must be woken when a worker finishes
// a piece: with nothing left on socket 0, only the completion eventfd can wake it. Every
// poll() here has 10 s to become ready; a lost wake-up shows as one that times out.
TEST_F(TcpWorkersTest, PollWakesTheCallerWhenWorkersFinish) {
  ScopedConfig min_piece("CIUIC_TCP_MIN_STRIPE_BYTES", "4K");
  ChannelPair pair;
  ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
  const size_t size = size_t{4} << 20;
  std::vector<uint8_t> out(size), in(size);
  fill(out.data(), size, 3);
  auto sleep_until_done = [](auto* channel, Request* r, const char* side) {
    for (int rounds = 0; rounds < 100000; ++rounds) {
      bool done = false;
      Status s = channel->test(r, &done, nullptr);
      if (!s.ok()) return ::testing::AssertionFailure() << side << ": " << s.to_string();
      if (done) return ::testing::AssertionSuccess();
      std::vector<pollfd> fds;
      channel->collect_poll_fds(&fds);
      if (fds.empty()) return ::testing::AssertionFailure() << side << ": nothing to poll";
      if (::poll(fds.data(), fds.size(), 10000) == 0)
        return ::testing::AssertionFailure() << side << ": poll() was never woken";
    }
    return ::testing::AssertionFailure() << side << ": too many rounds";
  };
  for (int i = 0; i < 20; ++i) {
    void* data = in.data();
    size_t cap = size;
    int tag = i;
    Request *rr = nullptr, *sr = nullptr;
    ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
    ::testing::AssertionResult received = ::testing::AssertionSuccess();
    std::thread receiver([&] { received = sleep_until_done(pair.recv.get(), rr, "receiver"); });
    ASSERT_TRUE(pair.send->isend(out.data(), size, i, nullptr, &sr).ok());
    EXPECT_TRUE(sleep_until_done(pair.send.get(), sr, "sender"));
    receiver.join();
    ASSERT_TRUE(received) << "message " << i;
    ASSERT_EQ(first_mismatch(in.data(), size, 3), -1) << "message " << i;
  }
}

// abort() from another thread while the workers of both sides move a stream of large
// messages: both sides fail promptly, the aborting side with the reason, and the
// workers are gone once the channels are closed.
TEST_F(TcpWorkersTest, AbortFromAnotherThreadWhileWorkersRunEndsBothSidesPromptly) {
  const int threads_before = thread_count();
  for (bool abort_sender : {true, false}) {
    SCOPED_TRACE(abort_sender ? "sender aborts" : "receiver aborts");
    ChannelPair pair;
    ASSERT_TRUE(connect_pair(transport_.get(), &pair).ok());
    EXPECT_EQ(thread_count(), threads_before + 6) << "3 workers per channel";
    const size_t size = size_t{8} << 20;
    std::vector<uint8_t> out(size), in(size);
    std::atomic<bool> stop{false};
    Status send_status, recv_status;
    std::thread sender([&] {
      std::vector<Request*> mine;
      while (send_status.ok() && !stop) {
        Request* r = nullptr;
        send_status = pair.send->isend(out.data(), size, 0, nullptr, &r);
        if (!send_status.ok()) break;
        if (r != nullptr) mine.push_back(r);
        if (mine.size() >= 4 || r == nullptr) {
          send_status =
              wait_done(pair.send.get(), mine.front(), static_cast<size_t*>(nullptr), 5000);
          mine.erase(mine.begin());
        }
      }
    });
    std::thread receiver([&] {
      while (recv_status.ok() && !stop) {
        void* data = in.data();
        size_t cap = size;
        int tag = 0;
        Request* r = nullptr;
        recv_status = pair.recv->irecv(1, &data, &cap, &tag, nullptr, &r);
        if (recv_status.ok() && r != nullptr)
          recv_status = wait_done(pair.recv.get(), r, static_cast<size_t*>(nullptr), 5000);
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // the stream is running
    Deadline limit = Deadline::after_ms(3000);
    if (abort_sender) {
      pair.send->abort("watchdog fired on the sender");
    } else {
      pair.recv->abort("watchdog fired on the receiver");
    }
    sender.join();
    receiver.join();
    stop = true;
    EXPECT_FALSE(limit.expired()) << "abort must end both sides within seconds";
    Status& local = abort_sender ? send_status : recv_status;
    Status& remote = abort_sender ? recv_status : send_status;
    EXPECT_EQ(local.code(), CIUIC_ERR_ABORTED) << local.to_string();
    EXPECT_NE(local.message().find("watchdog fired"), std::string::npos) << local.message();
    EXPECT_EQ(remote.code(), CIUIC_ERR_REMOTE) << remote.to_string();
    EXPECT_NE(remote.message().find("127.0.0.1"), std::string::npos) << remote.message();
  }
  EXPECT_EQ(thread_count(), threads_before);
}

// The sender's handshake says whether split messages leave stripe 0 out; the receiver
// follows it whatever its own CIUIC_TCP_THREADS says. Every pairing of sender and receiver
// settings, over connected socket pairs so each side is built with its own setting.
TEST(TcpStripeLayoutTest, EitherSideMayRunWithOrWithoutThreadsInEitherLayout) {
  ScopedConfig min_piece("CIUIC_TCP_MIN_STRIPE_BYTES", "4K");
  const std::vector<size_t> sizes = {8193, 0, 1, 4096, 8192, (size_t{2} << 20) + 5, 12288,
                                     65536, 100000, (size_t{9} << 20) - 3, 5, 16384};
  std::vector<StreamMessage> messages;
  for (size_t i = 0; i < sizes.size(); ++i)
    messages.push_back({sizes[i], sizes[i] + 100, static_cast<int>(i), i % 2 == 0});
  for (const char* send_threads : {"0", "3"}) {
    for (const char* recv_threads : {"0", "3"}) {
      for (bool off : {false, true}) {
        SCOPED_TRACE(std::string("sender threads ") + send_threads + ", receiver threads " +
                     recv_threads + (off ? ", pieces off stripe 0" : ", pieces from stripe 0"));
        std::vector<net::Fd> send_fds, recv_fds;
        for (int s = 0; s < 4; ++s) {
          int fds[2];
          ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
          send_fds.emplace_back(fds[0]);
          recv_fds.emplace_back(fds[1]);
        }
        ChannelPair pair;
        {
          ScopedConfig threads("CIUIC_TCP_THREADS", send_threads);
          pair.send = std::make_unique<tcp::TcpSendChannel>(std::move(send_fds), "peer", 4096, off);
        }
        {
          ScopedConfig threads("CIUIC_TCP_THREADS", recv_threads);
          pair.recv = std::make_unique<tcp::TcpRecvChannel>(std::move(recv_fds), "peer", 4096, off);
        }
        stream_over(pair, false, messages, 6);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(TcpStripeLayoutTest, PiecesOffStripe0LeaveStripe0ToHeadersAndSmallMessages) {
  const uint64_t min = 65536;
  // Below two minimum pieces: whole on stripe 0 in both layouts.
  for (bool off : {false, true}) {
    tcp::StripeLayout l = tcp::split_message(2 * min - 1, 4, min, off);
    EXPECT_EQ(l.first, 0);
    EXPECT_EQ(l.pieces, 1);
    EXPECT_EQ(l.length(0), 2 * min - 1);
  }
  // 512 KiB over 4 sockets: four pieces from stripe 0, or three from stripe 1.
  tcp::StripeLayout from0 = tcp::split_message(512 * 1024, 4, min, false);
  tcp::StripeLayout off0 = tcp::split_message(512 * 1024, 4, min, true);
  EXPECT_EQ(from0.first, 0);
  EXPECT_EQ(from0.pieces, 4);
  EXPECT_EQ(off0.first, 1);
  EXPECT_EQ(off0.pieces, 3);
  EXPECT_EQ(off0.length(0), 0u);
  uint64_t covered = 0;
  for (int s = 1; s < 4; ++s) {
    EXPECT_EQ(off0.offset(s), covered) << "stripe " << s;
    EXPECT_EQ(off0.offset(s) % 4096, 0u) << "stripe " << s;
    covered += off0.length(s);
  }
  EXPECT_EQ(covered, 512u * 1024);
  // Two sockets: the one piece goes whole on stripe 1; one socket: stripe 0 as ever.
  tcp::StripeLayout two = tcp::split_message(1 << 20, 2, min, true);
  EXPECT_EQ(two.first, 1);
  EXPECT_EQ(two.pieces, 1);
  EXPECT_EQ(two.length(1), 1u << 20);
  tcp::StripeLayout one = tcp::split_message(1 << 20, 1, min, true);
  EXPECT_EQ(one.first, 0);
  EXPECT_EQ(one.length(0), 1u << 20);
}

TEST(TcpStripeLayoutTest, HelloCarriesTheLayoutFlagAndRefusesUnknownFlags) {
  tcp::StripeHello hello;
  hello.channel_id = 42;
  hello.stripe_index = 1;
  hello.stripe_count = 4;
  hello.flags = tcp::kHelloPiecesOffStripe0;
  hello.min_stripe_bytes = 65536;
  uint8_t bytes[tcp::kStripeHelloBytes];
  tcp::encode_hello(hello, bytes);
  tcp::StripeHello back;
  ASSERT_TRUE(tcp::decode_hello(bytes, sizeof(bytes), &back).ok());
  EXPECT_EQ(back.flags, tcp::kHelloPiecesOffStripe0);
  EXPECT_EQ(back.min_stripe_bytes, 65536u);
  bytes[12] |= 0x80;  // a flag this version does not know
  Status s = tcp::decode_hello(bytes, sizeof(bytes), &back);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("unknown stripe flags 0x00000080"), std::string::npos) << s.message();
}

TEST_F(TcpWorkersTest, ThousandOpenCloseCyclesLeakNoThreadOrDescriptor) {
  ScopedConfig min_piece("CIUIC_TCP_MIN_STRIPE_BYTES", "4K");
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  std::vector<uint8_t> out(64 * 1024), in(64 * 1024);
  auto cycle = [&](int i) {
    ChannelPair pair;
    Status s = connect_pair(transport_.get(), &pair, listener.get());
    ASSERT_TRUE(s.ok()) << "cycle " << i << ": " << s.to_string();
    if (i % 2 == 0) {  // every other channel closes with a striped message just delivered
      fill(out.data(), out.size(), static_cast<uint64_t>(i));
      void* data = in.data();
      size_t cap = in.size();
      int tag = i;
      Request *rr = nullptr, *sr = nullptr;
      ASSERT_TRUE(pair.recv->irecv(1, &data, &cap, &tag, nullptr, &rr).ok());
      ASSERT_TRUE(pair.send->isend(out.data(), out.size(), i, nullptr, &sr).ok());
      ASSERT_TRUE(wait_done(pair.send.get(), sr, static_cast<size_t*>(nullptr)).ok());
      ASSERT_TRUE(wait_done(pair.recv.get(), rr, static_cast<size_t*>(nullptr)).ok());
      ASSERT_EQ(first_mismatch(in.data(), in.size(), static_cast<uint64_t>(i)), -1)
          << "cycle " << i;
    } else if (i % 4 == 1) {  // or with a message still in the workers' hands
      Request* sr = nullptr;
      ASSERT_TRUE(pair.send->isend(out.data(), out.size(), i, nullptr, &sr).ok());
    }
  };
  cycle(0);
  ASSERT_FALSE(HasFatalFailure());
  const int threads = thread_count();
  const int fds = count_entries("/proc/self/fd");
  for (int i = 1; i <= 1000; ++i) {
    cycle(i);
    ASSERT_FALSE(HasFatalFailure()) << "cycle " << i;
  }
  EXPECT_EQ(thread_count(), threads);
  EXPECT_EQ(count_entries("/proc/self/fd"), fds);
}

}  // namespace
}  // namespace ciuic::transport
