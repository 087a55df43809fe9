// The hierarchical algorithms on node layouts: every rank count 1..64 under several layouts
// (2, 4 and 8 ranks per node in rank order, nodes of unequal sizes, nodes interleaved in
// rank order, a shuffled layout), every count from 0 past the number of slices, every op,
// several datatypes, every in-place flavour; each rank's schedule is checked for structure
// and data races, run by simulate_dataflow, and compared with the independent reference
// (schedule_test_helpers.h). Then: deep pipelines in a shuffled run order, every algorithm
// between the nodes and several block counts forced, the flat fallback and its name, the
// traffic that crosses the nodes, splice_schedule on its own, and a golden schedule.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "schedule_test_helpers.h"
#include "support/scoped_config.h"

namespace ciuic::coll::schedule_testing {
namespace {

using ciuic::testing::ScopedConfig;
using Nodes = std::shared_ptr<const std::vector<int>>;

Nodes nodes_of(std::vector<int> v) {
  return std::make_shared<const std::vector<int>>(std::move(v));
}

// Ranks in rank order, `per` to a node (the last node may be smaller).
Nodes contiguous(int n, int per) {
  std::vector<int> v;
  for (int r = 0; r < n; ++r) v.push_back(r / per);
  return nodes_of(v);
}
// Nodes taking turns: rank r on node r % nodes.
Nodes interleaved(int n, int nodes) {
  std::vector<int> v;
  for (int r = 0; r < n; ++r) v.push_back(r % nodes);
  return nodes_of(v);
}
// Nodes of sizes big, small, big, small, ... in rank order.
Nodes alternating_sizes(int n, int big, int small) {
  std::vector<int> v;
  for (int node = 0; static_cast<int>(v.size()) < n; ++node)
    for (int k = 0; k < (node % 2 == 0 ? big : small) && static_cast<int>(v.size()) < n; ++k)
      v.push_back(node);
  return nodes_of(v);
}
// A random assignment to about n/3 nodes, labels not in order of first appearance.
Nodes shuffled(int n, uint64_t seed) {
  std::mt19937_64 random(seed);
  const int nodes = std::max(2, n / 3);
  std::vector<int> v;
  for (int r = 0; r < n; ++r) v.push_back(static_cast<int>(random() % nodes) * 7 + 3);
  return nodes_of(v);
}

std::vector<std::pair<std::string, Nodes>> layouts(int n) {
  std::vector<std::pair<std::string, Nodes>> out;
  for (int per : {2, 4, 8})
    if (per < n) out.push_back({std::to_string(per) + " per node", contiguous(n, per)});
  if (n >= 4) out.push_back({"interleaved", interleaved(n, n >= 9 ? 3 : 2)});
  if (n >= 5) out.push_back({"3+2 sizes", alternating_sizes(n, 3, 2)});
  if (n >= 6) out.push_back({"1+4 sizes", alternating_sizes(n, 1, 4)});
  if (n >= 7) out.push_back({"shuffled", shuffled(n, static_cast<uint64_t>(n))});
  // Degenerate layouts: the flat fallback.
  out.push_back({"one node", nodes_of(std::vector<int>(static_cast<size_t>(n), 0))});
  out.push_back({"one rank per node", contiguous(n, 1)});
  return out;
}

constexpr ciuic_datatype_t kDatatypes[] = {
    CIUIC_FLOAT32, CIUIC_INT32, CIUIC_UINT8,    CIUIC_FLOAT64, CIUIC_INT64,
    CIUIC_FLOAT16, CIUIC_INT8,  CIUIC_BFLOAT16, CIUIC_UINT32,  CIUIC_UINT64};
constexpr ciuic_op_t kOps[] = {CIUIC_SUM, CIUIC_PROD, CIUIC_MIN, CIUIC_MAX, CIUIC_AVG};
constexpr Collective kCollectives[] = {Collective::kAllreduce, Collective::kReduceScatter,
                                       Collective::kAllgather};

Case hier_case(Collective c, int n, Nodes nodes, size_t count, int variant) {
  Case k;
  k.collective = c;
  k.algorithm = "hierarchical";
  k.nranks = n;
  k.count = count;
  k.node_of_rank = std::move(nodes);
  k.op = kOps[variant % std::size(kOps)];
  size_t t = static_cast<size_t>(variant) * 3;
  do {
    k.datatype = kDatatypes[t++ % std::size(kDatatypes)];
  } while (!exact(k.datatype, k.op, n));
  const std::vector<Placement> p = placements(c);
  k.placement = p[static_cast<size_t>(variant) % p.size()];
  return k;
}

// Every rank count to 64, each layout, each collective: counts below, at and above the
// number of slices, rotating through ops, datatypes and placements.
class HierarchicalEveryRankCount : public ::testing::TestWithParam<Collective> {};
TEST_P(HierarchicalEveryRankCount, To64) {
  Sweep s;
  int variant = 0;
  for (int n = 1; n <= 64; ++n) {
    for (const auto& [name, nodes] : layouts(n)) {
      const bool per_rank = GetParam() != Collective::kAllreduce;
      std::set<size_t> counts = {0, 1, 5, per_rank ? 3 : static_cast<size_t>(n) + 3};
      if (n <= 16) counts.insert(per_rank ? 17 : 301);
      for (size_t count : counts) s.run(hier_case(GetParam(), n, nodes, count, variant++));
    }
  }
}
INSTANTIATE_TEST_SUITE_P(All, HierarchicalEveryRankCount, ::testing::ValuesIn(kCollectives),
                         [](const ::testing::TestParamInfo<Collective>& param_info) {
                           return std::string(collective_name(param_info.param));
                         });

// Small rank counts, every op, placement and count in the main sweep's set.
TEST(Hierarchical, EveryOpPlacementAndCountOnSmallLayouts) {
  Sweep s;
  int variant = 0;
  for (int n : {2, 3, 4, 5, 6, 7, 9, 12}) {
    for (const auto& [name, nodes] : layouts(n)) {
      for (Collective c : kCollectives) {
        const size_t un = static_cast<size_t>(n);
        for (size_t count : std::set<size_t>{0, 1, 3, un - 1, un, un + 1, 1000}) {
          for (Placement p : placements(c)) {
            for (ciuic_op_t op : kOps) {
              Case k = hier_case(c, n, nodes, count, variant++);
              k.placement = p;
              k.op = op;
              while (!exact(k.datatype, op, n)) k.datatype = CIUIC_FLOAT32;
              s.run(k);
            }
          }
        }
      }
    }
  }
}

// Deep pipelines: 16-byte chunks through 2 or 3 scratch slots, steps run in a shuffled
// order, and the all-reduce in several blocks.
TEST(Hierarchical, DeepPipelinesInAShuffledOrder) {
  Sweep s;
  int variant = 0;
  for (const char* blocks : {"0", "1", "3"}) {
    ScopedConfig forced("CIUIC_HIER_BLOCKS", blocks);
    for (int n : {4, 5, 6, 8, 12}) {
      for (const auto& [name, nodes] : layouts(n)) {
        for (Collective c : kCollectives) {
          for (int slots : {2, 3}) {
            Case k = hier_case(c, n, nodes, c == Collective::kAllreduce ? 203 : 13, variant++);
            k.chunk_bytes = 16;
            k.scratch_slots = slots;
            k.order_seed = static_cast<uint64_t>(variant);
            s.run(k);
          }
        }
      }
    }
  }
}

// Every algorithm between the nodes, forced, at several block counts.
TEST(Hierarchical, EveryAlgorithmBetweenTheNodes) {
  Sweep s;
  int variant = 0;
  for (const char* inter : {"ring", "recursive_doubling", "tree", "rabenseifner"}) {
    ScopedConfig forced("CIUIC_HIER_INTER_ALGO", inter);
    for (const char* blocks : {"1", "2", "5"}) {
      ScopedConfig forced_blocks("CIUIC_HIER_BLOCKS", blocks);
      for (int n : {6, 10, 24}) {
        for (const auto& [name, nodes] : layouts(n)) {
          for (Collective c : kCollectives) {
            Case k = hier_case(c, n, nodes, c == Collective::kAllreduce ? 1001 : 7, variant++);
            k.chunk_bytes = 64;
            s.run(k);
          }
        }
      }
    }
  }
}

std::vector<Schedule> build_every_rank(Collective c, int n, Nodes nodes, size_t count,
                                       size_t chunk = 1 << 20) {
  std::vector<Schedule> out(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    CollectiveArgs a;
    a.collective = c;
    a.rank = r;
    a.nranks = n;
    a.count = count;
    a.datatype = CIUIC_FLOAT32;
    a.chunk_bytes = chunk;
    a.node_of_rank = nodes;
    EXPECT_TRUE(build_schedule(a, "hierarchical", &out[r]).ok());
  }
  return out;
}

TEST(Hierarchical, FallsBackToTheFlatAlgorithmAndSaysSo) {
  ScopedConfig topo("CIUIC_TOPOLOGY", "flat");
  for (Nodes nodes : {Nodes{}, nodes_of({0, 0, 0, 0, 0, 0}), contiguous(6, 1)}) {
    for (Collective c : kCollectives) {
      CollectiveArgs a;
      a.collective = c;
      a.nranks = 6;
      a.count = 1000;
      a.node_of_rank = nodes;
      const std::string flat = default_algorithm(a);
      EXPECT_NE(flat, "hierarchical");
      Schedule s;
      ASSERT_TRUE(build_schedule(a, "hierarchical", &s).ok());
      EXPECT_EQ(s.algorithm, "hierarchical(flat " + flat + ")") << collective_name(c);
    }
  }
  // Reduce-scatter and all-gather need nodes of one size; the all-reduce does not.
  const Nodes uneven = nodes_of({0, 0, 0, 1, 1});
  for (Collective c : kCollectives) {
    CollectiveArgs a;
    a.collective = c;
    a.nranks = 5;
    a.count = 10;
    a.node_of_rank = uneven;
    Schedule s;
    ASSERT_TRUE(build_schedule(a, "hierarchical", &s).ok());
    EXPECT_EQ(s.algorithm.rfind("hierarchical(flat ", 0) == 0, c != Collective::kAllreduce)
        << s.algorithm;
  }
}

TEST(Hierarchical, ALayoutOfTheWrongSizeIsAnError) {
  CollectiveArgs a;
  a.nranks = 4;
  a.count = 8;
  a.node_of_rank = nodes_of({0, 0, 1});
  Schedule s;
  Status st = build_schedule(a, "hierarchical", &s);
  EXPECT_EQ(st.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(st.message().find("3 ranks"), std::string::npos) << st.message();
}

TEST(Hierarchical, TheNodeLayoutComesFromANodesTopologyWhenTheArgumentsHaveNone) {
  ScopedConfig topo("CIUIC_TOPOLOGY", "nodes:3");
  ScopedConfig inter("CIUIC_HIER_INTER_ALGO", "ring");
  Case k;
  k.algorithm = "hierarchical";
  k.nranks = 12;
  k.count = 1001;
  EXPECT_EQ(run_case(k), "");
  CollectiveArgs a;
  a.nranks = 12;
  a.count = 1001;
  Schedule s;
  ASSERT_TRUE(build_schedule(a, "hierarchical", &s).ok());
  EXPECT_EQ(s.algorithm.rfind("hierarchical(inter ", 0), 0u) << s.algorithm;
  // Ranks 0..3 are node 0: rank 0's peers in the node are 1..3, across the nodes 4 and 8.
  std::set<int> peers;
  for (const Step& st : s.steps)
    if (st.kind == StepKind::kSend || st.kind == StepKind::kRecv) peers.insert(st.peer);
  EXPECT_EQ(peers, (std::set<int>{1, 2, 3, 4, 8}));
}

// The point of the algorithm: what crosses the nodes. With S ranks per node and the ring
// between N nodes, each node sends 2(N-1)/N of the buffer to other nodes — whatever the
// interleaving of its ranks in rank order, where the flat ring crosses nodes at every hop.
TEST(Hierarchical, EachNodeSendsTwiceTheBufferAcrossWhateverTheInterleaving) {
  ScopedConfig inter("CIUIC_HIER_INTER_ALGO", "ring");
  ScopedConfig blocks("CIUIC_HIER_BLOCKS", "1");
  const int n = 16, nodes = 4;
  const size_t count = 16000, bytes = count * 4;
  for (Nodes layout : {contiguous(n, n / nodes), interleaved(n, nodes)}) {
    const std::vector<Schedule> s = build_every_rank(Collective::kAllreduce, n, layout, count);
    std::vector<size_t> across(static_cast<size_t>(nodes), 0);
    for (int r = 0; r < n; ++r)
      for (const Step& st : s[r].steps)
        if (st.kind == StepKind::kSend && (*layout)[st.peer] != (*layout)[r])
          across[(*layout)[r]] += st.bytes;
    for (int k = 0; k < nodes; ++k) EXPECT_EQ(across[k], 2 * (nodes - 1) * bytes / nodes) << k;
  }
  // The flat ring on the interleaved layout, for contrast: every hop leaves the node.
  Schedule ring;
  CollectiveArgs a;
  a.nranks = n;
  a.count = count;
  ASSERT_TRUE(build_schedule(a, "ring", &ring).ok());
  size_t sent = 0;
  for (const Step& st : ring.steps) sent += st.kind == StepKind::kSend ? st.bytes : 0;
  EXPECT_GT(sent * (n / nodes), 2 * (nodes - 1) * bytes / nodes);
}

// splice_schedule on its own: a copy, then ring all-reduces among the even and among the
// odd ranks over the first half of recvbuf, then one among all ranks (listed backwards)
// over the whole buffer, all in place. The first half ends as 3x the total, the second as
// the total — only if each piece waited for the earlier ones on exactly its bytes; every
// rank's schedule is also proven race-free and run in shuffled orders.
TEST(SpliceSchedule, PiecesWaitForEarlierPiecesOnTheirBytes) {
  const int n = 6;
  const size_t count = 1001, half = 500, elem = 4;
  std::vector<Schedule> schedules(n);
  for (int r = 0; r < n; ++r) {
    Schedule& s = schedules[r];
    s.algorithm = "spliced";
    s.rank = r;
    s.nranks = n;
    s.datatype = CIUIC_INT32;
    s.op = CIUIC_SUM;
    BufferLedgers ledgers;
    const uint32_t copied =
        ledgers.add(&s, copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), count * elem));
    CollectiveArgs sub;
    sub.datatype = CIUIC_INT32;
    sub.in_place = true;
    sub.chunk_bytes = 64;
    sub.scratch_slots = 2;
    SubGroup parity{{r % 2, r % 2 + 2, r % 2 + 4},
                    at(Buffer::kRecv, 0),
                    at(Buffer::kRecv, 0),
                    at(Buffer::kScratch, 0)};
    sub.rank = r / 2;
    sub.nranks = 3;
    sub.count = half;
    Schedule piece;
    ASSERT_TRUE(build_schedule(sub, "ring", &piece).ok());
    const uint32_t first = splice_schedule(&s, piece, parity, &ledgers);
    EXPECT_EQ(first, copied + 1);
    // Peers mapped: every message of the piece goes to a rank of the same parity.
    for (uint32_t i = first; i < s.steps.size(); ++i) {
      if (s.steps[i].kind == StepKind::kSend || s.steps[i].kind == StepKind::kRecv) {
        EXPECT_EQ(s.steps[i].peer % 2, r % 2);
      }
    }
    const size_t scratch_after_first = s.scratch_bytes;
    EXPECT_EQ(scratch_after_first, piece.scratch_bytes);
    SubGroup all{{5, 4, 3, 2, 1, 0},
                 at(Buffer::kRecv, 0),
                 at(Buffer::kRecv, 0),
                 at(Buffer::kScratch, scratch_after_first)};
    sub.rank = n - 1 - r;
    sub.nranks = n;
    sub.count = count;
    ASSERT_TRUE(append_sub_collective(&s, sub, "ring", all, &ledgers).ok());
    EXPECT_GT(s.scratch_bytes, scratch_after_first);
    s.finalize();
    EXPECT_EQ(check_hazards(s).message(), "");
  }
  for (uint64_t seed : {0, 1, 2, 3}) {
    std::vector<std::vector<int32_t>> send(n, std::vector<int32_t>(count)), recv = send;
    std::vector<std::vector<char>> scratch(n);
    std::vector<Buffers> buffers;
    for (int r = 0; r < n; ++r) {
      for (size_t i = 0; i < count; ++i) send[r][i] = static_cast<int32_t>(r * 1000 + i);
      scratch[r].resize(schedules[r].scratch_bytes);
      buffers.push_back(Buffers{send[r].data(), recv[r].data(), scratch[r].data()});
    }
    ASSERT_EQ(simulate_dataflow(schedules, buffers, SimulateOptions{seed}).message(), "");
    for (int r = 0; r < n; ++r)
      for (size_t i = 0; i < count; ++i) {
        int64_t total = 0;
        for (int q = 0; q < n; ++q) total += q * 1000 + static_cast<int64_t>(i);
        ASSERT_EQ(recv[r][i], (i < half ? 3 : 1) * total) << "rank " << r << " element " << i;
      }
  }
}

// 256 ranks as 32 nodes of 8 (the 1024-rank case runs in tests/slow).
TEST(Hierarchical, At256Ranks) {
  Sweep s;
  for (Collective c : kCollectives) {
    Case k = hier_case(c, 256, contiguous(256, 8), c == Collective::kAllreduce ? 1031 : 2, 7);
    k.chunk_bytes = 4096;
    s.run(k);
    k.node_of_rank = interleaved(256, 32);
    k.placement = Placement::kInPlace;
    s.run(k);
  }
}

// ---- golden schedule ----
// 5 ranks on two interleaved nodes of 3 and 2 (rank 4 an extra rank of node 0), 7 floats
// (slices of 3, a tail of 1), 8-byte chunks: the fold, the in-node phases, the tail and
// the ring across the nodes. CIUIC_UPDATE_GOLDEN=1 rewrites the file.
TEST(HierarchicalGolden, MatchesItsDump) {
  ScopedConfig inter("CIUIC_HIER_INTER_ALGO", "ring");
  ScopedConfig blocks("CIUIC_HIER_BLOCKS", "1");
  const Nodes layout = nodes_of({0, 1, 0, 1, 0});
  std::string got;
  for (int r = 0; r < 5; ++r) {
    CollectiveArgs a;
    a.rank = r;
    a.nranks = 5;
    a.count = 7;
    a.chunk_bytes = 8;
    a.scratch_slots = 2;
    a.op = CIUIC_AVG;
    a.node_of_rank = layout;
    Schedule s;
    ASSERT_TRUE(build_schedule(a, "hierarchical", &s).ok());
    got += s.to_string();
  }
  const std::filesystem::path file = std::filesystem::path(__FILE__).parent_path() / "golden" /
                                     "hierarchical_allreduce_n5_nodes01010_count7_float32_avg.txt";
  const char* update = std::getenv("CIUIC_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(file) << got;
    return;
  }
  std::ifstream in(file);
  ASSERT_TRUE(in.good()) << file << " is missing: run with CIUIC_UPDATE_GOLDEN=1 to create it";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(got, want.str()) << "review the change; CIUIC_UPDATE_GOLDEN=1 rewrites " << file;
  Case k;
  k.algorithm = "hierarchical";
  k.nranks = 5;
  k.count = 7;
  k.chunk_bytes = 8;
  k.scratch_slots = 2;
  k.op = CIUIC_AVG;
  k.node_of_rank = layout;
  EXPECT_EQ(run_case(k), "");
}

}  // namespace
}  // namespace ciuic::coll::schedule_testing
