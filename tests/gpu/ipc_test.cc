// Same-node CUDA IPC with ranks as processes (legacy IPC handles do not work between
// threads of one process): this program forks N ranks, each its own process on GPU
// rank % GPUs (all on one GPU where there is one; run it under MPS), and runs in each:
//
//  - every collective x datatype x op x size {0, 1, 7, 1 MiB + 3 elements}, in place and
//    out of place, compared bit for bit with tests/support/reference (collective_cases.h);
//  - a pipeline: 70 all-reduces back to back on two streams with no synchronisation in
//    between (more than the descriptor ring's 64 slots; window parities; the order of one
//    communicator's operations across streams), checked at the end.
//
// Modes (each a separate job, with a fresh communicator):
//   auto      the defaults, with CIUIC_CUDA_IPC=require (a call that could not use IPC fails)
//   windowed  every operation through the windows, 64 KiB slots (the large sizes run many chunks)
//   direct    every operation with its buffers exchanged and mapped (CIUIC_CUDA_IPC_DIRECT_BYTES=1)
//   staging   CIUIC_HOSTID differs per rank: the ranks count as different nodes and take the
//             staging path; with CIUIC_CUDA_IPC=require a call says why it cannot use IPC
//
//   gpu_ipc_test [N ...] [auto|windowed|direct|staging ...]   (default: 2 4, every mode)
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "collective_cases.h"

