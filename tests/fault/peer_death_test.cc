// Peers that die or never come, across real processes started by ciuic-run: every
// survivor must return an error naming the culprit within the deadline, never hang.
// The ranks are tests/fault/fault_rank.c (public C API only).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"

namespace ciuic::testing {
namespace {

struct RankResult {
  int code = -1;
  int iter = -1;
  long long start_ns = 0, end_ns = 0;
  std::string message;
};

struct Job {
  int exit_code = -1;
  std::string output;
  std::map<int, RankResult> results;  // by rank
  std::map<int, long long> killed_at_ns;
};

std::string build_dir() {
  const char* dir = std::getenv("CIUIC_BUILD_DIR");
  return dir != nullptr ? dir : ".";
}

// Runs `ciuic-run <launcher_args> -- fault_rank <rank_args>` and parses what the ranks print.
Job run_job(const std::string& launcher_args, const std::string& rank_args) {
  const std::string command = build_dir() + "/tools/ciuic-run/ciuic-run --tag-output " + launcher_args +
                              " -- " + build_dir() + "/tests/fault_rank " + rank_args + " 2>&1";
  Job job;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << command;
    return job;
  }
  char line[8192];
  static const std::regex kResult(
      R"(^\[(\d+)\] RESULT rank=(\d+) code=(\d+) iter=(-?\d+) start_ns=(\d+) end_ns=(\d+) msg=(.*)$)");
  static const std::regex kKill(R"(^\[(\d+)\] KILL rank=(\d+) at_ns=(\d+)$)");
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    std::string text(line);
    job.output += text;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    std::smatch m;
    if (std::regex_match(text, m, kResult)) {
      RankResult& r = job.results[std::stoi(m[2])];
      r.code = std::stoi(m[3]);
      r.iter = std::stoi(m[4]);
      r.start_ns = std::stoll(m[5]);
      r.end_ns = std::stoll(m[6]);
      r.message = m[7];
    } else if (std::regex_match(text, m, kKill)) {
      job.killed_at_ns[std::stoi(m[2])] = std::stoll(m[3]);
    }
  }
  int status = ::pclose(pipe);
  job.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return job;
}

bool is_peer_failure(int code) { return code == CIUIC_ERR_REMOTE || code == CIUIC_ERR_TIMEOUT; }

