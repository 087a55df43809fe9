// The C API's non-blocking operations and requests: every kind outstanding together,
// completed by polling in issue order or waited for in any order, mixed with blocking calls.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "support/cluster.h"

namespace ciuic::testing {
namespace {

// Non-blocking operations of every kind, outstanding together on 3 ranks.
struct Outstanding {
  static constexpr size_t kCount = 1 << 15;
  static constexpr int kN = 3;
  std::vector<int32_t> ar_in, ar_out, ag_in, ag_out, bc, rs_in, rs_out, red_out, a2a_in, a2a_out;
  ciuic_request_t req[7] = {};

  Outstanding(int rank)
      : ar_in(kCount), ar_out(kCount, -1), ag_in(kCount), ag_out(kCount * kN, -1), bc(kCount, -1),
        rs_in(kCount * kN), rs_out(kCount, -1), red_out(kCount, -1), a2a_in(kCount * kN),
        a2a_out(kCount * kN, -1) {
    for (size_t i = 0; i < kCount; ++i) {
      ar_in[i] = rank + static_cast<int32_t>(i);
      ag_in[i] = rank * 7 + static_cast<int32_t>(i);
      if (rank == 1) bc[i] = static_cast<int32_t>(i * 3);
    }
    for (size_t i = 0; i < kCount * kN; ++i) {
      rs_in[i] = rank * static_cast<int32_t>(i);
      a2a_in[i] = rank * 1000000 + static_cast<int32_t>(i);
    }
  }

  void issue(ciuic_comm_t c) {
    const auto kT = CIUIC_INT32;
    ASSERT_EQ(ciuic_iallreduce(ar_in.data(), ar_out.data(), kCount, kT, CIUIC_SUM, c, nullptr, &req[0]), 0);
    ASSERT_EQ(ciuic_iallgather(ag_in.data(), ag_out.data(), kCount, kT, c, nullptr, &req[1]), 0);
    ASSERT_EQ(ciuic_ibroadcast(bc.data(), bc.data(), kCount, kT, 1, c, nullptr, &req[2]), 0);
    ASSERT_EQ(ciuic_ireduce_scatter(rs_in.data(), rs_out.data(), kCount, kT, CIUIC_MAX, c, nullptr, &req[3]), 0);
    ASSERT_EQ(ciuic_ireduce(ar_in.data(), red_out.data(), kCount, kT, CIUIC_MIN, 2, c, nullptr, &req[4]), 0);
    ASSERT_EQ(ciuic_ialltoall(a2a_in.data(), a2a_out.data(), kCount, kT, c, nullptr, &req[5]), 0);
    ASSERT_EQ(ciuic_ibarrier(c, nullptr, &req[6]), 0);
    for (ciuic_request_t r : req) ASSERT_NE(r, nullptr);
  }

  void check(int rank) const {
    for (size_t i = 0; i < kCount; i += 61) {
      const auto ii = static_cast<int32_t>(i);
      ASSERT_EQ(ar_out[i], 3 * ii + 0 + 1 + 2) << i;
      for (int r = 0; r < kN; ++r) ASSERT_EQ(ag_out[r * kCount + i], r * 7 + ii) << i;
      ASSERT_EQ(bc[i], ii * 3) << i;
      ASSERT_EQ(rs_out[i], (kN - 1) * static_cast<int32_t>(rank * kCount + i)) << i;  // max over ranks
      if (rank == 2) {
        ASSERT_EQ(red_out[i], ii) << i;  // min: rank 0's
      }
      for (int r = 0; r < kN; ++r) ASSERT_EQ(a2a_out[r * kCount + i], r * 1000000 + static_cast<int32_t>(rank * kCount + i));
    }
  }
};

TEST(ApiNonBlocking, TestPollingCompletesOutstandingOpsInOrder) {
  Cluster cluster(Outstanding::kN);
  ASSERT_TRUE(cluster.ok());
  cluster.run([&](int rank, ciuic_comm_t comm) {
    Outstanding ops(rank);
    ops.issue(comm);
    // Poll the last one; operations run in issue order, so when it is done so is each
    // earlier one, and a single test of each must say so.
    int done = 0, polls = 0;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done && std::chrono::steady_clock::now() < give_up) {
      ASSERT_EQ(ciuic_test(&ops.req[6], &done), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
      ++polls;
      if (!done) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    ASSERT_EQ(done, 1) << "ibarrier not done after 30 s of ciuic_test polling (" << polls << " polls)";
    EXPECT_EQ(ops.req[6], nullptr) << "a completed test frees the request";
    for (int i = 0; i < 6; ++i) {
      int earlier_done = 0;
      ASSERT_EQ(ciuic_test(&ops.req[i], &earlier_done), CIUIC_SUCCESS) << "op " << i;
      EXPECT_EQ(earlier_done, 1) << "op " << i << " issued earlier must already be done";
      EXPECT_EQ(ops.req[i], nullptr);
    }
    ops.check(rank);
    int again = 0;
    EXPECT_EQ(ciuic_test(&ops.req[0], &again), CIUIC_ERR_INVALID_ARGUMENT) << "the request was freed";
  });
  expect_allreduce_works(cluster, "non-blocking ops");
}

TEST(ApiNonBlocking, WaitInAnyOrderAndMixWithBlockingCalls) {
  Cluster cluster(Outstanding::kN);
  ASSERT_TRUE(cluster.ok());
  cluster.run([&](int rank, ciuic_comm_t comm) {
    for (int round = 0; round < 3; ++round) {
      Outstanding ops(rank);
      ops.issue(comm);
      // A blocking collective issued now runs after everything outstanding.
      int32_t one = 1, total = 0;
      ASSERT_EQ(ciuic_allreduce(&one, &total, 1, CIUIC_INT32, CIUIC_SUM, comm, nullptr), CIUIC_SUCCESS);
      EXPECT_EQ(total, Outstanding::kN);
      for (int i = 6; i >= 0; --i) {
        ASSERT_EQ(ciuic_wait(&ops.req[i]), CIUIC_SUCCESS) << "op " << i << ": " << ciuic_comm_get_last_error(comm);
        EXPECT_EQ(ops.req[i], nullptr);
      }
      ops.check(rank);
    }
  });
}

}  // namespace
}  // namespace ciuic::testing
