// Same-node CUDA IPC with ranks as processes (legacy IPC handles do not work between
// threads of one process): this program starts N ranks (fork and exec of itself), each
// its own process on GPU rank % GPUs (all on one GPU where there is one; run it under
// MPS), and runs in each:
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
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "collective_cases.h"

namespace ciuic::gputest {
namespace {

constexpr int kPipelineOps = 70;

// What this rank is doing, for the watchdog: a rank still running when its alarm rings
// says where it was and exits.
char g_stage[256] = "starting";
void set_stage(const char* format, ...) __attribute__((format(printf, 1, 2)));
void set_stage(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(g_stage, sizeof(g_stage), format, args);
  va_end(args);
}
void on_alarm(int) {
  const char prefix[] = "FAIL: watchdog: still running at: ";
  (void)!write(1, prefix, sizeof(prefix) - 1);
  (void)!write(1, g_stage, strnlen(g_stage, sizeof(g_stage)));
  (void)!write(1, "\n", 1);
  _exit(3);
}

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
  std::signal(SIGALRM, on_alarm);
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
    set_stage("rank %d, case %zu: %s", rank, i, cases[i].describe(n).c_str());
    run_case(cases[i], rank, n, comm, b, tally);
  }
  dprintf(report, "%d %d 0\n", tally.passes(), tally.failures());  // the last line counts
  for (size_t count : {size_t{1000}, (size_t{1} << 20) + 5}) {
    set_stage("rank %d, pipeline of %zu floats", rank, count);
    pipeline(rank, n, comm, count, tally);
    dprintf(report, "%d %d 0\n", tally.passes(), tally.failures());
  }
  set_stage("rank %d, freeing the buffers", rank);
  cudaStreamDestroy(b.stream);
  cudaFree(b.send);
  cudaFree(b.recv);
  set_stage("rank %d, ciuic_comm_destroy", rank);
  CIUIC_EXPECT(tally, comm, ciuic_comm_destroy(comm));
  if (trace) std::printf("trace %s rank %d: done\n", mode.c_str(), rank);
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
      // A fresh process, as a launcher makes: this program again, told its rank. (A
      // forked copy would also hold a copy of this process's bootstrap server.)
      close(fds[0]);
      std::string hex;
      for (unsigned char byte : id.internal) {
        char two[3];
        std::snprintf(two, sizeof(two), "%02x", byte);
        hex += two;
      }
      const std::string rank = std::to_string(r), ranks = std::to_string(n),
                        report = std::to_string(fds[1]);
      execl("/proc/self/exe", "gpu_ipc_test", "--rank", rank.c_str(), ranks.c_str(), mode.c_str(),
            hex.c_str(), report.c_str(), static_cast<char*>(nullptr));
      std::printf("FAIL: exec of /proc/self/exe: %s\n", std::strerror(errno));
      std::fflush(stdout);
      _exit(127);
    }
    close(fds[1]);
    pids.push_back(pid);
    reads.push_back(fds[0]);
  }
  std::string codes;
  for (size_t i = 0; i < pids.size(); ++i) {
    std::string text;
    char chunk[256];
    for (ssize_t k; (k = read(reads[i], chunk, sizeof(chunk))) > 0;)
      text.append(chunk, static_cast<size_t>(k));
    close(reads[i]);
    int status = 0;
    waitpid(pids[i], &status, 0);
    // The last full line: the counts so far (a rank that died keeps what it had reported).
    const size_t end = text.rfind('\n');
    const size_t begin =
        end == std::string::npos || end == 0 ? std::string::npos : text.rfind('\n', end - 1);
    const std::string last =
        end == std::string::npos ? "" : text.substr(begin == std::string::npos ? 0 : begin + 1);
    int p = 0, f = 0, s = 0;
    if (std::sscanf(last.c_str(), "%d %d %d", &p, &f, &s) != 3) f = 1;  // nothing reported
    const bool finished =
        WIFEXITED(status) &&
        (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 1 || WEXITSTATUS(status) == kSkip);
    if (!finished) ++f;  // it did not get to the end
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
  // One rank, started by run_job: --rank RANK RANKS MODE ID(hex) REPORT_FD
  if (argc == 7 && std::strcmp(argv[1], "--rank") == 0) {
    ciuic_unique_id_t id{};
    const char* hex = argv[5];
    if (std::strlen(hex) != 2 * sizeof(id.internal)) return 2;
    for (size_t i = 0; i < sizeof(id.internal); ++i) {
      unsigned byte = 0;
      std::sscanf(hex + 2 * i, "%2x", &byte);
      id.internal[i] = static_cast<char>(byte);
    }
    const int code =
        rank_main(std::atoi(argv[2]), std::atoi(argv[3]), id, argv[4], std::atoi(argv[6]));
    std::fflush(stdout);
    return code;
  }
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
