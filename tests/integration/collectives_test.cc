// Every collective x datatype x op x size x {out of place, in place (both spellings)} x
// rank count, on real communicators over TCP, checked exactly against an independent
// reference.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "reduce/reduce.h"
#include "support/cluster.h"
#include "support/reference.h"
#include "support/scoped_config.h"

namespace ciuic::testing {
namespace {

enum class Coll { kAllreduce, kReduceScatter, kReduce, kAllgather, kBroadcast, kAlltoall };

const char* name(Coll c) {
  switch (c) {
    case Coll::kAllreduce:
      return "allreduce";
    case Coll::kReduceScatter:
      return "reduce_scatter";
    case Coll::kReduce:
      return "reduce";
    case Coll::kAllgather:
      return "allgather";
    case Coll::kBroadcast:
      return "broadcast";
    case Coll::kAlltoall:
      return "alltoall";
  }
  return "?";
}

bool reduces(Coll c) {
  return c == Coll::kAllreduce || c == Coll::kReduceScatter || c == Coll::kReduce;
}

enum class Placement { kOutOfPlace, kInPlacePointer, kInPlaceToken };

struct Case {
  Coll coll;
  int n;
  ciuic_datatype_t type;
  ciuic_op_t op;
  size_t count;
  Placement placement;
  int root;
  std::string describe() const {
    static const char* kPlace[] = {"out of place", "in place (pointers)",
                                   "in place (CIUIC_IN_PLACE)"};
    return std::string(name(coll)) + " n=" + std::to_string(n) + " " + reduce::datatype_name(type) +
           " " + reduce::op_name(op) + " count=" + std::to_string(count) +
           " root=" + std::to_string(root) + " " + kPlace[static_cast<int>(placement)];
  }
};

// Elements each rank contributes and receives, per the C API's definitions.
size_t input_elems(const Case& c) {
  return c.coll == Coll::kReduceScatter || c.coll == Coll::kAlltoall ? c.count * c.n : c.count;
}
size_t output_elems(const Case& c) {
  return c.coll == Coll::kAllgather || c.coll == Coll::kAlltoall ? c.count * c.n : c.count;
}

// What `rank` must hold, or false when its output is unspecified (reduce off the root).
bool expected(const Case& c, int rank, std::vector<char>* out) {
  const size_t elem = reduce::datatype_size(c.type);
  out->assign(output_elems(c) * elem, 0);
  switch (c.coll) {
    case Coll::kReduce:
      if (rank != c.root) return false;
      [[fallthrough]];
    case Coll::kAllreduce:
      for (size_t i = 0; i < c.count; ++i)
        reduced_value(c.type, c.op, c.n, i, out->data() + i * elem);
      return true;
    case Coll::kReduceScatter:
      for (size_t i = 0; i < c.count; ++i)
        reduced_value(c.type, c.op, c.n, rank * c.count + i, out->data() + i * elem);
      return true;
    case Coll::kAllgather:
      for (int r = 0; r < c.n; ++r)
        fill_input(out->data() + r * c.count * elem, c.count, c.type, c.op, r);
      return true;
    case Coll::kBroadcast:
      fill_input(out->data(), c.count, c.type, c.op, c.root);
      return true;
    case Coll::kAlltoall:
      for (int r = 0; r < c.n; ++r)
        fill_input(out->data() + r * c.count * elem, c.count, c.type, c.op, r, rank * c.count);
      return true;
  }
  return false;
}

// Runs the case on one rank; returns "" or what went wrong.
std::string run_rank(const Case& c, int rank, ciuic_comm_t comm) {
  const size_t elem = reduce::datatype_size(c.type);
  const size_t in_bytes = input_elems(c) * elem, out_bytes = output_elems(c) * elem;
  const size_t block = c.count * elem;
  // Guard bytes around the output catch writes past its end.
  constexpr size_t kGuard = 64;
  std::vector<char> send(in_bytes + 1), recv(std::max(in_bytes, out_bytes) + 2 * kGuard, 0x5a);
  char* recv_base = recv.data() + kGuard;
  const void* sendbuf = send.data();
  void* recvbuf = recv_base;
  const char* result = recv_base;
  const bool token = c.placement == Placement::kInPlaceToken;
  if (c.placement == Placement::kOutOfPlace) {
    fill_input(send.data(), input_elems(c), c.type, c.op, rank);
  } else {
    switch (c.coll) {
      case Coll::kAllgather:
        fill_input(recv_base + rank * block, c.count, c.type, c.op, rank);
        sendbuf = token ? CIUIC_IN_PLACE : recv_base + rank * block;
        break;
      case Coll::kReduceScatter:
        fill_input(recv_base, input_elems(c), c.type, c.op, rank);
        if (token) {
          sendbuf = CIUIC_IN_PLACE;  // input in recvbuf, result at its start
        } else {
          sendbuf = recv_base;  // NCCL: recvbuf = sendbuf + rank * count
          recvbuf = recv_base + rank * block;
          result = recv_base + rank * block;
        }
        break;
      default:
        fill_input(recv_base, input_elems(c), c.type, c.op, rank);
        sendbuf = token ? CIUIC_IN_PLACE : recv_base;
        break;
    }
  }
  ciuic_result_t rc = CIUIC_SUCCESS;
  switch (c.coll) {
    case Coll::kAllreduce:
      rc = ciuic_allreduce(sendbuf, recvbuf, c.count, c.type, c.op, comm, nullptr);
      break;
    case Coll::kReduceScatter:
      rc = ciuic_reduce_scatter(sendbuf, recvbuf, c.count, c.type, c.op, comm, nullptr);
      break;
    case Coll::kReduce:
      rc = ciuic_reduce(sendbuf, recvbuf, c.count, c.type, c.op, c.root, comm, nullptr);
      break;
    case Coll::kAllgather:
      rc = ciuic_allgather(sendbuf, recvbuf, c.count, c.type, comm, nullptr);
      break;
    case Coll::kBroadcast:
      rc = ciuic_broadcast(sendbuf, recvbuf, c.count, c.type, c.root, comm, nullptr);
      break;
    case Coll::kAlltoall:
      rc = ciuic_alltoall(sendbuf, recvbuf, c.count, c.type, comm, nullptr);
      break;
  }
  if (rc != CIUIC_SUCCESS)
    return std::string(ciuic_result_string(rc)) + ": " + ciuic_comm_get_last_error(comm);
  for (size_t g = 0; g < kGuard; ++g) {
    if (recv[g] != 0x5a) return "wrote before the start of recvbuf";
    if (c.placement == Placement::kOutOfPlace && recv[kGuard + out_bytes + g] != 0x5a)
      return "wrote past the end of recvbuf";
  }
  std::vector<char> want;
  if (!expected(c, rank, &want)) return "";
  std::string first;
  size_t bad = count_mismatches(result, want.data(), output_elems(c), c.type, &first);
  if (bad > 0) return std::to_string(bad) + " wrong elements; first: " + first;
  return "";
}

// The largest size of every case: 1 MiB, or CIUIC_TEST_LARGE_BYTES. Emulated RDMA
// (tests/rdma-vm) is slow and runs the suite with a smaller size and fewer datatypes.
size_t large_bytes() {
  const char* text = std::getenv("CIUIC_TEST_LARGE_BYTES");
  const size_t bytes = text != nullptr ? std::strtoull(text, nullptr, 10) : 0;
  return bytes > 0 ? bytes : size_t{1} << 20;
}

// Every datatype, or those CIUIC_TEST_DATATYPES names ("float32,int8").
bool datatype_selected(ciuic_datatype_t type) {
  const char* text = std::getenv("CIUIC_TEST_DATATYPES");
  if (text == nullptr || *text == '\0') return true;
  const std::string list = std::string(",") + text + ",";
  return list.find(std::string(",") + reduce::datatype_name(type) + ",") != std::string::npos;
}

// How the ranks reach each other. Ranks of one process share a host, so by default
// every peer is on the node and the shared-memory transport carries everything.
enum class Wires { kShm, kTcp, kMixed };
const char* wires_name(Wires w) {
  return w == Wires::kShm ? "shm" : w == Wires::kTcp ? "tcp" : "mixed";
}

class CollectivesTest : public ::testing::TestWithParam<std::tuple<Coll, int, Wires>> {};

TEST_P(CollectivesTest, MatchesReference) {
  const Coll coll = std::get<0>(GetParam());
  const int n = std::get<1>(GetParam());
  const Wires wires = std::get<2>(GetParam());
  // tcp: no local transport, every byte crosses TCP; mixed: nodes of two ranks (the last
  // one short when n is odd), shm inside a node and TCP between nodes in one collective.
  ScopedConfig local_transport("CIUIC_LOCAL_TRANSPORT", wires == Wires::kTcp ? "none" : "auto");
  ScopedConfig local_size("CIUIC_LOCAL_SIZE", wires == Wires::kMixed ? "2" : "0");
  // Small chunks and few scratch slots: the 1 MiB cases run many pipelined chunks and
  // reuse every scratch slot many times.
  ScopedConfig chunk("CIUIC_CHUNK_BYTES", "64K");
  ScopedConfig slots("CIUIC_SCRATCH_SLOTS", "4");
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "60000");
  Cluster cluster(n);
  ASSERT_TRUE(cluster.ok());
  int failures = 0, cases = 0;
  for (int t = 0; t < CIUIC_NUM_DATATYPES; ++t) {
    const auto type = static_cast<ciuic_datatype_t>(t);
    if (!datatype_selected(type)) continue;
    const size_t elem = reduce::datatype_size(type);
    for (int o = 0; o < (reduces(coll) ? CIUIC_NUM_OPS : 1); ++o) {
      for (size_t count :
           {size_t{0}, size_t{1}, size_t{7}, size_t{1023}, large_bytes() / elem + 3}) {
        for (Placement p :
             {Placement::kOutOfPlace, Placement::kInPlacePointer, Placement::kInPlaceToken}) {
          // The big size once per datatype and op, in place or not by turns: it is the
          // slow one, and the small sizes already cover every placement.
          if (count > 1023 && static_cast<int>(p) != (t + o) % 3) continue;
          Case c{coll, n, type, static_cast<ciuic_op_t>(o), count, p, (t + o) % n};
          std::vector<std::string> errors(static_cast<size_t>(n));
          cluster.run([&](int rank, ciuic_comm_t comm) { errors[rank] = run_rank(c, rank, comm); });
          ++cases;
          for (int r = 0; r < n; ++r) {
            if (errors[r].empty()) continue;
            ADD_FAILURE() << c.describe() << ": rank " << r << ": " << errors[r];
            ++failures;
          }
          ASSERT_LT(failures, 5) << "stopping after 5 failures";
        }
      }
    }
  }
  EXPECT_GT(cases, 0);
}

// Every collective at every rank count over shared memory; over TCP alone and over the
// two mixed, a few rank counts (both cover the same collectives and datatypes).
std::vector<std::tuple<Coll, int, Wires>> cases_to_run() {
  std::vector<std::tuple<Coll, int, Wires>> out;
  for (Coll c : {Coll::kAllreduce, Coll::kReduceScatter, Coll::kReduce, Coll::kAllgather,
                 Coll::kBroadcast, Coll::kAlltoall}) {
    for (int n : {1, 2, 3, 4, 5, 8}) out.emplace_back(c, n, Wires::kShm);
    for (int n : {2, 5}) out.emplace_back(c, n, Wires::kTcp);
    for (int n : {4, 5}) out.emplace_back(c, n, Wires::kMixed);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    All, CollectivesTest, ::testing::ValuesIn(cases_to_run()),
    [](const ::testing::TestParamInfo<std::tuple<Coll, int, Wires>>& param_info) {
      return std::string(name(std::get<0>(param_info.param))) + "_" +
             std::to_string(std::get<1>(param_info.param)) + "ranks_" +
             wires_name(std::get<2>(param_info.param));
    });

}  // namespace
}  // namespace ciuic::testing
