#include "support/cluster.h"

#include <gtest/gtest.h>

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

}  // namespace ciuic::testing
