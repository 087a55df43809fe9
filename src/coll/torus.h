// The torus algorithms' grid (torus.cc), shared with the cost model and ciuic-perf.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "coll/schedule.h"

namespace ciuic::coll {

// a x b x c = n with the smallest largest factor, largest first ({n,1,1} for a prime).
std::vector<int> balanced_dims(int n);
// "4x4x2", "8x2", "16" -> three sizes (missing ones 1); their product must be nranks.
Status parse_torus_dims(const std::string& text, int nranks, std::vector<int>* out);
// args.torus_dims, else CIUIC_TORUS_DIMS, else CIUIC_TOPOLOGY's torus if it has nranks
// ranks, else balanced_dims(nranks).
Status torus_dims_for(const CollectiveArgs& args, std::vector<int>* dims);

}  // namespace ciuic::coll
