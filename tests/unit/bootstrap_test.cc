// The bootstrap store and its clients, ranks as threads of one process over loopback.
// Hostile clients are in bootstrap_hostile_test.cc.
#include "core/bootstrap.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "unit/bootstrap_test_helpers.h"

namespace ciuic::core {
namespace {

using namespace bootstrap_testing;  // NOLINT: test helpers

// ---- unique id ----

TEST(UniqueIdTest, RoundTripKeepsAddressAndSecret) {
  UniqueId id;
  ASSERT_TRUE(net::parse_address("10.1.2.3", 29501, &id.root).ok());
  id.secret = random_key();
  ciuic_unique_id_t raw;
  id.encode(&raw);
  UniqueId back;
  Status s = UniqueId::decode(raw, &back);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(back.root.to_string(), "10.1.2.3:29501");
  EXPECT_EQ(back.secret, id.secret);

  ASSERT_TRUE(net::parse_address("[fd00::7]:1234", 0, &id.root).ok());
  id.encode(&raw);
  ASSERT_TRUE(UniqueId::decode(raw, &back).ok());
  EXPECT_EQ(back.root.to_string(), "[fd00::7]:1234");
}

TEST(UniqueIdTest, BadMagicAndVersionAreRefused) {
  UniqueId id;
  id.root = loopback(5000);
  ciuic_unique_id_t raw;
  id.encode(&raw);
  ciuic_unique_id_t bad = raw;
  bad.internal[0] ^= 0x55;
  UniqueId out;
  Status s = UniqueId::decode(bad, &out);
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("not a ciuic unique id"), std::string::npos) << s.message();

  bad = raw;
  bad.internal[4] = static_cast<char>(kBootstrapVersion + 1);
  s = UniqueId::decode(bad, &out);
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("version " + std::to_string(kBootstrapVersion + 1)),
            std::string::npos) << s.message();
}

// ---- allgather ----

class AllgatherTest : public ::testing::TestWithParam<int> {};

TEST_P(AllgatherTest, EveryRankGetsEveryValueInRankOrder) {
  Server s = start_server();
  EXPECT_EQ(run_allgathers(s.id, "world", GetParam(), 4, 10000), "");
}

INSTANTIATE_TEST_SUITE_P(Ranks, AllgatherTest, ::testing::Values(1, 2, 3, 8, 64));

TEST(StoreTest, LargeValuesCrossIntact) {
  Server s = start_server();
  constexpr int kRanks = 3;
  std::atomic<int> good{0};
  testing::run_threads(kRanks, [&](int rank) {
    std::unique_ptr<StoreClient> client;
    ASSERT_TRUE(StoreClient::connect(s.id, "big", rank, kRanks, Deadline::after_ms(5000), &client).ok());
    Bytes mine((size_t{4} << 20) + static_cast<size_t>(rank), static_cast<uint8_t>(rank + 1));
    std::vector<Bytes> all;
    Status st = client->allgather("big", mine, &all, Deadline::after_ms(10000));
    ASSERT_TRUE(st.ok()) << st.to_string();
    for (int r = 0; r < kRanks; ++r) {
      ASSERT_EQ(all[static_cast<size_t>(r)].size(), (size_t{4} << 20) + static_cast<size_t>(r));
      ASSERT_EQ(all[static_cast<size_t>(r)].back(), r + 1);
    }
    ++good;
  });
  EXPECT_EQ(good.load(), kRanks);
}

TEST(StoreTest, NamespacesAreIsolated) {
  Server s = start_server();
  std::string a, b;
  // Same tags, different sizes, at the same time on one server.
  std::thread ta([&] { a = run_allgathers(s.id, "comm-a", 2, 3, 10000); });
  std::thread tb([&] { b = run_allgathers(s.id, "comm-b", 5, 3, 10000); });
  ta.join();
  tb.join();
  EXPECT_EQ(a, "");
  EXPECT_EQ(b, "");
}

TEST(StoreTest, WrongSecretIsRefusedAndTheJobGoesOn) {
  LogCapture logs;
  Server s = start_server();
  UniqueId impostor = s.id;
  impostor.secret[3] ^= 1;
  std::unique_ptr<StoreClient> client;
  Status st = StoreClient::connect(impostor, "world", 0, 2, Deadline::after_ms(2000), &client);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(st.message().find("secret"), std::string::npos) << st.message();
  EXPECT_TRUE(logs.saw("secret", "127.0.0.1:"));
  // Its rank 0 was not registered: the real rank 0 joins and the allgather completes.
  EXPECT_EQ(run_allgathers(s.id, "world", 2, 2, 5000), "");
}