// 4 ranks allreduce 64 MiB of float32 in a loop; one SIGKILLs itself mid-collective.
// Each of the 10 trials varies the victim and the moment.
TEST(PeerDeath, SurvivorsReportTheDeadRankWithinTheDeadline) {
  constexpr int kRanks = 4, kTrials = 10;
  constexpr size_t kCount = size_t{16} << 20;  // 64 MiB of float32
  constexpr double kDeadlineS = 20.0;
  int hangs = 0, wrong_codes = 0, unnamed = 0;
  std::vector<double> latencies_ms;
  for (int trial = 0; trial < kTrials; ++trial) {
    const int victim = 1 + trial % (kRanks - 1);  // rank 0 also serves the bootstrap store
    const int delay_us = 7000 * trial;
    SCOPED_TRACE("trial " + std::to_string(trial) + ": rank " + std::to_string(victim) + " dies " +
                 std::to_string(delay_us) + " us into its second allreduce");
    // --timeout-ms turns a hang into a finished job (exit 124) with the survivors missing.
    Job job = run_job("-n 4 --grace-ms 30000 --timeout-ms 30000 -x CIUIC_TIMEOUT_MS=20000",
                      "die " + std::to_string(kCount) + " " + std::to_string(victim) + " " +
                          std::to_string(delay_us));
    ASSERT_EQ(job.killed_at_ns.count(victim), 1u) << "the victim never reached its kill point:\n"
                                                   << job.output;
    EXPECT_EQ(job.exit_code, 128 + SIGKILL) << "ciuic-run reports the killed rank first\n" << job.output;
    const long long killed_at = job.killed_at_ns[victim];
    const std::string culprit = "rank " + std::to_string(victim);
    for (int rank = 0; rank < kRanks; ++rank) {
      if (rank == victim) continue;
      auto it = job.results.find(rank);
      if (it == job.results.end()) {
        ++hangs;
        ADD_FAILURE() << "rank " << rank << " never returned (hang)\n" << job.output;
        continue;
      }
      const RankResult& r = it->second;
      if (!is_peer_failure(r.code)) {
        ++wrong_codes;
        ADD_FAILURE() << "rank " << rank << " returned code " << r.code << ": " << r.message;
      }
      if (r.message.find(culprit) == std::string::npos) {
        ++unnamed;
        ADD_FAILURE() << "rank " << rank << "'s error does not name " << culprit << ": " << r.message;
      }
      const double latency_ms = static_cast<double>(r.end_ns - std::max(killed_at, r.start_ns)) / 1e6;
      latencies_ms.push_back(latency_ms);
      EXPECT_LT(latency_ms, kDeadlineS * 1000) << "rank " << rank << ": " << r.message;
    }
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  if (!latencies_ms.empty()) {
    std::printf("peer death: %d trials, %zu survivor reports, %d hangs, %d wrong codes, %d without the "
                "culprit; kill-to-error median %.1f ms, max %.1f ms\n",
                kTrials, latencies_ms.size(), hangs, wrong_codes, unnamed,
                latencies_ms[latencies_ms.size() / 2], latencies_ms.back());
  }
  EXPECT_EQ(hangs, 0);
}

// The ranks other than `self` that a message names.
std::set<int> ranks_named(const std::string& message, int self) {
  static const std::regex kRank(R"(rank (\d+))");
  std::set<int> named;
  for (auto it = std::sregex_iterator(message.begin(), message.end(), kRank); it != std::sregex_iterator(); ++it) {
    int rank = std::stoi((*it)[1]);
    if (rank != self) named.insert(rank);
  }
  return named;
}

// Rank 3 is alive and initialised but never calls the allreduce: the others fail within
// CIUIC_TIMEOUT_MS, those that wait on rank 3 directly with a timeout naming it. A rank
// that waited only on ranks stuck behind rank 3 may time out at the same moment and name
// those; following the names from any survivor must still lead to rank 3.
TEST(PeerDeath, RankThatNeverJoinsIsNamedInTimeouts) {
  constexpr int kRanks = 4, kAbsent = 3;
  constexpr double kTimeoutS = 2.0;
  Job job = run_job("-n 4 --grace-ms 1000 --timeout-ms 30000 -x CIUIC_TIMEOUT_MS=2000",
                    "absent 4096 " + std::to_string(kAbsent));
  std::map<int, std::set<int>> blames;
  int direct_timeouts = 0;
  for (int rank = 0; rank < kRanks; ++rank) {
    if (rank == kAbsent) continue;
    auto it = job.results.find(rank);
    ASSERT_NE(it, job.results.end()) << "rank " << rank << " never returned\n" << job.output;
    const RankResult& r = it->second;
    EXPECT_TRUE(is_peer_failure(r.code)) << "rank " << rank << ": code " << r.code << ": " << r.message;
    blames[rank] = ranks_named(r.message, rank);
    EXPECT_FALSE(blames[rank].empty()) << "rank " << rank << " names no peer: " << r.message;
    direct_timeouts += r.code == CIUIC_ERR_TIMEOUT && blames[rank].count(kAbsent) > 0;
    const double took_s = static_cast<double>(r.end_ns - r.start_ns) / 1e9;
    EXPECT_LT(took_s, kTimeoutS + 1.5) << "rank " << rank << ": " << r.message;
    std::printf("rank %d: %s after %.2f s: %s\n", rank, r.code == CIUIC_ERR_TIMEOUT ? "TIMEOUT" : "REMOTE",
                took_s, r.message.c_str());
  }
  EXPECT_GE(direct_timeouts, 1) << "no timeout names rank 3\n" << job.output;
  for (const auto& [rank, named] : blames) {
    bool leads_to_absent = named.count(kAbsent) > 0;
    for (int other : named) leads_to_absent = leads_to_absent || blames[other].count(kAbsent) > 0;
    EXPECT_TRUE(leads_to_absent) << "rank " << rank << "'s error leads nowhere near rank 3: "
                                 << job.results[rank].message;
  }
}

}  // namespace
}  // namespace ciuic::testing
