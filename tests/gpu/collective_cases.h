// The collective cases the GPU tests share (collectives_test.cc with ranks as threads,
// ipc_test.cc with ranks as processes): every collective x datatype x op x size
// {0, 1, 7, 1 MiB + 3 elements}, out of place and in place (both spellings where they
// differ), run on a rank's own stream and compared bit for bit with tests/support/reference
// (double or wrapping 64-bit arithmetic, not ciuic's kernels).
#pragma once

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gpu_test.h"
#include "support/reference.h"

namespace ciuic::gputest {

enum class Kind {
  kAllreduce,
  kReduce,
  kReduceScatter,
  kAllgather,
  kBroadcast,
  kAlltoall,
  kSendRecv
};
inline const char* kind_name(Kind k) {
  static const char* names[] = {"allreduce", "reduce",   "reduce_scatter", "allgather",
                                "broadcast", "alltoall", "sendrecv"};
  return names[static_cast<int>(k)];
}
inline bool reduces(Kind k) {
  return k == Kind::kAllreduce || k == Kind::kReduce || k == Kind::kReduceScatter;
}

struct Case {
  Kind kind;
  ciuic_datatype_t type;
  ciuic_op_t op;
  size_t count;
  int place;  // 0 out of place; 1 in place (send == recv spelling); 2 CIUIC_IN_PLACE
  std::string describe(int n) const {
    static const char* const kOps[] = {"sum", "prod", "min", "max", "avg"};
    char b[200];
    std::snprintf(b, sizeof b, "%d ranks, %s %s %s count %zu %s", n, kind_name(kind),
                  ciuic_datatype_name(type), reduces(kind) ? kOps[op] : "-", count,
                  place == 0   ? "out of place"
                  : place == 1 ? "in place"
                               : "CIUIC_IN_PLACE");
    return b;
  }
};

inline std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const Kind kinds[] = {Kind::kAllreduce, Kind::kReduce,   Kind::kReduceScatter, Kind::kAllgather,
                        Kind::kBroadcast, Kind::kAlltoall, Kind::kSendRecv};
  for (Kind k : kinds)
    for (int t = 0; t < CIUIC_NUM_DATATYPES; ++t)
      for (int op = 0; op < (reduces(k) ? CIUIC_NUM_OPS : 1); ++op) {
        const auto type = static_cast<ciuic_datatype_t>(t);
        const size_t elem = ciuic_datatype_size(type);
        for (size_t count : {size_t{0}, size_t{1}, size_t{7}, (size_t{1} << 20) / elem + 3})
          for (int place = 0; place < 2; ++place) {
            // In place alternates between the two spellings where they differ.
            int p = place;
            if (place == 1 &&
                (k == Kind::kAllreduce || k == Kind::kAllgather || k == Kind::kReduceScatter) &&
                (t + op) % 2 == 1)
              p = 2;
            cases.push_back({k, type, static_cast<ciuic_op_t>(op), count, p});
          }
      }
  return cases;
}

struct RankBuffers {
  char* send = nullptr;
  char* recv = nullptr;
  size_t bytes = 0;
  cudaStream_t stream = nullptr;
  std::vector<char> host_in, host_out, want;
};

// Waits for the stream, at most 60 s (a stream that never finishes fails the check
// instead of hanging the test).
inline bool wait_stream(cudaStream_t stream, const char* what, Tally& tally) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream);
    if (e == cudaSuccess) return true;
    if (e != cudaErrorNotReady)
      return tally.check(false, "%s: the stream failed: %s", what, cudaGetErrorString(e));
    if (std::chrono::steady_clock::now() > deadline)
      return tally.check(false, "%s: the stream did not finish within 60 s", what);
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