TEST(StoreTest, DuplicateRankAndMismatchedSizeAreRefused) {
  Server s = start_server();
  std::unique_ptr<StoreClient> first, again;
  ASSERT_TRUE(StoreClient::connect(s.id, "world", 2, 4, Deadline::after_ms(2000), &first).ok());
  Status st = StoreClient::connect(s.id, "world", 2, 4, Deadline::after_ms(2000), &again);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(st.message().find("rank 2 already joined namespace 'world' from 127.0.0.1:"),
            std::string::npos) << st.message();
  st = StoreClient::connect(s.id, "world", 1, 8, Deadline::after_ms(2000), &again);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(st.message().find("has 8 ranks, but it has 4"), std::string::npos) << st.message();
  // Out of range on the client side.
  st = StoreClient::connect(s.id, "world", 4, 4, Deadline::after_ms(2000), &again);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
}

TEST(StoreTest, RankOutOfRangeIsRefusedByTheServer) {
  Server s = start_server();
  std::string local;
  net::Fd fd;
  ASSERT_TRUE(net::connect_start(s.id.root, &fd).ok());
  bool ready = false;
  ASSERT_TRUE(net::wait_fd(fd.get(), POLLOUT, 2000, &ready).ok());
  Handshake hs(fd.get(), Handshake::Role::kClient, kBootstrapMagic, kBootstrapVersion, s.id.secret,
               store::encode_join({"world", 7, 4}), Deadline::after_ms(2000), "test");
  Status st;
  for (;;) {
    bool done = false;
    st = hs.progress(&done);
    if (!st.ok() || done) break;
    ASSERT_TRUE(net::wait_fd(fd.get(), hs.wanted_events(), 100, &ready).ok());
  }
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(st.message().find("rank 7 out of range for 4 ranks"), std::string::npos)
      << st.message();
}

