// A blocking collective on a communicator with nothing queued runs on the caller's thread
// without joining the operation queue (Communicator::run): it allocates nothing once the
// schedule is cached, and it keeps its place in issue order beside non-blocking calls
// issued from other threads.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.h"

namespace {

// Allocations made through operator new by the calling thread (every container, every
// make_shared of the library's C++ code).
thread_local uint64_t t_allocations = 0;

// A sanitizer's runtime owns operator new and delete (and the standard library reaches
// variants of them a replacement would have to cover one by one): there the allocation
// count is not taken.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kCounting = false;
#else
constexpr bool kCounting = true;
#endif

}  // namespace

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// The default operator delete frees what malloc returned, so only new is replaced.
void* operator new(std::size_t bytes) {
  ++t_allocations;
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
#endif

namespace ciuic::testing {
namespace {

// Allocations of 2000 blocking all-reduces of two floats, after a warm-up that connects the
// peers and caches the schedules: none with one rank. With peers a thread may also grow,
// once, the executor's list of descriptors the first time it sleeps in poll() (which the
// warm-up may not have made it do), so there the bound is far below one per call.
void expect_no_allocation(int nranks, uint64_t at_most) {
  if (!kCounting) GTEST_SKIP() << "a sanitizer's runtime owns operator new here";
  Cluster cluster(nranks);
  ASSERT_TRUE(cluster.ok());
  cluster.run([&](int rank, ciuic_comm_t comm) {
    float send[2] = {1.0f, static_cast<float>(rank)}, recv[2] = {0.0f, 0.0f};
    // Out of place and in place, alternately: two schedules.
    auto call = [&](int i) {
      const bool in_place = i % 2 == 1;
      if (in_place) {
        recv[0] = 1.0f;
        recv[1] = static_cast<float>(rank);
      }
      return ciuic_allreduce(in_place ? CIUIC_IN_PLACE : send, recv, 2, CIUIC_FLOAT32, CIUIC_SUM,
                             comm, nullptr);
    };
    for (int i = 0; i < 50; ++i)
      ASSERT_EQ(call(i), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    constexpr int kCalls = 2000;
    const uint64_t before = t_allocations;
    for (int i = 0; i < kCalls; ++i)
      ASSERT_EQ(call(i), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    const uint64_t allocations = t_allocations - before;
    EXPECT_LE(allocations, at_most) << "rank " << rank << " of " << nranks << ": " << allocations
                                    << " allocations in " << kCalls << " blocking all-reduces";
    EXPECT_EQ(recv[0], static_cast<float>(nranks));
    EXPECT_EQ(recv[1], static_cast<float>(nranks * (nranks - 1) / 2));
  });
}

TEST(BlockingPath, ACollectiveWithNothingQueuedAllocatesNothingOnOneRank) {
  expect_no_allocation(1, 0);
}

TEST(BlockingPath, ACollectiveWithNothingQueuedAllocatesNothingPerCallOnTwoRanks) {
  expect_no_allocation(2, 8);
}

// On every rank one thread issues non-blocking all-reduces and another, each time after
// the first issued its operation, a blocking one; so each rank's issue order is N0 B0 N1
// B1 ... The two kinds differ in size and values: a rank that ran a blocking call ahead of
// the non-blocking one issued before it would pair it with its peers' non-blocking call and
// fail or produce wrong sums.
TEST(BlockingPath, StaysOrderedWithNonBlockingCallsFromAnotherThread) {
  constexpr int kRanks = 3, kRounds = 200, kSmall = 3, kLarge = 5;
  Cluster cluster(kRanks);
  ASSERT_TRUE(cluster.ok());
  cluster.run([&](int rank, ciuic_comm_t comm) {
    std::atomic<int> issued{-1};   // the last round whose non-blocking call was issued
    std::atomic<int> blocked{-1};  // the last round whose blocking call returned
    std::vector<ciuic_request_t> requests(kRounds, nullptr);
    std::vector<std::vector<int32_t>> nb_send(kRounds), nb_recv(kRounds);
    std::thread nonblocking([&] {
      for (int r = 0; r < kRounds; ++r) {
        while (blocked.load() < r - 1) std::this_thread::yield();
        nb_send[r].assign(kSmall, 1000 * r + rank);
        nb_recv[r].assign(kSmall, -1);
        ASSERT_EQ(ciuic_iallreduce(nb_send[r].data(), nb_recv[r].data(), kSmall, CIUIC_INT32,
                                   CIUIC_SUM, comm, nullptr, &requests[r]),
                  CIUIC_SUCCESS)
            << ciuic_comm_get_last_error(comm);
        issued.store(r);
        // Wait now and then, so that some blocking calls find the queue empty (the direct
        // path) and others find this call still queued or running.
        if (r % 3 == 0) {
          ASSERT_EQ(ciuic_wait(&requests[r]), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
        }
      }
    });
    bool blocking_ok = true;
    for (int r = 0; r < kRounds && blocking_ok; ++r) {
      const auto start = std::chrono::steady_clock::now();
      while (issued.load() < r) {
        if (std::chrono::steady_clock::now() - start > std::chrono::seconds(60)) break;
        std::this_thread::yield();
      }
      std::vector<int32_t> send(kLarge, 7 * r + rank), recv(kLarge, -1);
      const ciuic_result_t result =
          ciuic_allreduce(send.data(), recv.data(), kLarge, CIUIC_INT32, CIUIC_SUM, comm, nullptr);
      EXPECT_EQ(result, CIUIC_SUCCESS)
          << "rank " << rank << " round " << r << ": " << ciuic_comm_get_last_error(comm);
      for (int i = 0; i < kLarge; ++i) {
        EXPECT_EQ(recv[i], kRanks * 7 * r + kRanks * (kRanks - 1) / 2)
            << "rank " << rank << " round " << r << " element " << i;
      }
      blocking_ok = result == CIUIC_SUCCESS;
      blocked.store(blocking_ok ? r : kRounds);  // on failure, release the other thread
    }
    nonblocking.join();
    for (int r = 0; r < kRounds; ++r) {
      if (requests[r] == nullptr) continue;  // waited already
      ASSERT_EQ(ciuic_wait(&requests[r]), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    }
    for (int r = 0; r < kRounds; ++r) {
      for (int i = 0; i < kSmall; ++i) {
        ASSERT_EQ(nb_recv[r][i], kRanks * 1000 * r + kRanks * (kRanks - 1) / 2)
            << "rank " << rank << " round " << r << " element " << i;
      }
    }
  });
}

}  // namespace
}  // namespace ciuic::testing
