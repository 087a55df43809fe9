// A stripe's connection lost during the handshake (a lossy link can make the listener's
// kernel forget it and answer with a reset): the connector dials that stripe again within
// its deadline, the listener gives the stripe's place to the new connection, and the
// channel works. Between them sits a proxy that breaks chosen connections.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "base/net.h"
#include "support/scoped_config.h"
#include "transports/common/dial.h"
#include "transports/tcp/tcp_wire.h"
#include "unit/tcp_test_helpers.h"

namespace ciuic::transport {
namespace {

using tcp_test::TcpTransportTest;
using namespace transport_test;

// Forwards connections from its own loopback port to `upstream`, and breaks the ones it is
// told to: the client gets a reset (SO_LINGER 0) and the listener an end.
//   kOnResponse  when the client's proof arrives, before the listener sees it: the listener
//                never accepts that connection (what a listener's kernel that lost the
//                connection looks like from both ends);
//   kOnVerdict   when the listener's verdict arrives, before the client sees it: the
//                listener has accepted a stripe the client never learns about.
// Connections not to be broken may be held (nothing forwarded) until `hold_until`
// connections have arrived, so that a broken stripe's next dial comes before the others.
class BreakingProxy {
 public:
  enum class Break { kNone, kOnResponse, kOnVerdict };

  BreakingProxy(const net::SocketAddress& upstream, std::vector<std::pair<int, Break>> breaks,
                int hold_until = 0)
      : upstream_(upstream), breaks_(std::move(breaks)), hold_until_(hold_until) {
    net::SocketAddress local;
    EXPECT_TRUE(net::parse_address("127.0.0.1:0", 0, &local).ok());
    EXPECT_TRUE(net::listen_on(local, 64, &listen_fd_, &address_).ok());
    thread_ = std::thread([this] { run(); });
  }
  ~BreakingProxy() {
    stop_ = true;
    thread_.join();
  }
  const net::SocketAddress& address() const { return address_; }
  int connections() const { return accepted_.load(); }

 private:
  struct Pair {
    net::Fd client, server;
    Break how = Break::kNone;
    int listener_writes = 0;  // seen so far: the challenge, then the verdict
  };

