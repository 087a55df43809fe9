// Point-to-point and barrier between thread ranks over TCP: every size from empty to
// 8 MiB, a 64 MiB ring exchange that only completes if an isend and the irecv after it
// run together, blocking sends matched by irecvs, message order, and a barrier that
// holds everyone until the last rank arrives.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.h"
#include "support/scoped_config.h"

namespace ciuic::testing {
namespace {

using Clock = std::chrono::steady_clock;

// A byte pattern that differs per sender, size and position, so a shifted, truncated or
// misrouted message shows.
uint8_t pattern(int from, size_t size, size_t i) {
  return static_cast<uint8_t>((i * 131 + size * 7 + static_cast<size_t>(from) * 29 + (i >> 12)) & 0xff);
}

void fill(std::vector<uint8_t>* buf, int from) {
  for (size_t i = 0; i < buf->size(); ++i) (*buf)[i] = pattern(from, buf->size(), i);
}

// Index of the first wrong byte, or -1.
long first_mismatch(const std::vector<uint8_t>& buf, int from) {
  for (size_t i = 0; i < buf.size(); ++i)
    if (buf[i] != pattern(from, buf.size(), i)) return static_cast<long>(i);
  return -1;
}

TEST(P2P, EverySizeFromEmptyTo8MiBBothWays) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  const size_t sizes[] = {0, 1, 2, 3, 7, 64, 1000, 4095, 4096, 4097, 65535, 65537,
                          (1u << 20) - 1, 1u << 20, (3u << 20) + 5, 8u << 20};
  cluster.run([&](int rank, ciuic_comm_t comm) {
    for (size_t size : sizes) {
      for (int sender = 0; sender < 2; ++sender) {
        std::vector<uint8_t> buf(size);
        if (rank == sender) {
          fill(&buf, sender);
          ASSERT_EQ(ciuic_send(buf.data(), size, CIUIC_UINT8, 1 - rank, comm, nullptr), CIUIC_SUCCESS)
              << size << " B: " << ciuic_comm_get_last_error(comm);
        } else {
          std::fill(buf.begin(), buf.end(), uint8_t{0xEE});
          ASSERT_EQ(ciuic_recv(buf.data(), size, CIUIC_UINT8, 1 - rank, comm, nullptr), CIUIC_SUCCESS)
              << size << " B: " << ciuic_comm_get_last_error(comm);
          ASSERT_EQ(first_mismatch(buf, sender), -1) << size << " B from rank " << sender;
        }
      }
    }
  });
}

TEST(P2P, TypedCountsCarryWholeElements) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  cluster.run([&](int rank, ciuic_comm_t comm) {
    std::vector<double> buf(100003);
    if (rank == 0) {
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<double>(i) * 0.5 - 7;
      ASSERT_EQ(ciuic_send(buf.data(), buf.size(), CIUIC_FLOAT64, 1, comm, nullptr), CIUIC_SUCCESS);
    } else {
      ASSERT_EQ(ciuic_recv(buf.data(), buf.size(), CIUIC_FLOAT64, 0, comm, nullptr), CIUIC_SUCCESS);
      for (size_t i = 0; i < buf.size(); i += 7) ASSERT_EQ(buf[i], static_cast<double>(i) * 0.5 - 7) << i;
      ASSERT_EQ(buf.back(), static_cast<double>(buf.size() - 1) * 0.5 - 7);
    }
  });
}

