// What the GPU test programs share: a tally of checks, a skip when there is no GPU, and
// ranks as threads of one process (tests/support's helpers without GoogleTest, which the
// GPU machines lack).
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"
#include "support/scoped_config.h"

namespace ciuic::gputest {

// ctest's skip code (SKIP_RETURN_CODE 77 in tests/gpu/CMakeLists.txt).
inline constexpr int kSkip = 77;

class Tally {
 public:
  // Counts one check; prints the first failures with their description.
  bool check(bool ok, const char* format, ...) __attribute__((format(printf, 3, 4))) {
    if (ok) {
      pass_.fetch_add(1);
      return true;
    }
    if (fail_.fetch_add(1) < 40) {
      char text[1024];
      va_list args;
      va_start(args, format);
      std::vsnprintf(text, sizeof(text), format, args);
      va_end(args);
      std::lock_guard<std::mutex> lock(print_mutex_);
      std::printf("FAIL: %s\n", text);
      std::fflush(stdout);
    }
    return false;
  }
  int failures() const { return fail_.load(); }
  int passes() const { return pass_.load(); }
  // Prints "<name>: N checks passed, M failed" and returns the exit code.
  int finish(const char* name) const {
    std::printf("%s: %d checks passed, %d failed\n", name, pass_.load(), fail_.load());
    return fail_.load() == 0 ? 0 : 1;
  }

 private:
  std::atomic<int> pass_{0}, fail_{0};
  std::mutex print_mutex_;
};

// Returns kSkip (after saying why) when this machine has no usable CUDA device.
inline int skip_without_gpu(const char* name) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::printf("SKIP %s: no CUDA device (%s)\n", name,
                e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    return kSkip;
  }
  return 0;
}

#define GPU_OK(tally, call)                                                        \
  (tally).check((call) == cudaSuccess, "%s:%d: %s: %s", __FILE__, __LINE__, #call, \
                cudaGetErrorString(cudaGetLastError()))

// Rank threads meet here: setup (allocations) finishes on every rank before any rank's
// stream waits on a collective, and no rank frees memory while another's stream still
// waits (ranks that are threads share one CUDA context).
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const int generation = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation != generation_; });
  }

 private:
  const int n_;
  int arrived_ = 0;
  int generation_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
};

// n communicators, one per rank, made by n threads of this process.
inline std::vector<ciuic_comm_t> make_comms(int n, Tally& tally) {
  std::vector<ciuic_comm_t> comms(static_cast<size_t>(n), nullptr);
  ciuic_unique_id_t id;
  if (!tally.check(ciuic_get_unique_id(&id) == CIUIC_SUCCESS, "unique id: %s",
                   ciuic_comm_get_last_error(nullptr)))
    return {};
  bool ok = true;
  testing::run_threads(n, [&](int r) {
    if (ciuic_comm_init_rank(&comms[r], n, id, r) != CIUIC_SUCCESS) {
      tally.check(false, "rank %d init: %s", r, ciuic_comm_get_last_error(nullptr));
      ok = false;
    }
  });
  return ok ? comms : std::vector<ciuic_comm_t>{};
}

inline void destroy_comms(const std::vector<ciuic_comm_t>& comms) {
  for (ciuic_comm_t c : comms)
    if (c != nullptr) ciuic_comm_destroy(c);
}

// The call's result, checked, with the communicator's message when it failed.
#define CIUIC_EXPECT(tally, comm, call)                                              \
  (tally).check((call) == CIUIC_SUCCESS, "%s:%d: %s: %s", __FILE__, __LINE__, #call, \
                ciuic_comm_get_last_error(comm))

}  // namespace ciuic::gputest
