// N ranks as threads of one process, each with its own communicator over the real
// transport on loopback: fast, and exercises everything but process boundaries.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"

namespace ciuic::testing {

class Cluster {
 public:
  explicit Cluster(int nranks);  // ADD_FAILURE()s and leaves comms empty if init fails
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  int size() const { return static_cast<int>(comms_.size()); }
  bool ok() const { return ok_; }
  ciuic_comm_t comm(int rank) const { return comms_[static_cast<size_t>(rank)]; }
  // Runs fn(rank, comm) on one thread per rank and joins them.
  void run(const std::function<void(int rank, ciuic_comm_t comm)>& fn) const;

 private:
  std::vector<ciuic_comm_t> comms_;
  bool ok_ = false;
};

// An int32 sum all-reduce on every rank, checked exactly: the proof that the cluster's
// communicators still work `after` something (named in the failure).
void expect_allreduce_works(const Cluster& cluster, const std::string& after);

}  // namespace ciuic::testing
