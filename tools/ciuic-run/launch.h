// Spawning N local ranks of a program: used by ciuic-run and by ciuic-perf when no
// launcher started it. Each child gets CIUIC_RANK, CIUIC_WORLD_SIZE, CIUIC_LOCAL_RANK,
// CIUIC_LOCAL_SIZE, CIUIC_ROOT (a free loopback/interface port) and CIUIC_SECRET (fresh,
// random) in its environment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace ciuic::launch {

struct LaunchOptions {
  int nranks = 1;
  std::vector<std::string> argv;            // program and its arguments
  std::vector<std::string> extra_env;       // "NAME=value" added to every child
  std::string root_host = "127.0.0.1";      // where rank 0 serves the bootstrap store
  int grace_ms = 5000;  // after the first failed rank, how long the others get before SIGKILL
  bool tag_output = false;  // prefix each child's output lines with "[rank] "
  // Wall-clock limit for the whole job (0: none). Past it the ranks get SIGTERM, then
  // SIGKILL after grace_ms, and exit_code is 124 (as timeout(1) reports it).
  int64_t timeout_ms = 0;
};

struct LaunchResult {
  int exit_code = 0;          // 0 if every rank exited 0; else the first failure's code
  std::string failure;        // "rank 2 (pid 1234) killed by SIGKILL" — empty on success
};

// Runs the ranks to completion. Forwards SIGINT/SIGTERM to the children.
//
// The ranks share one new process group (so a signal reaches whatever they started
// too), read stdin from /dev/null, and die with the launching thread (PR_SET_PDEATHSIG).
// A rank killed by signal S counts as exit code 128+S; a program that cannot be
// executed as 127. Returns an error only when the launch itself cannot proceed (bad
// options, no free port, fork failed, another run_local in progress); every failure of
// a rank, including exec failure, is reported in *result.
Status run_local(const LaunchOptions& options, LaunchResult* result);

}  // namespace ciuic::launch
