// The cost model: topology parsing and routes, link contention in simulate_time on
// hand-built schedules whose times are known, and predict_time (the round model the
// tuner uses) held to simulate_time (which runs the real schedules) for every algorithm.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "coll/cost_model.h"
#include "coll/tuner.h"
#include "support/scoped_config.h"

namespace ciuic::coll {
namespace {

Topology topo(const std::string& text, int n, CostParams p = {}) {
  Topology t;
  Status s = Topology::parse(text, n, p, &t);
  EXPECT_TRUE(s.ok()) << text << ": " << s.message();
  return t;
}

TEST(Topology, ParsesAndDescribesItself) {
  EXPECT_EQ(topo("flat", 8).describe(), "flat");
  EXPECT_EQ(topo("torus:4x2x2", 16).describe(), "torus:4x2x2");
  EXPECT_EQ(topo("torus:8", 8).describe(), "torus:8x1x1");
  EXPECT_EQ(topo("torus", 64).describe(), "torus:4x4x4");
  EXPECT_EQ(topo("nodes:4", 32).describe(), "nodes:4");
  Topology t;
  for (const char* bad : {"torus:4x3", "nodes:3", "mesh", "torus:2x2x2x2", "torus:0x16"}) {
    Status s = Topology::parse(bad, 16, {}, &t);
    EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s.message();
  }
}

TEST(Topology, TorusRoutesDimensionByDimensionTheShortWay) {
  const Topology t = topo("torus:4x4x4", 64);
  std::vector<int> links;
  EXPECT_EQ(t.route(0, 1, &links), 1);
  links.clear();
  EXPECT_EQ(t.route(0, 3, &links), 1);  // the wrap link, downward
  EXPECT_EQ(links[0], (0 * 3 + 0) * 2 + 1);
  links.clear();
  // (0,0,0) -> (2,3,1): 2 hops in x, 1 (wrapping) in y, 1 in z.
  EXPECT_EQ(t.route(0, 2 + 4 * 3 + 16 * 1, &links), 4);
  ASSERT_EQ(links.size(), 4u);
  EXPECT_EQ(links[0], (0 * 3 + 0) * 2 + 0);  // x first, from rank 0
  EXPECT_EQ(links[1], (1 * 3 + 0) * 2 + 0);  // then from rank 1
  EXPECT_EQ(links[2], (2 * 3 + 1) * 2 + 1);  // y downward from (2,0,0)
  const Topology nodes = topo("nodes:2", 8);
  links.clear();
  nodes.route(1, 2, &links);
  EXPECT_EQ(nodes.link_bytes_per_s(links[0]), CostParams{}.local_bytes_per_s);
  links.clear();
  nodes.route(1, 6, &links);
  EXPECT_EQ(nodes.link_bytes_per_s(links[0]), CostParams{}.link_bytes_per_s);
}

Schedule empty(int rank, int n) {
  Schedule s;
  s.algorithm = "hand-built";
  s.rank = rank;
  s.nranks = n;
  return s;
}

// Two messages of B bytes on a 4-rank 1-D torus: 0->1 and 2->3 use different links;
// 0->2 and 1->3 both cross link 1->2, so one waits for the other.
TEST(SimulateTime, MessagesSharingALinkTakeTurns) {
  CostParams p;
  p.alpha_s = 0;
  p.hop_latency_s = 0;
  p.link_bytes_per_s = 1e9;
  const Topology t = topo("torus:4", 4, p);
  const size_t bytes = 1000000;  // 1 ms per link
  auto run = [&](std::vector<std::pair<int, int>> pairs) {
    std::vector<Schedule> s;
    for (int r = 0; r < 4; ++r) s.push_back(empty(r, 4));
    for (auto [a, b] : pairs) {
      s[a].add(send_step(b, at(Buffer::kSend, 0), bytes));
      s[b].add(recv_step(a, at(Buffer::kRecv, 0), bytes));
    }
    for (auto& x : s) x.finalize();
    double seconds = -1;
    Status st = simulate_time(s, t, &seconds);
    EXPECT_TRUE(st.ok()) << st.message();
    return seconds;
  };
  EXPECT_NEAR(run({{0, 1}, {2, 3}}), 1e-3, 1e-9);
  EXPECT_NEAR(run({{0, 2}, {1, 3}}), 2e-3, 1e-9);
  EXPECT_NEAR(run({{0, 1}, {1, 2}, {2, 3}, {3, 0}}), 1e-3, 1e-9);  // a ring: every link once
}

TEST(SimulateTime, ChargesAlphaLatencyAndGamma) {
  CostParams p;
  p.alpha_s = 5e-6;
  p.hop_latency_s = 1e-6;
  p.link_bytes_per_s = 1e9;
  p.gamma_s_per_byte = 2e-9;
  const Topology t = topo("torus:8", 8, p);
  std::vector<Schedule> s;
  for (int r = 0; r < 8; ++r) s.push_back(empty(r, 8));
  // 0 -> 3 (3 hops), then rank 3 reduces what came.
  s[0].add(send_step(3, at(Buffer::kSend, 0), 1000));
  const uint32_t got = s[3].add(recv_step(0, at(Buffer::kScratch, 0), 1000));
  s[3].add(reduce_step(at(Buffer::kRecv, 0), at(Buffer::kRecv, 0), at(Buffer::kScratch, 0), 1000),
           {got});
  for (auto& x : s) x.finalize();
  double seconds = 0;
  ASSERT_TRUE(simulate_time(s, t, &seconds).ok());
  EXPECT_NEAR(seconds, 5e-6 + 1e-6 + 3e-6 + 2e-6, 1e-12);
}

std::vector<Schedule> build_all(Collective c, const std::string& algorithm, int n, size_t bytes,
                                size_t chunk, const std::vector<int>& dims = {}) {
  std::vector<Schedule> out(static_cast<size_t>(n));
  const bool per_rank = c == Collective::kAllgather || c == Collective::kReduceScatter;
  for (int r = 0; r < n; ++r) {
    CollectiveArgs a;
    a.collective = c;
    a.rank = r;
    a.nranks = n;
    a.datatype = CIUIC_FLOAT32;
    a.count = bytes / 4 / (per_rank ? n : 1);
    a.chunk_bytes = chunk;
    a.torus_dims = dims;
    Status s = build_schedule(a, algorithm, &out[r]);
    EXPECT_TRUE(s.ok()) << s.message();
  }
  return out;
}

// The round model against the event-driven run of the real schedules: the tuner may
// trust the model only as far as it agrees with the schedules.
TEST(PredictTime, AgreesWithTheSchedulesWithinAThird) {
  struct Algo {
    Collective c;
    const char* name;
  };
  const Algo algos[] = {{Collective::kAllreduce, "ring"},
                        {Collective::kAllreduce, "recursive_doubling"},
                        {Collective::kAllreduce, "tree"},
                        {Collective::kAllreduce, "rabenseifner"},
                        {Collective::kAllreduce, "torus"},
                        {Collective::kAllgather, "ring"},
                        {Collective::kAllgather, "rabenseifner"},
                        {Collective::kAllgather, "torus"},
                        {Collective::kReduceScatter, "ring"},
                        {Collective::kReduceScatter, "rabenseifner"},
                        {Collective::kReduceScatter, "torus"},
                        {Collective::kBroadcast, "chain"},
                        {Collective::kBroadcast, "tree"},
                        {Collective::kReduce, "chain"},
                        {Collective::kReduce, "tree"}};
  const size_t chunk = 256 << 10;
  for (const char* topology : {"flat", "torus:4x2x2"}) {
    const Topology t = topo(topology, 16);
    for (size_t bytes : {size_t{4096}, size_t{1} << 20, size_t{32} << 20}) {
      for (const Algo& a : algos) {
        double simulated = 0;
        Status s =
            simulate_time(build_all(a.c, a.name, 16, bytes, chunk, {4, 2, 2}), t, &simulated);
        ASSERT_TRUE(s.ok()) << s.message();
        const double predicted = predict_time(a.c, a.name, bytes, t, chunk);
        ASSERT_GT(predicted, 0) << a.name;
        const double ratio = predicted / simulated;
        EXPECT_TRUE(ratio > 0.67 && ratio < 1.5)
            << collective_name(a.c) << "/" << a.name << " " << bytes << " B on " << topology
            << ": predicted " << predicted * 1e6 << " us, simulated " << simulated * 1e6 << " us";
      }
    }
  }
}

TEST(Topology, NodesOfAnyLayout) {
  const Topology uneven = topo("nodes:3+2+3", 8);
  EXPECT_EQ(uneven.describe(), "nodes:3+2+3");
  EXPECT_EQ(uneven.num_nodes(), 3);
  EXPECT_EQ(uneven.node_of_rank(), (std::vector<int>{0, 0, 0, 1, 1, 2, 2, 2}));
  EXPECT_EQ(topo("nodes:4+4", 8).describe(), "nodes:2");
  Topology t;
  for (const char* bad : {"nodes:3+2", "nodes:3+6", "nodes:3+0+5", "nodes:+8"})
    EXPECT_EQ(Topology::parse(bad, 8, {}, &t).code(), CIUIC_ERR_INVALID_ARGUMENT) << bad;
  // Any labels, numbered in order of first appearance; interleaved nodes route by them.
  const Topology mixed = Topology::from_nodes({7, 3, 7, 3}, CostParams{});
  EXPECT_EQ(mixed.node_of_rank(), (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(mixed.describe(), "nodes:2 (interleaved)");
  std::vector<int> links;
  mixed.route(0, 2, &links);
  EXPECT_EQ(mixed.link_bytes_per_s(links[0]), CostParams{}.local_bytes_per_s);
  links.clear();
  mixed.route(0, 1, &links);
  EXPECT_EQ(mixed.link_bytes_per_s(links[0]), CostParams{}.link_bytes_per_s);
}

// The hierarchical plan against the event-driven run of its schedules, on nodes of equal
// and unequal sizes, with whatever the plan picks between the nodes and for blocks.
TEST(PredictTime, HierarchicalAgreesWithItsSchedulesWithinAThird) {
  const size_t chunk = 256 << 10;
  for (const char* topology : {"nodes:4", "nodes:2", "nodes:8", "nodes:6+4+6"}) {
    ciuic::testing::ScopedConfig topo_config("CIUIC_TOPOLOGY", topology);
    const Topology t = topo(topology, 16);
    for (size_t bytes : {size_t{4096}, size_t{1} << 20, size_t{32} << 20}) {
      for (Collective c :
           {Collective::kAllreduce, Collective::kAllgather, Collective::kReduceScatter}) {
        double simulated = 0;
        const std::vector<Schedule> schedules = build_all(c, "hierarchical", 16, bytes, chunk);
        Status s = simulate_time(schedules, t, &simulated);
        ASSERT_TRUE(s.ok()) << s.message();
        const double predicted = predict_time(c, "hierarchical", bytes, t, chunk);
        ASSERT_GT(predicted, 0);
        const double ratio = predicted / simulated;
        EXPECT_TRUE(ratio > 0.67 && ratio < 1.5)
            << collective_name(c) << " " << bytes << " B on " << topology << " ("
            << schedules[0].algorithm << "): predicted " << predicted * 1e6 << " us, simulated "
            << simulated * 1e6 << " us";
      }
    }
  }
}

// A plan across the nodes is no slower than the flat algorithms where nodes matter most:
// large buffers, slow NICs, fast links inside the node.
TEST(PredictTime, HierarchicalBeatsFlatAlgorithmsOnSlowNicsForLargeBuffers) {
  const Topology t = topo("nodes:8", 64);
  const size_t bytes = size_t{64} << 20, chunk = 256 << 10;
  const HierarchicalPlan plan = plan_hierarchical(Collective::kAllreduce, bytes, t, chunk);
  EXPECT_TRUE(plan.flat.empty());
  EXPECT_FALSE(plan.inter.empty());
  for (const char* flat : {"ring", "tree", "rabenseifner", "recursive_doubling"})
    EXPECT_LT(plan.seconds, predict_time(Collective::kAllreduce, flat, bytes, t, chunk)) << flat;
  // Given as forced, the plan keeps the algorithm and the blocks.
  const HierarchicalPlan forced =
      plan_hierarchical(Collective::kAllreduce, bytes, t, chunk, "tree", 3);
  EXPECT_EQ(forced.inter, "tree");
  EXPECT_EQ(forced.blocks, 3);
  // One node, or one rank per node: the flat algorithm the model likes best.
  for (const char* degenerate : {"nodes:1", "nodes:64"}) {
    const HierarchicalPlan flat =
        plan_hierarchical(Collective::kAllreduce, bytes, topo(degenerate, 64), chunk);
    EXPECT_FALSE(flat.flat.empty()) << degenerate;
    EXPECT_NEAR(flat.seconds,
                predict_time(Collective::kAllreduce, flat.flat, bytes, topo(degenerate, 64), chunk),
                1e-12);
  }
  EXPECT_LT(plan_hierarchical(Collective::kAllreduce, bytes, topo("flat", 64), chunk).seconds, 0);
}

}  // namespace
}  // namespace ciuic::coll
