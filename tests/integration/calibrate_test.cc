// `ciuic-perf calibrate` for real: two ranks on this machine, tiny sizes, a file the
// library reads back (every figure in range, the transports named), `ciuic-perf tune`
// saying the figures came from that file, and the environment still winning over it.
// Nothing here depends on how fast anything was.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "coll/tuner.h"
#include "support/command.h"

namespace ciuic {
namespace {

std::string perf_path() { return testing::built_program("perftests/ciuic-perf"); }

using Outcome = testing::CommandOutcome;
using testing::run_command;

// The line of `output` that starts with `prefix` (after spaces and '#'), or "".
std::string line_with(const std::string& output, const std::string& prefix) {
  size_t at = 0;
  while (at < output.size()) {
    size_t end = output.find('\n', at);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(at, end - at);
    const size_t start = line.find_first_not_of(" #");
    if (start != std::string::npos && line.compare(start, prefix.size(), prefix) == 0) return line;
    at = end + 1;
  }
  return "";
}

TEST(Calibrate, TwoRanksWriteAFileTheTunerReads) {
  const std::string perf = perf_path();
  ASSERT_FALSE(perf.empty()) << "ciuic-perf not found under CIUIC_BUILD_DIR";
  const std::string file = ::testing::TempDir() + "calibrate_" + std::to_string(getpid()) + ".txt";
  const Outcome run = run_command(perf + " calibrate -b 8 -e 64K -n 3 -w 1 --write " + file);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::string settings = line_with(run.output, "CIUIC_NET_ALPHA_NS=");
  EXPECT_NE(settings.find("CIUIC_NET_MBPS="), std::string::npos) << run.output;
  EXPECT_NE(settings.find("CIUIC_REDUCE_MBPS="), std::string::npos) << run.output;
  EXPECT_NE(line_with(run.output, "network").find("rank 0 and rank 1"), std::string::npos)
      << run.output;

  coll::TunerFile parsed;
  Status s = coll::read_tuner_file(file, &parsed);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_FALSE(parsed.net_transport.empty());
  for (const char* key : {"net_alpha_ns", "net_mbps", "reduce_mbps", "exec_overhead_ns"})
    EXPECT_EQ(parsed.values.count(key), 1u) << key;
  // Where the communicator has a local transport (shm here), its link was measured too.
  const bool local = !parsed.local_transport.empty();
  EXPECT_EQ(parsed.values.count("local_mbps"), local ? 1u : 0u);
  EXPECT_EQ(parsed.values.count("local_alpha_ns"), local ? 1u : 0u);
  // The printed settings are the file's.
  EXPECT_NE(settings.find("CIUIC_NET_MBPS=" + std::to_string(parsed.values.at("net_mbps"))),
            std::string::npos)
      << settings;

  const Outcome tune = run_command("CIUIC_TUNER_FILE=" + file + " " + perf +
                                   " tune --ranks 4 --collective allreduce -b 1K -e 64K");
  ASSERT_EQ(tune.exit_code, 0) << tune.output;
  EXPECT_NE(line_with(tune.output, "CIUIC_NET_MBPS").find("file " + file), std::string::npos)
      << tune.output;
  EXPECT_NE(line_with(tune.output, "CIUIC_REDUCE_MBPS").find("file " + file), std::string::npos)
      << tune.output;
  const Outcome env = run_command("CIUIC_TUNER_FILE=" + file + " CIUIC_NET_MBPS=777 " + perf +
                                  " tune --ranks 4 --collective allreduce -b 1K -e 64K");
  ASSERT_EQ(env.exit_code, 0) << env.output;
  const std::string net = line_with(env.output, "CIUIC_NET_MBPS");
  EXPECT_NE(net.find("777"), std::string::npos) << env.output;
  EXPECT_NE(net.find("env"), std::string::npos) << env.output;
  std::remove(file.c_str());
}

TEST(Calibrate, ABadFileIsSaidAndTheDefaultsApply) {
  const std::string perf = perf_path();
  ASSERT_FALSE(perf.empty()) << "ciuic-perf not found under CIUIC_BUILD_DIR";
  const std::string file = ::testing::TempDir() + "bad_" + std::to_string(getpid()) + ".txt";
  {
    FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("net_mbps=fast\n", f);
    std::fclose(f);
  }
  const Outcome tune = run_command("CIUIC_TUNER_FILE=" + file + " " + perf +
                                   " tune --ranks 4 --collective allreduce -b 1K -e 4K");
  EXPECT_EQ(tune.exit_code, 0) << tune.output;
  EXPECT_NE(tune.output.find("line 1: net_mbps=fast is not an integer"), std::string::npos)
      << tune.output;
  EXPECT_NE(line_with(tune.output, "CIUIC_NET_MBPS").find("default"), std::string::npos)
      << tune.output;
  const Outcome one_rank = run_command(perf + " calibrate -N 1");
  EXPECT_NE(one_rank.exit_code, 0);
  EXPECT_NE(one_rank.output.find("at least 2 ranks"), std::string::npos) << one_rank.output;
  std::remove(file.c_str());
}

}  // namespace
}  // namespace ciuic