inline void run_case(const Case& c, int rank, int n, ciuic_comm_t comm, RankBuffers& b,
                     Tally& tally) {
  const size_t elem = ciuic_datatype_size(c.type);
  const size_t count = c.count;
  const size_t block = count * elem;
  const bool blocks_in = c.kind == Kind::kReduceScatter || c.kind == Kind::kAlltoall;
  const bool blocks_out = c.kind == Kind::kAllgather || c.kind == Kind::kAlltoall;
  const size_t in_count = blocks_in ? count * n : count;
  const size_t out_count = blocks_out ? count * n : count;
  const int root = static_cast<int>((static_cast<size_t>(c.type) + 1) % static_cast<size_t>(n));
  const ciuic_op_t fill_op = reduces(c.kind) ? c.op : CIUIC_SUM;
  const ciuic_datatype_t t = c.type;
  const size_t total = std::max(in_count, out_count) * elem;
  const std::string what = c.describe(n) + ", rank " + std::to_string(rank);

  b.host_in.assign(in_count * elem, 0);
  testing::fill_input(b.host_in.data(), in_count, t, fill_op, rank);
  GPU_OK(tally, cudaMemsetAsync(b.send, 0x5a, total, b.stream));
  GPU_OK(tally, cudaMemsetAsync(b.recv, 0xa5, total, b.stream));

  // Where the input goes and which pointers the call gets.
  const void* send = b.send;
  void* recv = b.recv;
  char* input = b.send;
  const char* output = b.recv;
  if (c.place != 0) {
    switch (c.kind) {
      case Kind::kAllgather:
        input = b.recv + static_cast<size_t>(rank) * block;
        send = c.place == 2 ? CIUIC_IN_PLACE : input;
        break;
      case Kind::kReduceScatter:
        if (c.place == 2) {
          input = b.recv;
          send = CIUIC_IN_PLACE;
        } else {
          recv = b.send + static_cast<size_t>(rank) * block;
          output = static_cast<const char*>(recv);
        }
        break;
      case Kind::kSendRecv:  // "in place" here means blocking calls; the input stays in send
        break;
      default:
        input = b.recv;
        send = c.place == 2 ? CIUIC_IN_PLACE : b.recv;
        break;
    }
  }
  if (!(c.kind == Kind::kBroadcast && rank != root && c.place != 0) && in_count > 0)
    GPU_OK(tally, cudaMemcpyAsync(input, b.host_in.data(), in_count * elem, cudaMemcpyHostToDevice,
                                  b.stream));

  ciuic_result_t rc = CIUIC_SUCCESS;
  switch (c.kind) {
    case Kind::kAllreduce:
      rc = ciuic_allreduce(send, recv, count, t, c.op, comm, b.stream);
      break;
    case Kind::kReduce:
      rc = ciuic_reduce(send, recv, count, t, c.op, root, comm, b.stream);
      break;
    case Kind::kReduceScatter:
      rc = ciuic_reduce_scatter(send, recv, count, t, c.op, comm, b.stream);
      break;
    case Kind::kAllgather:
      rc = ciuic_allgather(send, recv, count, t, comm, b.stream);
      break;
    case Kind::kBroadcast:
      rc = ciuic_broadcast(send, recv, count, t, root, comm, b.stream);
      break;
    case Kind::kAlltoall:
      rc = ciuic_alltoall(send, recv, count, t, comm, b.stream);
      break;
    case Kind::kSendRecv:
      if (c.place == 0) {  // a ring exchange, every rank sending first: one group
        ciuic_request_t reqs[2] = {nullptr, nullptr};
        ciuic_group_start();
        rc = ciuic_isend(b.send, count, t, (rank + 1) % n, comm, b.stream, &reqs[0]);
        if (rc == CIUIC_SUCCESS)
          rc = ciuic_irecv(b.recv, count, t, (rank + n - 1) % n, comm, b.stream, &reqs[1]);
        if (ciuic_group_end() != CIUIC_SUCCESS) rc = CIUIC_ERR_INTERNAL;
        for (auto& r : reqs)
          if (r != nullptr && ciuic_wait(&r) != CIUIC_SUCCESS) rc = CIUIC_ERR_INTERNAL;
      } else {  // blocking calls, ordered so that they cannot wait on each other
        if (rank % 2 == 0) {
          rc = ciuic_send(b.send, count, t, (rank + 1) % n, comm, b.stream);
          if (rc == CIUIC_SUCCESS)
            rc = ciuic_recv(b.recv, count, t, (rank + n - 1) % n, comm, b.stream);
        } else {
          rc = ciuic_recv(b.recv, count, t, (rank + n - 1) % n, comm, b.stream);
          if (rc == CIUIC_SUCCESS)
            rc = ciuic_send(b.send, count, t, (rank + 1) % n, comm, b.stream);
        }
      }
      break;
  }
  if (!tally.check(rc == CIUIC_SUCCESS, "%s: %s: %s", what.c_str(), ciuic_result_string(rc),
                   ciuic_comm_get_last_error(comm)))
    return;

  const size_t check_count = c.kind == Kind::kReduceScatter ? count : out_count;
  // The stream first, then a plain copy: a pageable copy that waits on a stream ciuic holds
  // would block the other ranks' threads, which share this CUDA context (docs/gpu.md).
  if (!wait_stream(b.stream, what.c_str(), tally)) return;
  b.host_out.assign(check_count * elem, 0);
  if (check_count > 0)
    GPU_OK(tally,
           cudaMemcpy(b.host_out.data(), output, check_count * elem, cudaMemcpyDeviceToHost));
  if (count == 0) return;

  b.want.assign(check_count * elem, 0);
  char* w = b.want.data();
  bool check = true;
  switch (c.kind) {
    case Kind::kAllreduce:
      for (size_t i = 0; i < count; ++i) testing::reduced_value(t, c.op, n, i, w + i * elem);
      break;
    case Kind::kReduce:
      if (rank == root) {
        for (size_t i = 0; i < count; ++i) testing::reduced_value(t, c.op, n, i, w + i * elem);
      } else if (c.place == 0) {
        std::memset(w, 0xa5, check_count * elem);  // a non-root's recvbuf is left alone
      } else {
        check = false;
      }
      break;
    case Kind::kReduceScatter:
      for (size_t i = 0; i < count; ++i)
        testing::reduced_value(t, c.op, n, static_cast<size_t>(rank) * count + i, w + i * elem);
      break;
    case Kind::kAllgather:
      for (int r = 0; r < n; ++r) testing::fill_input(w + r * block, count, t, fill_op, r);
      break;
    case Kind::kBroadcast:
      testing::fill_input(w, count, t, fill_op, root);
      break;
    case Kind::kAlltoall:
      for (int r = 0; r < n; ++r)
        testing::fill_input(w + r * block, count, t, fill_op, r, static_cast<size_t>(rank) * count);
      break;
    case Kind::kSendRecv:
      testing::fill_input(w, count, t, fill_op, (rank + n - 1) % n);
      break;
  }
  if (!check) return;
  std::string first;
  const size_t bad = testing::count_mismatches(b.host_out.data(), w, check_count, t, &first);
  tally.check(bad == 0, "%s: %zu of %zu elements wrong, first %s", what.c_str(), bad, check_count,
              first.c_str());
}

}  // namespace ciuic::gputest
