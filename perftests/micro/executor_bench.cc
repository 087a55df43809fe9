// What the schedule machinery costs per call, apart from any network:
//  - build_schedule for one rank of a 4-rank ring all-reduce (float32, 1 MiB chunks) at
//    1 KiB, 1 MiB and 128 MiB — paid on every collective the communicator runs;
//  - simulate_dataflow of all 4 ranks at 1 MiB (1 MiB chunks, and 4 KiB chunks for a
//    schedule of thousands of steps) — what the algorithm tests pay per case;
//  - simulate_dataflow of a token passed down a ring of 64 ranks, 40 times round, every
//    hop against rank order: the worst case of a runner that sweeps the ranks in order.
// `steps` is the number of steps of one rank's schedule (of all ranks for simulate).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "coll/simulate.h"

namespace ciuic::coll {
namespace {

constexpr int kRanks = 4;

CollectiveArgs ring_args(int rank, int64_t bytes, int64_t chunk_bytes) {
  CollectiveArgs a;
  a.collective = Collective::kAllreduce;
  a.rank = rank;
  a.nranks = kRanks;
  a.count = static_cast<size_t>(bytes) / sizeof(float);
  a.datatype = CIUIC_FLOAT32;
  a.op = CIUIC_SUM;
  a.chunk_bytes = static_cast<size_t>(chunk_bytes);
  return a;
}

void BM_BuildRingAllreduce(benchmark::State& state) {
  const CollectiveArgs args = ring_args(1, state.range(0), 1 << 20);
  Schedule schedule;
  for (auto _ : state) {
    Status s = build_schedule(args, "ring", &schedule);
    if (!s.ok()) state.SkipWithError(s.message().c_str());
    benchmark::DoNotOptimize(schedule.steps.data());
  }
  state.counters["steps"] = static_cast<double>(schedule.steps.size());
}
BENCHMARK(BM_BuildRingAllreduce)->Arg(1 << 10)->Arg(1 << 20)->Arg(128 << 20)->Unit(benchmark::kMicrosecond);

void BM_SimulateRingAllreduce(benchmark::State& state) {
  const int64_t bytes = state.range(0);
  std::vector<Schedule> schedules(kRanks);
  std::vector<std::vector<float>> send(kRanks), recv(kRanks);
  std::vector<std::vector<char>> scratch(kRanks);
  std::vector<Buffers> buffers(kRanks);
  size_t steps = 0;
  for (int r = 0; r < kRanks; ++r) {
    Status s = build_schedule(ring_args(r, bytes, state.range(1)), "ring", &schedules[r]);
    if (!s.ok()) {
      state.SkipWithError(s.message().c_str());
      return;
    }
    steps += schedules[r].steps.size();
    // Out of place, so every run overwrites recvbuf from the same inputs.
    send[r].assign(static_cast<size_t>(bytes) / sizeof(float), static_cast<float>(r + 1));
    recv[r].assign(send[r].size(), 0.0f);
    scratch[r].resize(schedules[r].scratch_bytes);
    buffers[r] = Buffers{send[r].data(), recv[r].data(), scratch[r].data()};
  }
  for (auto _ : state) {
    Status s = simulate_dataflow(schedules, buffers);
    if (!s.ok()) state.SkipWithError(s.message().c_str());
    benchmark::DoNotOptimize(recv[0].data());
  }
  if (recv[0][0] != 1.0f + 2.0f + 3.0f + 4.0f) state.SkipWithError("wrong all-reduce result");
  state.counters["steps"] = static_cast<double>(steps);
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_SimulateRingAllreduce)
    ->Args({1 << 20, 1 << 20})
    ->Args({1 << 20, 4 << 10})
    ->Unit(benchmark::kMicrosecond);

void BM_SimulateTokenAgainstRankOrder(benchmark::State& state) {
  const int n = 64, rounds = static_cast<int>(state.range(0));
  std::vector<Schedule> schedules(n);
  std::vector<int32_t> value(n, 0);
  std::vector<Buffers> buffers(n);
  for (int r = 0; r < n; ++r) {
    schedules[r].rank = r;
    schedules[r].nranks = n;
    schedules[r].datatype = CIUIC_INT32;
    buffers[r] = Buffers{nullptr, &value[r], nullptr};
  }
  // Rank n-1 starts; each rank receives from rank+1 and passes on to rank-1.
  for (int round = 0; round < rounds; ++round) {
    for (int r = n - 1; r >= 0; --r) {
      Schedule& s = schedules[r];
      std::vector<uint32_t> after;
      if (!s.steps.empty()) after.push_back(static_cast<uint32_t>(s.steps.size() - 1));
      if (r != n - 1 || round != 0) {
        after = {s.add(recv_step((r + 1) % n, at(Buffer::kRecv, 0), 4), after)};
      }
      s.add(send_step((r + n - 1) % n, at(Buffer::kRecv, 0), 4), after);
    }
  }
  schedules[n - 1].add(recv_step(0, at(Buffer::kRecv, 0), 4),
                       {static_cast<uint32_t>(schedules[n - 1].steps.size() - 1)});
  size_t steps = 0;
  for (const Schedule& s : schedules) steps += s.steps.size();
  for (auto _ : state) {
    Status s = simulate_dataflow(schedules, buffers);
    if (!s.ok()) state.SkipWithError(s.message().c_str());
  }
  state.counters["steps"] = static_cast<double>(steps);
}
BENCHMARK(BM_SimulateTokenAgainstRankOrder)->Arg(10)->Arg(40)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ciuic::coll