  void run() {
    std::vector<Pair> pairs;
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_.get(), POLLIN, 0}};
      for (const Pair& p : pairs) {
        fds.push_back({p.client.get(), POLLIN, 0});
        fds.push_back({p.server.get(), POLLIN, 0});
      }
      ::poll(fds.data(), fds.size(), 5);
      net::Fd client;
      if (net::accept_one(listen_fd_.get(), &client, nullptr).ok() && client.valid()) {
        Pair p;
        p.client = std::move(client);
        p.server.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::connect(p.server.get(), upstream_.sa(), upstream_.length) != 0) continue;
        const int index = accepted_++;
        for (const auto& [at, how] : breaks_)
          if (at == index) p.how = how;
        pairs.push_back(std::move(p));
      }
      for (size_t i = 0; i < pairs.size();) {
        bool held = pairs[i].how == Break::kNone && accepted_ < hold_until_;
        if (held || forward(&pairs[i])) {
          ++i;
        } else {
          pairs.erase(pairs.begin() + static_cast<long>(i));
        }
      }
    }
  }

  static void reset_client(Pair* p) {
    linger reset{1, 0};
    ::setsockopt(p->client.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  }

  // Moves what is waiting both ways; false once the pair is finished with (both closed).
  bool forward(Pair* p) {
    char buf[65536];
    ssize_t n = ::recv(p->client.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN)) return false;
    if (n > 0 && p->how == Break::kOnResponse) {  // the client speaks only to answer the challenge
      reset_client(p);
      return false;
    }
    if (n > 0 && ::send(p->server.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) return false;
    n = ::recv(p->server.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN)) return false;
    if (n > 0 && p->how == Break::kOnVerdict && ++p->listener_writes == 2) {
      reset_client(p);
      return false;
    }
    if (n > 0 && ::send(p->client.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) return false;
    return true;
  }

  net::SocketAddress upstream_, address_;
  std::vector<std::pair<int, Break>> breaks_;
  int hold_until_;
  net::Fd listen_fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

ConnectHandle through(const ConnectHandle& real, const net::SocketAddress& proxy) {
  common::SocketHandle h;
  EXPECT_TRUE(tcp::kHandle.decode(real, &h).ok());
  h.address = proxy;
  ConnectHandle out;
  tcp::kHandle.encode(h, &out);
  return out;
}

using Break = BreakingProxy::Break;

// Connects through the proxy with `stripes` sockets, the listener accepting on a thread.
Status connect_through(Transport* t, BreakingProxy* proxy, Listener* listener, ChannelPair* pair) {
  Status accepted;
  std::thread acceptor([&] { accepted = accept_one(listener, &pair->recv, 10000); });
  Status connected = connect_to(t, through(listener->handle(), proxy->address()), &pair->send, 10000);
  acceptor.join();
  return connected.ok() ? accepted : connected;
}

// A message large enough to use every stripe arrives whole.
void expect_channel_works(ChannelPair& pair) {
  std::vector<uint8_t> out(size_t{3} << 20), in(out.size());
  fill(out.data(), out.size(), 7);
  Request *sr = nullptr, *rr = nullptr;
  ASSERT_TRUE(irecv_retry(pair.recv.get(), in.data(), in.size(), 0, &rr).ok());
  ASSERT_TRUE(isend_retry(pair.send.get(), out.data(), out.size(), 0, &sr).ok());
  size_t got = 0;
  ASSERT_TRUE(wait_both(pair.send.get(), sr, pair.recv.get(), rr, &got).ok());
  EXPECT_EQ(got, out.size());
  EXPECT_EQ(first_mismatch(in.data(), in.size(), 7), -1);
}

class TcpRedialTest : public TcpTransportTest {
 protected:
  void SetUp() override {
    TcpTransportTest::SetUp();
    ASSERT_TRUE(transport_->listen(0, &listener_).ok());
    ASSERT_TRUE(tcp::kHandle.decode(listener_->handle(), &real_).ok());
  }
  testing::ScopedConfig sockets_{"CIUIC_TCP_SOCKETS", "3"};
  std::unique_ptr<Listener> listener_;
  common::SocketHandle real_;
};

// The listener never saw the lost connection; the connector's next dial takes its place.
TEST_F(TcpRedialTest, AStripeLostBeforeTheListenerAcceptedItIsDialedAgain) {
  // The three first dials arrive together (0, 1, 2); the next one (3) is the second dial of
  // the stripe that was connection 1, and it is lost as well; its third dial (4) goes through.
  BreakingProxy proxy(real_.address, {{1, Break::kOnResponse}, {3, Break::kOnResponse}});
  ChannelPair pair;
  Status s = connect_through(transport_.get(), &proxy, listener_.get(), &pair);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(proxy.connections(), 5);
  expect_channel_works(pair);
}

// The listener accepted the stripe but its verdict was lost: the listener sees that the
// stripe's socket ended and gives its place to the next dial.
TEST_F(TcpRedialTest, AStripeAcceptedButLostBeforeItsVerdictArrivedIsReplaced) {
  // The other stripes wait until the lost one has dialed again, so that its place is still
  // open in the listener's unfinished channel.
  BreakingProxy proxy(real_.address, {{0, Break::kOnVerdict}}, /*hold_until=*/4);
  ChannelPair pair;
  Status s = connect_through(transport_.get(), &proxy, listener_.get(), &pair);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(proxy.connections(), 4);
  expect_channel_works(pair);
}

// Lost on every dial: the connector fails after its last dial, well before its deadline,
// naming what happened, rather than dialing forever.
TEST_F(TcpRedialTest, AStripeLostOnEveryDialFailsAfterTheLastDial) {
  testing::ScopedConfig one_socket{"CIUIC_TCP_SOCKETS", "1"};
  std::vector<std::pair<int, Break>> every;
  for (int i = 0; i < 2 * common::Dial::kMaxDials; ++i) every.push_back({i, Break::kOnResponse});
  BreakingProxy proxy(real_.address, every);
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) {
      std::unique_ptr<RecvChannel> ignored;
      (void)listener_->accept(&ignored);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::unique_ptr<SendChannel> send;
  Deadline quick = Deadline::after_ms(5000);
  Status s = connect_to(transport_.get(), through(listener_->handle(), proxy.address()), &send, 10000);
  stop = true;
  acceptor.join();
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("closed the connection before answering"), std::string::npos)
      << s.message();
  EXPECT_EQ(proxy.connections(), common::Dial::kMaxDials);
  EXPECT_FALSE(quick.expired());
}

}  // namespace
}  // namespace ciuic::transport
