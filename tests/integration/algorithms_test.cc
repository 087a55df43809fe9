// Every algorithm of every collective that has more than one, forced with CIUIC_ALGO, on
// real communicators over TCP for 2, 3, 4, 6 and 8 ranks (8 as a 2x2x2 torus for the
// torus algorithms): sizes 0, 1, odd and pipelined, in place and not, checked exactly
// against the independent reference. (The collectives suite covers every datatype and
// op with the tuner's choices.) The hierarchical algorithms also run on nodes made with
// CIUIC_LOCAL_SIZE, every datatype and op.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "coll/algorithms.h"
#include "reduce/reduce.h"
#include "support/cluster.h"
#include "support/reference.h"
#include "support/scoped_config.h"

namespace ciuic::testing {
namespace {

using coll::Collective;

struct Param {
  Collective collective;
  std::string algorithm;
  int n;
};

void PrintTo(const Param& p, std::ostream* os) {
  *os << coll::collective_name(p.collective) << "/" << p.algorithm << "/" << p.n;
}

bool reduces(Collective c) {
  return c == Collective::kAllreduce || c == Collective::kReduceScatter || c == Collective::kReduce;
}

enum class Placement { kOutOfPlace, kInPlacePointer, kInPlaceToken };

// Runs one call on one rank; "" or what went wrong.
std::string run_rank(Collective c, int n, ciuic_datatype_t type, ciuic_op_t op, size_t count,
                     Placement p, int root, int rank, ciuic_comm_t comm) {
  const size_t elem = reduce::datatype_size(type);
  const size_t in_elems = c == Collective::kReduceScatter ? count * n : count;
  const size_t out_elems = c == Collective::kAllgather ? count * n : count;
  const size_t block = count * elem;
  constexpr size_t kGuard = 64;
  std::vector<char> send(in_elems * elem + 1),
      recv(std::max(in_elems, out_elems) * elem + 2 * kGuard, 0x5a);
  char* base = recv.data() + kGuard;
  const void* sendbuf = send.data();
  void* recvbuf = base;
  const char* result = base;
  const bool token = p == Placement::kInPlaceToken;
  if (p == Placement::kOutOfPlace) {
    fill_input(send.data(), in_elems, type, op, rank);
  } else if (c == Collective::kAllgather) {
    fill_input(base + rank * block, count, type, op, rank);
    sendbuf = token ? CIUIC_IN_PLACE : base + rank * block;
  } else if (c == Collective::kReduceScatter && !token) {
    fill_input(base, in_elems, type, op, rank);  // NCCL: recvbuf = sendbuf + rank * count
    sendbuf = base;
    recvbuf = base + rank * block;
    result = base + rank * block;
  } else {
    fill_input(base, in_elems, type, op, rank);
    sendbuf = token ? CIUIC_IN_PLACE : base;
  }
  ciuic_result_t rc = CIUIC_SUCCESS;
  switch (c) {
    case Collective::kAllreduce:
      rc = ciuic_allreduce(sendbuf, recvbuf, count, type, op, comm, nullptr);
      break;
    case Collective::kReduceScatter:
      rc = ciuic_reduce_scatter(sendbuf, recvbuf, count, type, op, comm, nullptr);
      break;
    case Collective::kAllgather:
      rc = ciuic_allgather(sendbuf, recvbuf, count, type, comm, nullptr);
      break;
    case Collective::kBroadcast:
      rc = ciuic_broadcast(sendbuf, recvbuf, count, type, root, comm, nullptr);
      break;
    case Collective::kReduce:
      rc = ciuic_reduce(sendbuf, recvbuf, count, type, op, root, comm, nullptr);
      break;
    default:
      return "not a collective this test runs";
  }
  if (rc != CIUIC_SUCCESS)
    return std::string(ciuic_result_string(rc)) + ": " + ciuic_comm_get_last_error(comm);
  for (size_t g = 0; g < kGuard; ++g)
    if (recv[g] != 0x5a) return "wrote before the start of recvbuf";
  if (p == Placement::kOutOfPlace)
    for (size_t g = 0; g < kGuard; ++g)
      if (recv[kGuard + out_elems * elem + g] != 0x5a) return "wrote past the end of recvbuf";
  std::vector<char> want(out_elems * elem);
  switch (c) {
    case Collective::kReduce:
      if (rank != root) return "";
      [[fallthrough]];
    case Collective::kAllreduce:
      for (size_t i = 0; i < count; ++i) reduced_value(type, op, n, i, want.data() + i * elem);
      break;
    case Collective::kReduceScatter:
      for (size_t i = 0; i < count; ++i)
        reduced_value(type, op, n, rank * count + i, want.data() + i * elem);
      break;
    case Collective::kAllgather:
      for (int r = 0; r < n; ++r) fill_input(want.data() + r * block, count, type, op, r);
      break;
    case Collective::kBroadcast:
      fill_input(want.data(), count, type, op, root);
      break;
    default:
      break;
  }
  std::string first;
  const size_t bad = count_mismatches(result, want.data(), out_elems, type, &first);
  return bad == 0 ? "" : std::to_string(bad) + " wrong elements; first: " + first;
}

class AlgorithmsTest : public ::testing::TestWithParam<Param> {};

TEST_P(AlgorithmsTest, MatchesReference) {
  const Param& p = GetParam();
  ScopedConfig algo("CIUIC_ALGO",
                    std::string(coll::collective_name(p.collective)) + "=" + p.algorithm);
  ScopedConfig dims("CIUIC_TORUS_DIMS", p.n == 8 ? "2x2x2" : "");
  ScopedConfig chunk("CIUIC_CHUNK_BYTES", "16K");  // the large size runs pipelined
  ScopedConfig slots("CIUIC_SCRATCH_SLOTS", "3");
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "60000");
  Cluster cluster(p.n);
  ASSERT_TRUE(cluster.ok());
  int cases = 0, failures = 0;
  const ciuic_datatype_t types[] = {CIUIC_FLOAT32, CIUIC_INT64, CIUIC_FLOAT16};
  const ciuic_op_t ops[] = {CIUIC_SUM, CIUIC_AVG, CIUIC_MAX};
  for (ciuic_datatype_t type : types) {
    for (ciuic_op_t op : ops) {
      if (!reduces(p.collective) && op != CIUIC_SUM) continue;
      for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1023}, size_t{20011}}) {
        const Placement placement = static_cast<Placement>((cases + static_cast<int>(count)) % 3);
        const int root = cases % p.n;
        std::vector<std::string> errors(static_cast<size_t>(p.n));
        cluster.run([&](int rank, ciuic_comm_t comm) {
          errors[rank] = run_rank(p.collective, p.n, type, op, count, placement, root, rank, comm);
        });
        ++cases;
        for (int r = 0; r < p.n; ++r) {
          if (errors[r].empty()) continue;
          ADD_FAILURE() << reduce::datatype_name(type) << " " << reduce::op_name(op)
                        << " count=" << count << " placement=" << static_cast<int>(placement)
                        << " root=" << root << ": rank " << r << ": " << errors[r];
          ++failures;
        }
        ASSERT_LT(failures, 5) << "stopping after 5 failures";
      }
    }
  }
  EXPECT_GT(cases, 0);
}

