// The schedule data-flow check at 1024 and 4096 ranks for what is too slow for the unit
// suite (LABEL slow): the ring and pairwise algorithms, whose steps per rank grow with
// the rank count, and the 4096-rank (16x16x16) torus all-reduce and reduce-scatter.
// Ring all-gather / reduce-scatter and pairwise all-to-all at 4096 ranks would move 16
// million messages; they run at 1024. The hierarchical algorithms run at 1024 ranks as 128
// nodes of 8.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "unit/schedule_test_helpers.h"

namespace ciuic::coll::schedule_testing {
namespace {

Case at_scale(Collective c, const char* algorithm, int n, size_t count, ciuic_datatype_t type,
              ciuic_op_t op, Placement placement) {
  Case k;
  k.collective = c;
  k.algorithm = algorithm;
  k.nranks = n;
  k.count = count;
  k.datatype = type;
  k.op = op;
  k.placement = placement;
  k.chunk_bytes = 4096;
  return k;
}

TEST(ScheduleAtScaleSlow, RingAndPairwiseAt1024) {
  EXPECT_EQ(run_case(at_scale(Collective::kAllreduce, "ring", 1024, 1500, CIUIC_INT32, CIUIC_SUM,
                              Placement::kInPlace)),
            "");
  EXPECT_EQ(run_case(at_scale(Collective::kReduceScatter, "ring", 1024, 1, CIUIC_FLOAT32, CIUIC_AVG,
                              Placement::kOutOfPlace)),
            "");
  EXPECT_EQ(run_case(at_scale(Collective::kAllgather, "ring", 1024, 1, CIUIC_INT64, CIUIC_SUM,
                              Placement::kInPlace)),
            "");
  EXPECT_EQ(run_case(at_scale(Collective::kAlltoall, "pairwise", 1024, 1, CIUIC_INT32, CIUIC_SUM,
                              Placement::kOutOfPlace)),
            "");
}

TEST(ScheduleAtScaleSlow, RingAllreduceAt4096) {
  EXPECT_EQ(run_case(at_scale(Collective::kAllreduce, "ring", 4096, 5, CIUIC_FLOAT64, CIUIC_SUM,
                              Placement::kOutOfPlace)),
            "");
}

TEST(ScheduleAtScaleSlow, TorusAt4096) {
  EXPECT_EQ(run_case(at_scale(Collective::kAllreduce, "torus", 4096, 2051, CIUIC_INT64, CIUIC_SUM,
                              Placement::kMixed)),
            "");
  EXPECT_EQ(run_case(at_scale(Collective::kReduceScatter, "torus", 4096, 2, CIUIC_FLOAT32,
                              CIUIC_AVG, Placement::kInPlaceMpi)),
            "");
}

// 1024 ranks as 128 nodes of 8: in rank order and interleaved, the all-reduce also on
// nodes of 9 and 7 ranks (extra ranks fold in), all-gather and reduce-scatter.
TEST(ScheduleAtScaleSlow, HierarchicalAt1024) {
  auto layout = [](int n, auto node_of) {
    std::vector<int> v;
    for (int r = 0; r < n; ++r) v.push_back(node_of(r));
    return std::make_shared<const std::vector<int>>(v);
  };
  const auto in_order = layout(1024, [](int r) { return r / 8; });
  const auto interleaved = layout(1024, [](int r) { return r % 128; });
  const auto uneven = layout(1024, [](int r) { return r % 16 < 9 ? r / 16 * 2 : r / 16 * 2 + 1; });
  Case c = at_scale(Collective::kAllreduce, "hierarchical", 1024, 20011, CIUIC_INT32, CIUIC_SUM,
                    Placement::kOutOfPlace);
  for (const auto& nodes : {in_order, interleaved, uneven}) {
    c.node_of_rank = nodes;
    EXPECT_EQ(run_case(c), "");
  }
  c.op = CIUIC_AVG;
  c.datatype = CIUIC_FLOAT64;
  c.placement = Placement::kInPlace;
  c.count = 5;  // fewer elements than slices: the tail alone
  EXPECT_EQ(run_case(c), "");
  for (Collective coll : {Collective::kAllgather, Collective::kReduceScatter}) {
    Case k =
        at_scale(coll, "hierarchical", 1024, 3, CIUIC_FLOAT32, CIUIC_MAX,
                 coll == Collective::kAllgather ? Placement::kInPlace : Placement::kInPlaceMpi);
    k.node_of_rank = interleaved;
    EXPECT_EQ(run_case(k), "");
  }
}

}  // namespace
}  // namespace ciuic::coll::schedule_testing
