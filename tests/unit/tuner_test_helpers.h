// What the tuner tests (tuner_test.cc, tuner_calibration_test.cc) build their questions from.
#pragma once

#include <cstddef>

#include "coll/schedule.h"

namespace ciuic::coll::tuner_test {

// An all-reduce of `bytes` of float32 among n ranks, in the default 256 KiB chunks.
inline CollectiveArgs allreduce(int n, size_t bytes) {
  CollectiveArgs a;
  a.collective = Collective::kAllreduce;
  a.nranks = n;
  a.datatype = CIUIC_FLOAT32;
  a.count = bytes / 4;
  a.chunk_bytes = 256 << 10;
  return a;
}

}  // namespace ciuic::coll::tuner_test
