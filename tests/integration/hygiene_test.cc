// Resource hygiene: a long-lived trainer builds and tears down communicators many times
// (elastic restarts, re-splits after a failure). Each cycle must give back every file
// descriptor, thread and byte it took. Two ranks run as two threads of this process, so
// /proc/self shows everything both of them hold.
#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ciuic/ciuic.h"

namespace ciuic::testing {
namespace {

int count_entries(const char* dir) {
  DIR* d = ::opendir(dir);
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n - (std::strcmp(dir, "/proc/self/fd") == 0 ? 1 : 0);  // the DIR's own descriptor
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Shared-memory segments mapped into this process (the shm transport's memfds, anything
// under /dev/shm): ranks of one process talk over shared memory, so every cycle maps some.
int shared_mappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find("/memfd:") != std::string::npos || line.find("/dev/shm/") != std::string::npos)
      ++n;
  return n;
}

struct Usage {
  int fds, threads;
  long rss_kib;
  int shared;
};

Usage usage() {
  return {count_entries("/proc/self/fd"), count_entries("/proc/self/task"), rss_kib(),
          shared_mappings()};
}

std::atomic<int> g_mapped_while_running{0};  // shared mappings seen mid-cycle

// One cycle: init two ranks, run collectives (one non-blocking, one on a split), destroy.
// With `fail`, rank 1 aborts instead of joining the all-reduce: rank 0 must get an error,
// and both must still free everything.
void one_cycle(bool fail, std::string* error) {
  ciuic_unique_id_t id;
  if (ciuic_get_unique_id(&id) != CIUIC_SUCCESS) {
    *error = std::string("get_unique_id: ") + ciuic_comm_get_last_error(nullptr);
    return;
  }
  std::string errors[2];
  auto rank_main = [&](int rank) {
    ciuic_comm_t comm = nullptr;
    if (ciuic_comm_init_rank(&comm, 2, id, rank) != CIUIC_SUCCESS) {
      errors[rank] = std::string("init: ") + ciuic_comm_get_last_error(nullptr);
      return;
    }
    std::vector<float> in(1021, static_cast<float>(rank + 1)), out(1021, 0.f);
    if (fail && rank == 1) {
      ciuic_comm_abort(comm);
      ciuic_comm_destroy(comm);
      return;
    }
    ciuic_result_t r =
        ciuic_allreduce(in.data(), out.data(), in.size(), CIUIC_FLOAT32, CIUIC_SUM, comm, nullptr);
    if (fail) {
      if (r == CIUIC_SUCCESS) errors[rank] = "the all-reduce succeeded although rank 1 aborted";
      ciuic_comm_destroy(comm);
      return;
    }
    if (r != CIUIC_SUCCESS || out[0] != 3.f || out.back() != 3.f) {
      errors[rank] = std::string("allreduce: ") + ciuic_comm_get_last_error(comm);
    }
    if (rank == 0) g_mapped_while_running.store(shared_mappings());
    ciuic_request_t req = nullptr;
    if (ciuic_iallgather(in.data(), out.data(), 8, CIUIC_FLOAT32, comm, nullptr, &req) !=
            CIUIC_SUCCESS ||
        ciuic_wait(&req) != CIUIC_SUCCESS || out[0] != 1.f || out[8] != 2.f) {
      errors[rank] = std::string("iallgather: ") + ciuic_comm_get_last_error(comm);
    }
    ciuic_comm_t half = nullptr;
    if (ciuic_comm_split(comm, rank, 0, &half) != CIUIC_SUCCESS ||
        ciuic_barrier(half, nullptr) != CIUIC_SUCCESS) {
      errors[rank] = std::string("split: ") + ciuic_comm_get_last_error(comm);
    }
    if (half != nullptr) ciuic_comm_destroy(half);
    ciuic_comm_destroy(comm);
  };
  std::thread other(rank_main, 1);
  rank_main(0);
  other.join();
  for (const std::string& e : errors) {
    if (!e.empty() && error->empty()) *error = e;
  }
}

void expect_no_leaks(int cycles, bool fail) {
  std::string error;
  one_cycle(fail, &error);  // first use sets up what lives for the process (log sink, caches)
  ASSERT_EQ(error, "");
  if (!fail) {  // else the shared-memory count below would prove nothing
    EXPECT_GT(g_mapped_while_running.load(), 0) << "the ranks did not talk over shared memory";
  }
  one_cycle(fail, &error);
  const Usage before = usage();
  for (int i = 0; i < cycles && error.empty(); ++i) one_cycle(fail, &error);
  ASSERT_EQ(error, "");
  const Usage after = usage();
  EXPECT_EQ(after.fds, before.fds) << "file descriptors leaked over " << cycles << " cycles";
  EXPECT_EQ(after.threads, before.threads) << "threads leaked over " << cycles << " cycles";
  EXPECT_EQ(after.shared, before.shared)
      << "shared-memory mappings leaked over " << cycles << " cycles";
  // Allocator caches may grow a little; a leak of even 1 KiB a cycle would show here.
  // Under a sanitizer, freed memory sits in its quarantine (LeakSanitizer checks leaks there).
  if (!kSanitized) {
    EXPECT_LT(after.rss_kib - before.rss_kib, 1024 + cycles / 4)
        << "resident memory grew from " << before.rss_kib << " KiB to " << after.rss_kib << " KiB";
  }
  std::printf(
      "%d cycles%s: fds %d -> %d, threads %d -> %d, shared mappings %d -> %d, rss %ld -> %ld KiB\n",
      cycles, fail ? " (rank 1 aborts)" : "", before.fds, after.fds, before.threads, after.threads,
      before.shared, after.shared, before.rss_kib, after.rss_kib);
}

TEST(Hygiene, ThousandInitCollectiveDestroyCyclesLeaveNothingBehind) {
  expect_no_leaks(1000, false);
}

TEST(Hygiene, CyclesThatEndInAnAbortLeaveNothingBehind) { expect_no_leaks(100, true); }

}  // namespace
}  // namespace ciuic::testing