TEST(StoreTest, RankThatLeavesBeforeContributingIsNamed) {
  Server s = start_server();
  std::vector<Status> results(3);
  std::vector<int64_t> took(3);
  testing::run_threads(3, [&](int rank) {
    std::unique_ptr<StoreClient> client;
    ASSERT_TRUE(StoreClient::connect(s.id, "world", rank, 3, Deadline::after_ms(5000), &client).ok());
    if (rank == 2) {
      std::this_thread::sleep_for(milliseconds(200));
      return;  // closes its connection without contributing
    }
    std::vector<Bytes> all;
    Clock::time_point start = Clock::now();
    results[static_cast<size_t>(rank)] =
        client->allgather("addresses", value_of(rank, 0), &all, Deadline::after_ms(10000));
    took[static_cast<size_t>(rank)] = elapsed_ms(start);
  });
  for (int rank = 0; rank < 2; ++rank) {
    const Status& st = results[static_cast<size_t>(rank)];
    EXPECT_EQ(st.code(), CIUIC_ERR_REMOTE) << st.to_string();
    EXPECT_NE(st.message().find("rank 2 left"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("'addresses'"), std::string::npos) << st.message();
    EXPECT_LT(took[static_cast<size_t>(rank)], 2000);
  }
}

TEST(StoreTest, AllgatherTimeoutNamesTheMissingRanks) {
  Server s = start_server();
  std::vector<Status> results(2);
  std::vector<int64_t> took(2);
  std::unique_ptr<StoreClient> silent;  // rank 2 joins but never calls allgather
  ASSERT_TRUE(StoreClient::connect(s.id, "world", 2, 4, Deadline::after_ms(2000), &silent).ok());
  testing::run_threads(2, [&](int rank) {
    std::unique_ptr<StoreClient> client;
    ASSERT_TRUE(StoreClient::connect(s.id, "world", rank, 4, Deadline::after_ms(2000), &client).ok());
    std::vector<Bytes> all;
    Clock::time_point start = Clock::now();
    results[static_cast<size_t>(rank)] =
        client->allgather("hosts", value_of(rank, 0), &all, Deadline::after_ms(300));
    took[static_cast<size_t>(rank)] = elapsed_ms(start);
  });
  for (int rank = 0; rank < 2; ++rank) {
    const Status& st = results[static_cast<size_t>(rank)];
    EXPECT_EQ(st.code(), CIUIC_ERR_TIMEOUT) << st.to_string();
    EXPECT_NE(st.message().find("'hosts'"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("missing ranks: 2, 3"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("never connected to the root: 3"), std::string::npos)
        << st.message();
    EXPECT_GE(took[static_cast<size_t>(rank)], 290);
    EXPECT_LT(took[static_cast<size_t>(rank)], 800);
  }
}

TEST(StoreTest, RankThatTimedOutCanRetryTheSameAllgather) {
  Server s = start_server();
  std::unique_ptr<StoreClient> early, late;
  ASSERT_TRUE(StoreClient::connect(s.id, "world", 0, 2, Deadline::after_ms(2000), &early).ok());
  ASSERT_TRUE(StoreClient::connect(s.id, "world", 1, 2, Deadline::after_ms(2000), &late).ok());
  std::vector<Bytes> all;
  Status st = early->allgather("hosts", value_of(0, 1), &all, Deadline::after_ms(200));
  ASSERT_EQ(st.code(), CIUIC_ERR_TIMEOUT) << st.to_string();
  EXPECT_NE(st.message().find("missing ranks: 1 (of 2)"), std::string::npos) << st.message();
  // The root answered the timeout, so the connection is still in step: retry, new value.
  std::vector<Bytes> late_all;
  std::thread t([&] {
    Status lst = late->allgather("hosts", value_of(1, 1), &late_all, Deadline::after_ms(2000));
    EXPECT_TRUE(lst.ok()) << lst.to_string();
  });
  // Rank 1 arrives first: it must wait for rank 0's retry, not complete with the value
  // rank 0 withdrew when it timed out.
  std::this_thread::sleep_for(milliseconds(100));
  st = early->allgather("hosts", value_of(0, 2), &all, Deadline::after_ms(2000));
  t.join();
  ASSERT_TRUE(st.ok()) << st.to_string();
  std::vector<Bytes> expected = {value_of(0, 2), value_of(1, 1)};
  EXPECT_EQ(all, expected);
  EXPECT_EQ(late_all, expected);
}

TEST(StoreTest, UnreachableRootTimesOutWithinItsDeadline) {
  net::SocketAddress nobody = loopback();
  {
    net::Fd probe;
    ASSERT_TRUE(net::listen_on(loopback(), 1, &probe, &nobody).ok());
  }  // closed: nothing listens on that port now
  UniqueId id;
  id.root = nobody;
  id.secret = random_key();
  std::unique_ptr<StoreClient> client;
  Clock::time_point start = Clock::now();
  Status st = StoreClient::connect(id, "world", 1, 2, Deadline::after_ms(300), &client);
  int64_t took = elapsed_ms(start);
  EXPECT_EQ(st.code(), CIUIC_ERR_TIMEOUT);
  EXPECT_NE(st.message().find("cannot reach the bootstrap root at " + nobody.to_string() +
                              " within 300 ms"),
            std::string::npos) << st.message();
  EXPECT_NE(st.message().find("CIUIC_ROOT"), std::string::npos);
  EXPECT_GE(took, 290);
  EXPECT_LT(took, 600);
}

TEST(StoreTest, ClientWaitsForARootThatStartsLate) {
  net::SocketAddress address = loopback();
  {
    net::Fd probe;
    ASSERT_TRUE(net::listen_on(loopback(), 1, &probe, &address).ok());
  }
  Key128 secret = random_key();
  std::shared_ptr<StoreServer> server;
  std::thread late([&] {
    std::this_thread::sleep_for(milliseconds(300));
    Status st = StoreServer::start(address, secret, &server);
    EXPECT_TRUE(st.ok()) << st.to_string();
  });
  UniqueId id{address, secret};
  std::string failure = run_allgathers(id, "world", 2, 1, 5000);
  late.join();
  EXPECT_EQ(failure, "");
}

TEST(StoreTest, ShutsDownPromptlyAndWaitersHearOfIt) {
  Server s = start_server();
  std::unique_ptr<StoreClient> client;
  ASSERT_TRUE(StoreClient::connect(s.id, "world", 0, 2, Deadline::after_ms(2000), &client).ok());
  Status waited;
  int64_t waited_ms = 0;
  std::thread waiter([&] {
    std::vector<Bytes> all;
    Clock::time_point start = Clock::now();
    waited = client->allgather("never", {1, 2, 3}, &all, Deadline::after_ms(10000));
    waited_ms = elapsed_ms(start);
  });
  std::this_thread::sleep_for(milliseconds(100));
  Clock::time_point start = Clock::now();
  s.server.reset();
  int64_t stop_ms = elapsed_ms(start);
  waiter.join();
  EXPECT_LT(stop_ms, 200);
  EXPECT_EQ(waited.code(), CIUIC_ERR_REMOTE) << waited.to_string();
  EXPECT_LT(waited_ms, 1000);
}

TEST(StoreTest, RefusesToListenOnAllInterfaces) {
  net::SocketAddress any;
  ASSERT_TRUE(net::parse_address("0.0.0.0", 0, &any).ok());
  std::shared_ptr<StoreServer> server;
  Status st = StoreServer::start(any, random_key(), &server);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(server, nullptr);
}

TEST(StoreTest, RegistryKeepsServersByAddress) {
  Server s = start_server();
  std::weak_ptr<StoreServer> weak = s.server;
  adopt_server(s.server);
  s.server.reset();
  ASSERT_NE(find_server(s.id.root), nullptr);
  EXPECT_EQ(find_server(s.id.root).get(), weak.lock().get());
  EXPECT_EQ(find_server(loopback(1)), nullptr);
  forget_server(s.id.root);
  EXPECT_EQ(find_server(s.id.root), nullptr);
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace ciuic::core
