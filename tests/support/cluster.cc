#include "support/cluster.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "support/scoped_config.h"

namespace ciuic::testing {

Cluster::Cluster(int nranks) : comms_(static_cast<size_t>(nranks), nullptr) {
  ciuic_unique_id_t id;
  if (ciuic_get_unique_id(&id) != CIUIC_SUCCESS) {
    ADD_FAILURE() << "ciuic_get_unique_id: " << ciuic_comm_get_last_error(nullptr);
    return;
  }
  std::vector<std::string> errors(static_cast<size_t>(nranks));
  run_threads(nranks, [&](int r) {
    if (ciuic_comm_init_rank(&comms_[r], nranks, id, r) != CIUIC_SUCCESS)
      errors[r] = ciuic_comm_get_last_error(nullptr);
  });
  ok_ = true;
  for (int r = 0; r < nranks; ++r) {
    if (!errors[r].empty()) {
      ADD_FAILURE() << "rank " << r << " init: " << errors[r];
      ok_ = false;
    }
  }
}

Cluster::~Cluster() {
  for (ciuic_comm_t c : comms_)
    if (c != nullptr) ciuic_comm_destroy(c);
}

void Cluster::run(const std::function<void(int, ciuic_comm_t)>& fn) const {
  run_threads(size(), [&](int r) { fn(r, comms_[r]); });
}

// Sums of rank-dependent values, checked exactly.
void expect_allreduce_works(const Cluster& cluster, const std::string& after) {
  const int n = cluster.size();
  cluster.run([&](int rank, ciuic_comm_t comm) {
    constexpr int kCount = 5;
    std::vector<int32_t> send(kCount), recv(kCount, -1);
    for (int i = 0; i < kCount; ++i) send[i] = rank * 10 + i;
    ASSERT_EQ(ciuic_allreduce(send.data(), recv.data(), kCount, CIUIC_INT32, CIUIC_SUM, comm,
                              nullptr),
              CIUIC_SUCCESS)
        << "rank " << rank << " after " << after << ": " << ciuic_comm_get_last_error(comm);
    for (int i = 0; i < kCount; ++i)
      EXPECT_EQ(recv[i], 10 * n * (n - 1) / 2 + n * i) << "rank " << rank << " after " << after;
  });
}

}  // namespace ciuic::testing