std::vector<Param> params() {
  std::vector<Param> out;
  for (const coll::AlgorithmEntry& e : coll::registered_algorithms()) {
    int siblings = 0;
    for (const coll::AlgorithmEntry& f : coll::registered_algorithms())
      siblings += f.collective == e.collective;
    if (siblings < 2) continue;
    for (int n : {2, 3, 4, 6, 8}) out.push_back({e.collective, e.name, n});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, AlgorithmsTest, ::testing::ValuesIn(params()),
                         [](const ::testing::TestParamInfo<Param>& param_info) {
                           const Param& q = param_info.param;
                           return std::string(coll::collective_name(q.collective)) + "_" +
                                  q.algorithm + "_" + std::to_string(q.n) + "ranks";
                         });

// The hierarchical algorithms on nodes made with CIUIC_LOCAL_SIZE (rank r on node r/k):
// 4 ranks as 2x2, 6 as 3 nodes of 2 and as 2 nodes of 3, 5 as nodes of 3 and 2, 7 as
// 2+2+2+1 (reduce-scatter and all-gather run their flat fallback on the unequal ones);
// every datatype and op, odd and pipelined counts, every placement by turns, and the
// algorithm between the nodes forced to each in turn.
struct NodesParam {
  Collective collective;
  int n;
  int local_size;
  const char* inter;   // CIUIC_HIER_INTER_ALGO ("": the model's choice)
  const char* blocks;  // CIUIC_HIER_BLOCKS
};

void PrintTo(const NodesParam& p, std::ostream* os) {
  *os << coll::collective_name(p.collective) << "/" << p.n << "ranks/" << p.local_size << "pernode";
}

class HierarchicalOnNodesTest : public ::testing::TestWithParam<NodesParam> {};

TEST_P(HierarchicalOnNodesTest, MatchesReference) {
  const NodesParam& p = GetParam();
  ScopedConfig algo("CIUIC_ALGO",
                    std::string(coll::collective_name(p.collective)) + "=hierarchical");
  ScopedConfig local("CIUIC_LOCAL_SIZE", std::to_string(p.local_size));
  ScopedConfig inter("CIUIC_HIER_INTER_ALGO", p.inter);
  ScopedConfig blocks("CIUIC_HIER_BLOCKS", p.blocks);
  ScopedConfig chunk("CIUIC_CHUNK_BYTES", "16K");
  ScopedConfig slots("CIUIC_SCRATCH_SLOTS", "3");
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "60000");
  Cluster cluster(p.n);
  ASSERT_TRUE(cluster.ok());
  int cases = 0, failures = 0;
  for (int t = 0; t < CIUIC_NUM_DATATYPES; ++t) {
    const auto type = static_cast<ciuic_datatype_t>(t);
    for (int o = 0; o < (reduces(p.collective) ? CIUIC_NUM_OPS : 1); ++o) {
      const auto op = static_cast<ciuic_op_t>(o);
      const size_t small = std::vector<size_t>{1, 7, 13}[static_cast<size_t>(t + o) % 3];
      const size_t large = (t + o) % 2 == 0 ? 1023 : 20011;
      for (size_t count : {size_t{0}, small, large}) {
        if (count == 0 && t + o > 0) continue;  // once is enough
        const Placement placement = static_cast<Placement>((cases + t) % 3);
        std::vector<std::string> errors(static_cast<size_t>(p.n));
        cluster.run([&](int rank, ciuic_comm_t comm) {
          errors[rank] = run_rank(p.collective, p.n, type, op, count, placement, 0, rank, comm);
        });
        ++cases;
        for (int r = 0; r < p.n; ++r) {
          if (errors[r].empty()) continue;
          ADD_FAILURE() << reduce::datatype_name(type) << " " << reduce::op_name(op)
                        << " count=" << count << " placement=" << static_cast<int>(placement)
                        << ": rank " << r << ": " << errors[r];
          ++failures;
        }
        ASSERT_LT(failures, 5) << "stopping after 5 failures";
      }
    }
  }
  EXPECT_GT(cases, 0);
}

std::vector<NodesParam> nodes_params() {
  std::vector<NodesParam> out;
  for (Collective c :
       {Collective::kAllreduce, Collective::kReduceScatter, Collective::kAllgather}) {
    out.push_back({c, 4, 2, "", "0"});
    out.push_back({c, 6, 2, "tree", "2"});
    out.push_back({c, 6, 3, "rabenseifner", "0"});
    out.push_back({c, 5, 3, "ring", "3"});
    out.push_back({c, 7, 2, "recursive_doubling", "0"});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, HierarchicalOnNodesTest, ::testing::ValuesIn(nodes_params()),
                         [](const ::testing::TestParamInfo<NodesParam>& param_info) {
                           const NodesParam& q = param_info.param;
                           return std::string(coll::collective_name(q.collective)) + "_" +
                                  std::to_string(q.n) + "ranks_" + std::to_string(q.local_size) +
                                  "pernode";
                         });

}  // namespace
}  // namespace ciuic::testing