namespace ciuic::gputest {
namespace {

constexpr int kPipelineOps = 70;

float pipeline_input(int rank, int op, size_t i) {
  return static_cast<float>((i * 7 + static_cast<size_t>(op) * 3 + static_cast<size_t>(rank)) % 31);
}

// kPipelineOps all-reduces of `count` floats, each on its own slice of one allocation,
// alternating between two streams, out of place and in place; one synchronisation.
void pipeline(int rank, int n, ciuic_comm_t comm, size_t count, Tally& tally) {
  const size_t total = count * kPipelineOps;
  std::vector<float> host(total);
  for (int op = 0; op < kPipelineOps; ++op)
    for (size_t i = 0; i < count; ++i) host[op * count + i] = pipeline_input(rank, op, i);
  float *in = nullptr, *out = nullptr;
  cudaStream_t streams[2] = {nullptr, nullptr};
  GPU_OK(tally, cudaMalloc(reinterpret_cast<void**>(&in), total * sizeof(float)));
  GPU_OK(tally, cudaMalloc(reinterpret_cast<void**>(&out), total * sizeof(float)));
  for (auto& s : streams) GPU_OK(tally, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  GPU_OK(tally, cudaMemcpy(in, host.data(), total * sizeof(float), cudaMemcpyHostToDevice));
  GPU_OK(tally, cudaMemcpy(out, host.data(), total * sizeof(float), cudaMemcpyHostToDevice));
  for (int op = 0; op < kPipelineOps; ++op) {
    const bool in_place = op % 3 == 2;  // the input was copied into `out` too
    float* dst = out + op * count;
    const float* src = in_place ? dst : in + op * count;
    CIUIC_EXPECT(tally, comm,
                 ciuic_allreduce(src, dst, count, CIUIC_FLOAT32, CIUIC_SUM, comm, streams[op % 2]));
  }
  for (auto& s : streams)
    if (!wait_stream(s, "pipeline", tally)) return;
  std::vector<float> got(total);
  GPU_OK(tally, cudaMemcpy(got.data(), out, total * sizeof(float), cudaMemcpyDeviceToHost));
  size_t bad = 0, first_bad = total;
  for (int op = 0; op < kPipelineOps; ++op)
    for (size_t i = 0; i < count; ++i) {
      float want = 0;
      for (int r = 0; r < n; ++r) want += pipeline_input(r, op, i);
      if (got[op * count + i] != want) {
        if (bad++ == 0) first_bad = op * count + i;
      }
    }
  tally.check(bad == 0,
              "pipeline of %d all-reduces of %zu floats on two streams, rank %d: %zu "
              "elements wrong, first at %zu",
              kPipelineOps, count, rank, bad, first_bad);
  for (auto& s : streams) cudaStreamDestroy(s);
  cudaFree(in);
  cudaFree(out);
}

// One rank of one job; returns the process's exit code.
int rank_main(int rank, int n, const ciuic_unique_id_t& id, const std::string& mode, int report) {
  const char* limit = std::getenv("GPU_IPC_ALARM_S");
  alarm(limit != nullptr ? static_cast<unsigned>(std::atoi(limit)) : 240u);  // a hang ends too
  std::vector<std::unique_ptr<testing::ScopedConfig>> settings;
  auto set = [&](const char* name, const std::string& value) {
    settings.push_back(std::make_unique<testing::ScopedConfig>(name, value));
  };
  set("CIUIC_TIMEOUT_MS", "20000");
  set("CIUIC_CUDA_CHUNK_BYTES", "256K");
  if (mode == "staging") {
    set("CIUIC_HOSTID", "host" + std::to_string(rank));
  } else {
    set("CIUIC_CUDA_IPC", "require");
    if (mode == "windowed") {
      set("CIUIC_CUDA_IPC_DIRECT_BYTES", std::to_string(int64_t{1} << 40));
      set("CIUIC_CUDA_IPC_WINDOW_BYTES", "64K");
    } else if (mode == "direct") {
      set("CIUIC_CUDA_IPC_DIRECT_BYTES", "1");
    }
  }
  Tally tally;
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) {
    dprintf(report, "0 0 1\n");
    return kSkip;
  }
  GPU_OK(tally, cudaSetDevice(rank % gpus));
  ciuic_comm_t comm = nullptr;
  if (!tally.check(ciuic_comm_init_rank(&comm, n, id, rank) == CIUIC_SUCCESS, "rank %d init: %s",
                   rank, ciuic_comm_get_last_error(nullptr))) {
    dprintf(report, "%d %d 0\n", tally.passes(), tally.failures());
    return 1;
  }
  RankBuffers b;
  b.bytes = ((size_t{1} << 20) + 3 * 8) * static_cast<size_t>(n);
  GPU_OK(tally, cudaMalloc(reinterpret_cast<void**>(&b.send), b.bytes));
  GPU_OK(tally, cudaMalloc(reinterpret_cast<void**>(&b.recv), b.bytes));
  GPU_OK(tally, cudaStreamCreateWithFlags(&b.stream, cudaStreamNonBlocking));

  if (mode == "staging") {  // IPC refused, saying why; then the same ranks use staging
    testing::ScopedConfig require("CIUIC_CUDA_IPC", "require");
    const ciuic_result_t rc =
        ciuic_allreduce(b.send, b.recv, 16, CIUIC_FLOAT32, CIUIC_SUM, comm, b.stream);
    const char* message = ciuic_comm_get_last_error(comm);
    tally.check(rc == CIUIC_ERR_UNSUPPORTED && std::strstr(message, "CIUIC_HOSTID") != nullptr &&
                    std::strstr(message, std::to_string(n).c_str()) != nullptr,
                "rank %d: CIUIC_CUDA_IPC=require across CIUIC_HOSTID nodes: %s: %s", rank,
                ciuic_result_string(rc), message);
  }
  const std::vector<Case> cases = all_cases();
  const bool trace = std::getenv("GPU_IPC_TRACE") != nullptr;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < cases.size(); ++i) {
    if (trace) {
      const double t =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("trace %s rank %d %.3f s: case %zu: %s\n", mode.c_str(), rank, t, i,
                  cases[i].describe(n).c_str());
      std::fflush(stdout);
    }
    run_case(cases[i], rank, n, comm, b, tally);
  }
  pipeline(rank, n, comm, 1000, tally);
  pipeline(rank, n, comm, (size_t{1} << 20) + 5, tally);
  cudaStreamDestroy(b.stream);
  cudaFree(b.send);
  cudaFree(b.recv);
  CIUIC_EXPECT(tally, comm, ciuic_comm_destroy(comm));
  dprintf(report, "%d %d 0\n", tally.passes(), tally.failures());
  return tally.failures() == 0 ? 0 : 1;
}

struct JobResult {
  int passed = 0, failed = 0, skipped = 0;
};

JobResult run_job(int n, const std::string& mode) {
  JobResult result;
  ciuic_unique_id_t id;
  if (ciuic_get_unique_id(&id) != CIUIC_SUCCESS) {
    std::printf("FAIL: unique id: %s\n", ciuic_comm_get_last_error(nullptr));
    result.failed = 1;
    return result;
  }
  std::fflush(stdout);
  std::vector<pid_t> pids;
  std::vector<int> reads;
  for (int r = 0; r < n; ++r) {
    int fds[2];
    if (pipe(fds) != 0) {
      result.failed++;
      break;
    }
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      const int code = rank_main(r, n, id, mode, fds[1]);
      std::fflush(stdout);
      _exit(code);  // no exit handlers: the parent's bootstrap server is not ours to stop
    }
    close(fds[1]);
    pids.push_back(pid);
    reads.push_back(fds[0]);
  }
  std::string codes;
  for (size_t i = 0; i < pids.size(); ++i) {
    char text[128] = {};
    size_t got = 0;
    for (ssize_t k;
         got < sizeof(text) - 1 && (k = read(reads[i], text + got, sizeof(text) - 1 - got)) > 0;)
      got += static_cast<size_t>(k);
    close(reads[i]);
    int status = 0;
    waitpid(pids[i], &status, 0);
    int p = 0, f = 0, s = 0;
    if (std::sscanf(text, "%d %d %d", &p, &f, &s) != 3) f = 1;  // died before reporting
    result.passed += p;
    result.failed += f;
    result.skipped += s;
    if (i > 0) codes += ",";
    if (WIFEXITED(status))
      codes += std::to_string(WEXITSTATUS(status));
    else
      codes += "signal " + std::to_string(WTERMSIG(status));
  }
  std::printf("%d ranks, %s: %d checks passed, %d failed (exit %s)\n", n, mode.c_str(),
              result.passed, result.failed, codes.c_str());
  std::fflush(stdout);
  return result;
}

}  // namespace
}  // namespace ciuic::gputest

int main(int argc, char** argv) {
  using namespace ciuic::gputest;
  std::vector<int> rank_counts;
  std::vector<std::string> modes;
  for (int i = 1; i < argc; ++i) {
    if (std::isdigit(static_cast<unsigned char>(argv[i][0])))
      rank_counts.push_back(std::atoi(argv[i]));
    else
      modes.push_back(argv[i]);
  }
  if (rank_counts.empty()) rank_counts = {2, 4};
  if (modes.empty()) modes = {"auto", "windowed", "direct", "staging"};
  int passed = 0, failed = 0, jobs = 0, skipped_jobs = 0;
  for (int n : rank_counts)
    for (const std::string& mode : modes) {
      const JobResult r = run_job(n, mode);
      passed += r.passed;
      failed += r.failed;
      ++jobs;
      if (r.skipped == n && r.failed == 0) ++skipped_jobs;
    }
  if (skipped_jobs == jobs) {
    std::printf("SKIP gpu_ipc_test: no CUDA device\n");
    return kSkip;
  }
  std::printf("gpu_ipc_test: %d checks passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
