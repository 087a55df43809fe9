// Every registered algorithm, for rank counts 1..24, 32 and 64 (128 for all-reduce and
// all-gather), counts {0, 1, 3, n-1, n, n+1, 1000}, every op, several datatypes, every
// in-place flavour and several roots: each rank's schedule is built, checked for
// structural properties (dependencies point back, buffers and scratch in bounds,
// bandwidth-optimal byte counts) and data races, run by simulate_dataflow over real
// buffers, and compared with an independent reference. A second sweep uses 16-byte chunks
// and 2 or 3 scratch slots, so pipelines are deep and slots are reused constantly, and
// runs the steps in a shuffled order. The hierarchical algorithms run on nodes (nodes_for).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "schedule_test_helpers.h"

namespace ciuic::coll::schedule_testing {
namespace {

constexpr ciuic_datatype_t kDatatypes[] = {CIUIC_FLOAT32, CIUIC_INT32,   CIUIC_UINT8,  CIUIC_FLOAT64,
                                           CIUIC_INT64,   CIUIC_FLOAT16, CIUIC_INT8,   CIUIC_BFLOAT16,
                                           CIUIC_UINT32,  CIUIC_UINT64};
constexpr ciuic_op_t kOps[] = {CIUIC_SUM, CIUIC_PROD, CIUIC_MIN, CIUIC_MAX, CIUIC_AVG};

std::vector<int> rank_counts() {
  std::vector<int> out;
  for (int n = 1; n <= 24; ++n) out.push_back(n);
  out.push_back(32);
  out.push_back(64);
  return out;
}

std::vector<size_t> counts_for(int n) {
  const size_t un = static_cast<size_t>(n);
  std::set<size_t> unique = {0, 1, 3, un - 1, un, un + 1, 1000};
  return {unique.begin(), unique.end()};
}

std::vector<int> roots(Collective c, int n) {
  if (c != Collective::kBroadcast && c != Collective::kReduce) return {0};
  std::set<int> unique = {0, 1 % n, n / 2, n - 1};
  return {unique.begin(), unique.end()};
}

// The hierarchical algorithms get nodes here (their own sweep over node layouts is
// schedule_hierarchical_test.cc): nodes of the smallest divisor of n above one, or pairs
// with a single rank last when n is prime; other algorithms ignore the layout.
std::shared_ptr<const std::vector<int>> nodes_for(const std::string& algorithm, int n) {
  if (algorithm != "hierarchical") return nullptr;
  int per = 2;
  for (int d = 2; d < n; ++d)
    if (n % d == 0) {
      per = d;
      break;
    }
  std::vector<int> v;
  for (int r = 0; r < n; ++r) v.push_back(r / per);
  return std::make_shared<const std::vector<int>>(v);
}

// The main sweep of one collective with every algorithm registered for it, at
// `chunk_bytes` / `slots`; datatypes rotate across cases so each rank count meets several.
void sweep(Collective coll, const std::string& algorithm, const std::vector<int>& ranks, size_t chunk_bytes,
           int slots, bool shuffled, bool all_counts = true) {
  Sweep s;
  size_t rotation = 0;
  for (const AlgorithmEntry& e : registered_algorithms()) {
    if (e.collective != coll || e.name != algorithm) continue;
    for (int n : ranks) {
      std::vector<size_t> counts = counts_for(n);
      if (!all_counts) {
        // About 1000 elements in all: reduce_scatter and alltoall count per rank.
        const bool per_rank = coll == Collective::kReduceScatter || coll == Collective::kAlltoall ||
                              coll == Collective::kAllgather;
        counts = {static_cast<size_t>(n) + 1, per_rank ? 1000 / static_cast<size_t>(n) + 1 : 1000};
      }
      for (size_t count : counts) {
        for (Placement p : placements(coll)) {
          for (int root : roots(coll, n)) {
            for (ciuic_op_t op : kOps) {
              if (!reduces(coll) && op != CIUIC_SUM) continue;
              Case c;
              c.collective = coll;
              c.algorithm = e.name;
              c.nranks = n;
              c.count = count;
              c.op = op;
              c.root = root;
              c.placement = p;
              c.chunk_bytes = chunk_bytes;
              c.scratch_slots = slots;
              c.node_of_rank = nodes_for(c.algorithm, n);
              do {
                c.datatype = kDatatypes[rotation++ % std::size(kDatatypes)];
              } while (!exact(c.datatype, op, n));
              if (shuffled) c.order_seed = rotation;
              s.run(c);
            }
          }
        }
      }
    }
  }
}

constexpr Collective kSwept[] = {Collective::kAllreduce, Collective::kReduceScatter, Collective::kAllgather,
                                 Collective::kBroadcast, Collective::kReduce,        Collective::kAlltoall,
                                 Collective::kBarrier,   Collective::kSend};

TEST(ScheduleAlgorithms, EveryRegisteredAlgorithmIsSwept) {
  for (const AlgorithmEntry& e : registered_algorithms()) {
    const Collective c = e.collective == Collective::kRecv ? Collective::kSend : e.collective;
    EXPECT_NE(std::find(std::begin(kSwept), std::end(kSwept), c), std::end(kSwept))
        << collective_name(e.collective) << "/" << e.name << " has no sweep here";
  }
}

TEST(ScheduleAlgorithms, UnknownAlgorithmNamesTheKnownOnes) {
  CollectiveArgs a;
  Schedule s;
  Status st = build_schedule(a, "bogus", &s);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(st.message().find("'bogus'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("ring"), std::string::npos) << st.message();
}

// One test per (collective, algorithm), so that they run in parallel.
struct Swept {
  Collective collective;
  std::string algorithm;
};

void PrintTo(const Swept& s, std::ostream* os) { *os << collective_name(s.collective) << "/" << s.algorithm; }

std::vector<Swept> swept(bool pipelined) {
  std::vector<Swept> out;
  for (const AlgorithmEntry& e : registered_algorithms()) {
    if (e.collective == Collective::kRecv) continue;  // swept with kSend
    if (pipelined && (e.collective == Collective::kBarrier || e.collective == Collective::kSend)) continue;
    out.push_back({e.collective, e.name});
  }
  return out;
}

std::string swept_name(const ::testing::TestParamInfo<Swept>& info) {
  return std::string(collective_name(info.param.collective)) + "_" + info.param.algorithm;
}

class ScheduleDataflow : public ::testing::TestWithParam<Swept> {};
TEST_P(ScheduleDataflow, Sweep) { sweep(GetParam().collective, GetParam().algorithm, rank_counts(), 1 << 20, 16, false); }
INSTANTIATE_TEST_SUITE_P(All, ScheduleDataflow, ::testing::ValuesIn(swept(false)), swept_name);

TEST(ScheduleAlgorithms, ATorusGridOfTheWrongSizeIsAnErrorThatSaysSo) {
  CollectiveArgs a;
  a.nranks = 16;
  a.count = 64;
  a.torus_dims = {4, 4, 2};
  Schedule s;
  Status st = build_schedule(a, "torus", &s);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(st.message().find("4x4x2"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("CIUIC_TORUS_DIMS"), std::string::npos) << st.message();
  a.torus_dims = {2, 8};  // 2-D: the third side is 1
  EXPECT_TRUE(build_schedule(a, "torus", &s).ok());
}

TEST(ScheduleAlgorithms, AllreduceAndAllgatherAt128Ranks) {
  Sweep s;
  for (Collective coll : {Collective::kAllreduce, Collective::kAllgather}) {
    for (size_t count : {0, 1, 3, 127, 128, 129}) {
      for (Placement p : {Placement::kOutOfPlace, Placement::kInPlace}) {
        Case c;
        c.collective = coll;
        c.algorithm = "ring";
        c.nranks = 128;
        c.count = count;
        c.datatype = count % 2 == 0 ? CIUIC_FLOAT32 : CIUIC_INT64;
        c.op = count == 3 ? CIUIC_AVG : CIUIC_SUM;
        c.placement = p;
        s.run(c);
      }
    }
  }
}

// ---- every rank count to 64, and 1024 and 4096 ----
// One small case per (algorithm, rank count) beyond the main sweep's counts: the data
// flow at every size of communicator up to 64, and at 1024 and 4096 ranks (a 16x16x16
// torus) for the algorithms whose steps grow with log n or the grid's sides. The ring
// and pairwise algorithms and the hierarchical reduce-scatter and all-gather, whose steps
// per rank grow with n, and the 4096-rank torus
// all-reduce and reduce-scatter run in tests/slow (LABEL slow).
Case scale_case(const Swept& p, int n, int variant) {
  Case c;
  c.collective = p.collective;
  c.algorithm = p.algorithm;
  c.nranks = n;
  const bool per_rank = p.collective == Collective::kReduceScatter || p.collective == Collective::kAlltoall ||
                        p.collective == Collective::kAllgather;
  c.count = per_rank ? 1 + variant % 2 : static_cast<size_t>(n) + 1 + variant;
  constexpr ciuic_datatype_t kTypes[] = {CIUIC_INT32, CIUIC_FLOAT32, CIUIC_INT64, CIUIC_FLOAT64};
  c.datatype = kTypes[variant % 4];
  c.op = reduces(p.collective) && variant % 3 == 1 ? CIUIC_AVG : CIUIC_SUM;
  c.placement = placements(p.collective)[variant % placements(p.collective).size()];
  c.root = roots(p.collective, n)[variant % roots(p.collective, n).size()];
  c.node_of_rank = nodes_for(c.algorithm, n);
  return c;
}

class ScheduleEveryRankCount : public ::testing::TestWithParam<Swept> {};
TEST_P(ScheduleEveryRankCount, To64) {
  Sweep s;
  for (int n = 25; n < 64; ++n)
    if (n != 32) s.run(scale_case(GetParam(), n, n));
}
INSTANTIATE_TEST_SUITE_P(All, ScheduleEveryRankCount, ::testing::ValuesIn(swept(false)), swept_name);

// Hierarchical reduce-scatter and all-gather copy every rank's block to or from staging
// one step each (and run their ring across the nodes); they run at 1024 in tests/slow.
bool steps_grow_with_n(const Swept& p) {
  return p.algorithm == "ring" || p.algorithm == "pairwise" ||
         (p.algorithm == "hierarchical" && p.collective != Collective::kAllreduce);
}

std::vector<Swept> swept_at_scale(bool largest) {
  std::vector<Swept> out;
  for (const Swept& p : swept(false)) {
    if (steps_grow_with_n(p)) continue;
    // 4096-rank torus all-reduce and reduce-scatter (~10 s): tests/slow.
    if (largest && p.algorithm == "torus" && p.collective != Collective::kAllgather) continue;
    out.push_back(p);
  }
  return out;
}

class ScheduleAtScale : public ::testing::TestWithParam<Swept> {};
void run_at_scale(const Swept& p, int n) {
  Sweep s;
  Case c = scale_case(p, n, n == 1024 ? 1 : 2);
  if (c.count > 3) c.count = static_cast<size_t>(n) / 2 + 3;  // fewer elements than ranks: empty blocks too
  c.chunk_bytes = 4096;  // several chunks per buffer
  s.run(c);
}
TEST_P(ScheduleAtScale, Ranks1024) { run_at_scale(GetParam(), 1024); }
class ScheduleAtLargestScale : public ::testing::TestWithParam<Swept> {};
TEST_P(ScheduleAtLargestScale, Ranks4096) { run_at_scale(GetParam(), 4096); }
INSTANTIATE_TEST_SUITE_P(All, ScheduleAtLargestScale, ::testing::ValuesIn(swept_at_scale(true)), swept_name);
INSTANTIATE_TEST_SUITE_P(All, ScheduleAtScale, ::testing::ValuesIn(swept_at_scale(false)), swept_name);

// Deep pipelines: 16-byte chunks (one to sixteen elements) through 2 or 3 scratch slots.
std::vector<int> pipelined_ranks() { return {1, 2, 3, 4, 5, 7, 8, 13, 16, 24}; }

class ScheduleDataflowPipelined : public ::testing::TestWithParam<Swept> {};
TEST_P(ScheduleDataflowPipelined, Sweep) {
  const Swept& p = GetParam();
  sweep(p.collective, p.algorithm, pipelined_ranks(), 16, 2, true, false);
  if (reduces(p.collective)) sweep(p.collective, p.algorithm, pipelined_ranks(), 16, 3, true, false);
}
INSTANTIATE_TEST_SUITE_P(All, ScheduleDataflowPipelined, ::testing::ValuesIn(swept(true)), swept_name);

// A 64-rank all-reduce cut into 24-byte chunks (1 1/2 float64 chunks per 16 B: odd
// sizes at the segment tails) and run in a shuffled order: ~4000 steps per rank.
TEST(ScheduleAlgorithms, ThousandsOfStepsPerRank) {
  Case c;
  c.collective = Collective::kAllreduce;
  c.algorithm = "ring";
  c.nranks = 64;
  c.count = 4000;
  c.datatype = CIUIC_FLOAT64;
  c.op = CIUIC_MAX;
  c.chunk_bytes = 24;
  c.scratch_slots = 2;
  c.order_seed = 7;
  EXPECT_EQ(run_case(c), "");
}

// ---- golden schedules ----
// Every rank's Schedule::to_string() for a few small cases, compared with
// tests/unit/golden/<name>.txt: a change to what an algorithm emits shows up as a diff
// to review. CIUIC_UPDATE_GOLDEN=1 rewrites the files instead.

struct Golden {
  const char* file;
  CollectiveArgs args;
  const char* algorithm;
};

std::vector<Golden> golden_cases() {
  auto args = [](Collective c, int n, size_t count, ciuic_datatype_t t, ciuic_op_t op) {
    CollectiveArgs a;
    a.collective = c;
    a.nranks = n;
    a.count = count;
    a.datatype = t;
    a.op = op;
    return a;
  };
  std::vector<Golden> out;
  // 7 floats over 3 ranks: segments of 3, 2, 2 elements, 8-byte chunks through 2 slots.
  out.push_back({"ring_allreduce_n3_count7_float32", args(Collective::kAllreduce, 3, 7, CIUIC_FLOAT32, CIUIC_SUM), "ring"});
  out.back().args.chunk_bytes = 8;
  out.back().args.scratch_slots = 2;
  out.push_back({"chain_broadcast_n4_count6_int32_root1", args(Collective::kBroadcast, 4, 6, CIUIC_INT32, CIUIC_SUM), "chain"});
  out.back().args.root = 1;
  out.back().args.chunk_bytes = 8;
  out.push_back({"pairwise_alltoall_n3_count2_int32", args(Collective::kAlltoall, 3, 2, CIUIC_INT32, CIUIC_SUM), "pairwise"});
  out.push_back({"ring_reduce_scatter_in_place_mpi_n3_count3_float32_avg",
                 args(Collective::kReduceScatter, 3, 3, CIUIC_FLOAT32, CIUIC_AVG), "ring"});
  out.back().args.in_place = out.back().args.in_place_mpi = true;
  out.back().args.chunk_bytes = 8;
  out.back().args.scratch_slots = 2;
  return out;
}

std::string dump(const Golden& g) {
  std::string text;
  for (int r = 0; r < g.args.nranks; ++r) {
    CollectiveArgs a = g.args;
    a.rank = r;
    Schedule s;
    Status st = build_schedule(a, g.algorithm, &s);
    if (!st.ok()) return "build_schedule failed: " + st.message() + "\n";
    text += s.to_string();
  }
  return text;
}

std::filesystem::path golden_dir() { return std::filesystem::path(__FILE__).parent_path() / "golden"; }

TEST(ScheduleGolden, SmallCasesMatchTheirDumps) {
  const char* update = std::getenv("CIUIC_UPDATE_GOLDEN");
  const bool rewrite = update != nullptr && std::string(update) == "1";
  for (const Golden& g : golden_cases()) {
    const std::filesystem::path file = golden_dir() / (std::string(g.file) + ".txt");
    const std::string got = dump(g);
    if (rewrite) {
      std::filesystem::create_directories(file.parent_path());
      std::ofstream(file) << got;
      continue;
    }
    std::ifstream in(file);
    ASSERT_TRUE(in.good()) << file << " is missing: run with CIUIC_UPDATE_GOLDEN=1 to create it";
    std::stringstream want;
    want << in.rdbuf();
    if (got == want.str()) continue;
    std::istringstream g_lines(got), w_lines(want.str());
    std::string gl, wl;
    int line = 1;
    while (std::getline(g_lines, gl) && std::getline(w_lines, wl) && gl == wl) ++line;
    ADD_FAILURE() << file << " line " << line << " differs:\n  golden: " << wl << "\n  now:    " << gl
                  << "\nReview the change; CIUIC_UPDATE_GOLDEN=1 rewrites the file.";
  }
}

// The goldens also hold what they claim: each case runs correctly.
TEST(ScheduleGolden, GoldenCasesRunCorrectly) {
  for (const Golden& g : golden_cases()) {
    Case c;
    c.collective = g.args.collective;
    c.algorithm = g.algorithm;
    c.nranks = g.args.nranks;
    c.count = g.args.count;
    c.datatype = g.args.datatype;
    c.op = g.args.op;
    c.root = g.args.root;
    c.placement = g.args.in_place_mpi ? Placement::kInPlaceMpi : g.args.in_place ? Placement::kInPlace
                                                                                   : Placement::kOutOfPlace;
    c.chunk_bytes = g.args.chunk_bytes;
    c.scratch_slots = g.args.scratch_slots;
    EXPECT_EQ(run_case(c), "") << g.file;
  }
}

}  // namespace
}  // namespace ciuic::coll::schedule_testing