// Every rank sends 64 MiB to the next and receives from the previous. Started one after
// the other, each rank's send would wait for a receive its neighbour has not posted yet;
// the isend and the irecv issued after it must run as one group.
TEST(P2P, RingExchangeOf64MiBWithIsendIrecv) {
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "120000");
  constexpr int kRanks = 3;
  constexpr size_t kBytes = size_t{64} << 20;
  Cluster cluster(kRanks);
  ASSERT_TRUE(cluster.ok());
  std::vector<double> seconds(kRanks);
  cluster.run([&](int rank, ciuic_comm_t comm) {
    const int next = (rank + 1) % kRanks, prev = (rank + kRanks - 1) % kRanks;
    std::vector<uint8_t> out(kBytes), in(kBytes, 0);
    fill(&out, rank);
    ASSERT_EQ(ciuic_barrier(comm, nullptr), CIUIC_SUCCESS);  // time the exchange alone
    auto start = Clock::now();
    ciuic_request_t send = nullptr, recv = nullptr;
    ASSERT_EQ(ciuic_isend(out.data(), kBytes, CIUIC_UINT8, next, comm, nullptr, &send), CIUIC_SUCCESS);
    ASSERT_EQ(ciuic_irecv(in.data(), kBytes, CIUIC_UINT8, prev, comm, nullptr, &recv), CIUIC_SUCCESS);
    ASSERT_EQ(ciuic_wait(&send), CIUIC_SUCCESS) << "rank " << rank << ": " << ciuic_comm_get_last_error(comm);
    ASSERT_EQ(ciuic_wait(&recv), CIUIC_SUCCESS) << "rank " << rank << ": " << ciuic_comm_get_last_error(comm);
    seconds[rank] = std::chrono::duration<double>(Clock::now() - start).count();
    ASSERT_EQ(first_mismatch(in, prev), -1) << "rank " << rank << " from " << prev;
  });
  const double slowest = *std::max_element(seconds.begin(), seconds.end());
  std::printf("ring exchange: %d ranks x 64 MiB in %.3f s (%.0f MiB/s per rank)\n", kRanks, slowest,
              64.0 / slowest);
  // Both directions again, receive issued first this time, completed by ciuic_test polling.
  cluster.run([&](int rank, ciuic_comm_t comm) {
    const int next = (rank + 1) % kRanks, prev = (rank + kRanks - 1) % kRanks;
    std::vector<uint8_t> out(kBytes / 4), in(kBytes / 4, 0);
    fill(&out, rank + 10);
    ciuic_request_t reqs[2] = {};
    ASSERT_EQ(ciuic_irecv(in.data(), in.size(), CIUIC_UINT8, next, comm, nullptr, &reqs[0]), CIUIC_SUCCESS);
    ASSERT_EQ(ciuic_isend(out.data(), out.size(), CIUIC_UINT8, prev, comm, nullptr, &reqs[1]), CIUIC_SUCCESS);
    auto poll_start = Clock::now();
    for (ciuic_request_t& req : reqs) {
      int done = 0;
      while (!done && Clock::now() - poll_start < std::chrono::seconds(60)) {
        ASSERT_EQ(ciuic_test(&req, &done), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
        if (!done) std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      ASSERT_EQ(done, 1) << "rank " << rank;
    }
    ASSERT_EQ(first_mismatch(in, next + 10), -1) << "rank " << rank;
  });
}

TEST(P2P, BlockingSendMatchedWithIrecv) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  cluster.run([&](int rank, ciuic_comm_t comm) {
    std::vector<uint8_t> buf(5u << 20);
    if (rank == 0) {
      fill(&buf, 0);
      ASSERT_EQ(ciuic_send(buf.data(), buf.size(), CIUIC_UINT8, 1, comm, nullptr), CIUIC_SUCCESS)
          << ciuic_comm_get_last_error(comm);
      // And the other way: a blocking receive matched by the peer's isend.
      ASSERT_EQ(ciuic_recv(buf.data(), 4096, CIUIC_UINT8, 1, comm, nullptr), CIUIC_SUCCESS);
      buf.resize(4096);
      ASSERT_EQ(first_mismatch(buf, 1), -1);
    } else {
      ciuic_request_t req = nullptr;
      ASSERT_EQ(ciuic_irecv(buf.data(), buf.size(), CIUIC_UINT8, 0, comm, nullptr, &req), CIUIC_SUCCESS);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the sender waits meanwhile
      ASSERT_EQ(ciuic_wait(&req), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
      ASSERT_EQ(first_mismatch(buf, 0), -1);
      std::vector<uint8_t> small(4096);
      fill(&small, 1);
      ASSERT_EQ(ciuic_isend(small.data(), small.size(), CIUIC_UINT8, 0, comm, nullptr, &req), CIUIC_SUCCESS);
      ASSERT_EQ(ciuic_wait(&req), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    }
  });
}

TEST(P2P, ManyMessagesArriveInOrder) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  constexpr int kBlocking = 300, kNonBlocking = 100;
  cluster.run([&](int rank, ciuic_comm_t comm) {
    // Blocking, one element each, varying sizes.
    for (int i = 0; i < kBlocking; ++i) {
      std::vector<int32_t> msg(static_cast<size_t>(1 + i % 17));
      if (rank == 0) {
        std::fill(msg.begin(), msg.end(), i);
        ASSERT_EQ(ciuic_send(msg.data(), msg.size(), CIUIC_INT32, 1, comm, nullptr), CIUIC_SUCCESS);
      } else {
        ASSERT_EQ(ciuic_recv(msg.data(), msg.size(), CIUIC_INT32, 0, comm, nullptr), CIUIC_SUCCESS)
            << "message " << i << ": " << ciuic_comm_get_last_error(comm);
        for (int32_t v : msg) ASSERT_EQ(v, i) << "message " << i << " out of order";
      }
    }
    // Non-blocking: all outstanding at once on both sides, completed together.
    std::vector<int64_t> slots(kNonBlocking, -1);
    std::vector<ciuic_request_t> reqs(kNonBlocking, nullptr);
    for (int i = 0; i < kNonBlocking; ++i) {
      if (rank == 1) {
        slots[i] = int64_t{1} << 40 | i;
        ASSERT_EQ(ciuic_isend(&slots[i], 1, CIUIC_INT64, 0, comm, nullptr, &reqs[i]), CIUIC_SUCCESS);
      } else {
        ASSERT_EQ(ciuic_irecv(&slots[i], 1, CIUIC_INT64, 1, comm, nullptr, &reqs[i]), CIUIC_SUCCESS);
      }
    }
    ASSERT_EQ(ciuic_wait(&reqs.back()), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    for (int i = 0; i < kNonBlocking - 1; ++i) ASSERT_EQ(ciuic_wait(&reqs[i]), CIUIC_SUCCESS) << i;
    for (int i = 0; i < kNonBlocking; ++i) ASSERT_EQ(slots[i], int64_t{1} << 40 | i) << i;
  });
}

// Each round one rank arrives late; no rank may leave the barrier before the last one
// has entered it.
TEST(P2P, BarrierHoldsEveryoneUntilTheLastArrives) {
  constexpr int kRanks = 4;
  Cluster cluster(kRanks);
  ASSERT_TRUE(cluster.ok());
  for (int late = 0; late < kRanks; ++late) {
    std::vector<Clock::time_point> arrived(kRanks), left(kRanks);
    cluster.run([&](int rank, ciuic_comm_t comm) {
      ASSERT_EQ(ciuic_barrier(comm, nullptr), CIUIC_SUCCESS);  // line everyone up first
      if (rank == late) std::this_thread::sleep_for(std::chrono::milliseconds(150));
      arrived[rank] = Clock::now();
      ASSERT_EQ(ciuic_barrier(comm, nullptr), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
      left[rank] = Clock::now();
    });
    const auto last_arrival = *std::max_element(arrived.begin(), arrived.end());
    const auto first_exit = *std::min_element(left.begin(), left.end());
    EXPECT_GE(first_exit, last_arrival) << "a rank left the barrier before rank " << late << " arrived";
    const double held_ms =
        std::chrono::duration<double, std::milli>(left[(late + 1) % kRanks] - arrived[(late + 1) % kRanks]).count();
    EXPECT_GE(held_ms, 100.0) << "an early rank must wait for the late one";
  }
  // The non-blocking barrier holds too.
  std::vector<Clock::time_point> arrived(kRanks), left(kRanks);
  cluster.run([&](int rank, ciuic_comm_t comm) {
    if (rank == 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    arrived[rank] = Clock::now();
    ciuic_request_t req = nullptr;
    ASSERT_EQ(ciuic_ibarrier(comm, nullptr, &req), CIUIC_SUCCESS);
    ASSERT_EQ(ciuic_wait(&req), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    left[rank] = Clock::now();
  });
  EXPECT_GE(*std::min_element(left.begin(), left.end()), *std::max_element(arrived.begin(), arrived.end()));
}

}  // namespace
}  // namespace ciuic::testing
