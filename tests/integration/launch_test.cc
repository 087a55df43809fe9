// The local launcher: run_local directly, and the ciuic-run program as a user runs it.
// The ranks are `sh -c` scripts, so nothing here needs the collectives.

#include "launch.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/command.h"

namespace ciuic::launch {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "ciuic-launch-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::map<std::string, std::string> env;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

LaunchOptions sh_ranks(int nranks, const std::string& script) {
  LaunchOptions options;
  options.nranks = nranks;
  options.argv = {"sh", "-c", script};
  return options;
}

double seconds_since(steady_clock::time_point start) {
  return std::chrono::duration<double>(steady_clock::now() - start).count();
}

TEST(RunLocal, EveryRankGetsItsVariables) {
  TempDir dir;
  LaunchOptions options = sh_ranks(3, "env > \"$OUT_DIR/env.$CIUIC_RANK\"");
  // An inherited or user-given CIUIC_RANK must not override the launcher's.
  options.extra_env = {"OUT_DIR=" + dir.path(), "EXTRA_SETTING=42", "CIUIC_RANK=99"};
  LaunchResult result;
  ASSERT_TRUE(run_local(options, &result).ok());
  ASSERT_EQ(result.exit_code, 0) << result.failure;
  EXPECT_TRUE(result.failure.empty());

  std::set<std::string> roots, secrets;
  for (int rank = 0; rank < 3; ++rank) {
    auto env = read_env_file(dir.path() + "/env." + std::to_string(rank));
    ASSERT_FALSE(env.empty()) << "rank " << rank << " wrote no environment";
    EXPECT_EQ(env["CIUIC_RANK"], std::to_string(rank));
    EXPECT_EQ(env["CIUIC_LOCAL_RANK"], std::to_string(rank));
    EXPECT_EQ(env["CIUIC_WORLD_SIZE"], "3");
    EXPECT_EQ(env["CIUIC_LOCAL_SIZE"], "3");
    EXPECT_EQ(env["EXTRA_SETTING"], "42");
    EXPECT_FALSE(env["PATH"].empty()) << "the launcher's own environment is passed on";
    roots.insert(env["CIUIC_ROOT"]);
    secrets.insert(env["CIUIC_SECRET"]);
  }
  ASSERT_EQ(roots.size(), 1u) << "all ranks must agree on the root";
  ASSERT_EQ(secrets.size(), 1u) << "all ranks must share one secret";
  const std::string root = *roots.begin();
  ASSERT_TRUE(root.starts_with("127.0.0.1:")) << root;
  int port = std::stoi(root.substr(root.find(':') + 1));
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
  const std::string secret = *secrets.begin();
  ASSERT_EQ(secret.size(), 32u) << secret;
  EXPECT_EQ(secret.find_first_not_of("0123456789abcdef"), std::string::npos) << secret;

  // Each job gets a fresh secret.
  ASSERT_TRUE(run_local(options, &result).ok());
  auto again = read_env_file(dir.path() + "/env.0");
  EXPECT_NE(again["CIUIC_SECRET"], secret);
}

TEST(RunLocal, FailedRankEndsTheJobAfterTheGracePeriod) {
  // Rank 1 fails at once; its siblings would sleep for a minute.
  LaunchOptions options = sh_ranks(3, "if [ \"$CIUIC_RANK\" = 1 ]; then exit 3; fi; sleep 60");
  options.grace_ms = 200;
  LaunchResult result;
  auto start = steady_clock::now();
  ASSERT_TRUE(run_local(options, &result).ok());
  EXPECT_LT(seconds_since(start), 10.0) << "the sleeping ranks were not killed";
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_NE(result.failure.find("rank 1 (pid "), std::string::npos) << result.failure;
  EXPECT_NE(result.failure.find("exited with status 3"), std::string::npos) << result.failure;
}

TEST(RunLocal, GraceLetsSiblingsFinishOnTheirOwn) {
  // Rank 0 fails; rank 1 needs ~300 ms to finish cleanly and writes a marker when it does.
  TempDir dir;
  LaunchOptions options = sh_ranks(
      2, "if [ \"$CIUIC_RANK\" = 0 ]; then exit 5; fi; sleep 0.3; touch \"$OUT_DIR/done\"");
  options.extra_env = {"OUT_DIR=" + dir.path()};
  options.grace_ms = 5000;
  LaunchResult result;
  ASSERT_TRUE(run_local(options, &result).ok());
  EXPECT_EQ(result.exit_code, 5);
  EXPECT_TRUE(fs::exists(dir.path() + "/done")) << "rank 1 was killed before its grace ran out";
}

TEST(RunLocal, RankKilledBySignalIsNamed) {
  LaunchOptions options = sh_ranks(2, "if [ \"$CIUIC_RANK\" = 1 ]; then kill -SEGV $$; fi");
  LaunchResult result;
  ASSERT_TRUE(run_local(options, &result).ok());
  EXPECT_EQ(result.exit_code, 128 + SIGSEGV);
  EXPECT_NE(result.failure.find("rank 1"), std::string::npos) << result.failure;
  EXPECT_NE(result.failure.find("killed by SIGSEGV"), std::string::npos) << result.failure;
}

// A rank that notices a peer's death can exit before the killed process has finished
// dying: the killed rank, found within a moment, is still the one named.
TEST(RunLocal, RankKilledJustAfterASiblingExitedIsTheCulprit) {
  LaunchOptions options =
      sh_ranks(2, "if [ \"$CIUIC_RANK\" = 1 ]; then exit 3; fi; sleep 0.1; kill -KILL $$");
  options.grace_ms = 5000;
  LaunchResult result;
  ASSERT_TRUE(run_local(options, &result).ok());
  EXPECT_EQ(result.exit_code, 128 + SIGKILL) << result.failure;
  EXPECT_NE(result.failure.find("rank 0"), std::string::npos) << result.failure;
  EXPECT_NE(result.failure.find("killed by SIGKILL"), std::string::npos) << result.failure;
}

// Past the window, the first failure stands.
TEST(RunLocal, RankKilledLongAfterASiblingFailedDoesNotTakeTheBlame) {
  LaunchOptions options =
      sh_ranks(2, "if [ \"$CIUIC_RANK\" = 1 ]; then exit 3; fi; sleep 1.5; kill -KILL $$");
  options.grace_ms = 5000;
  LaunchResult result;
  ASSERT_TRUE(run_local(options, &result).ok());
  EXPECT_EQ(result.exit_code, 3) << result.failure;
  EXPECT_NE(result.failure.find("rank 1"), std::string::npos) << result.failure;
}

TEST(RunLocal, MissingProgramIsAClearError) {
  LaunchOptions options;
  options.nranks = 4;
  options.argv = {"/nonexistent/ciuic-no-such-program", "--flag"};
  LaunchResult result;
  auto start = steady_clock::now();
  ASSERT_TRUE(run_local(options, &result).ok());
  EXPECT_LT(seconds_since(start), 10.0);
  EXPECT_EQ(result.exit_code, 127);
  EXPECT_NE(result.failure.find("cannot execute '/nonexistent/ciuic-no-such-program'"),
            std::string::npos)
      << result.failure;
  EXPECT_NE(result.failure.find("No such file or directory"), std::string::npos) << result.failure;
}

TEST(RunLocal, TimeoutKillsTheJob) {
  LaunchOptions options = sh_ranks(2, "sleep 60");
  options.timeout_ms = 300;
  options.grace_ms = 200;
  LaunchResult result;
  auto start = steady_clock::now();
  ASSERT_TRUE(run_local(options, &result).ok());
  EXPECT_LT(seconds_since(start), 10.0);
  EXPECT_EQ(result.exit_code, 124);
  EXPECT_NE(result.failure.find("timed out after 300 ms"), std::string::npos) << result.failure;
}

TEST(RunLocal, RejectsBadOptions) {
  LaunchResult result;
  LaunchOptions no_ranks = sh_ranks(0, "true");
  EXPECT_EQ(run_local(no_ranks, &result).code(), CIUIC_ERR_INVALID_ARGUMENT);
  LaunchOptions no_program;
  no_program.nranks = 2;
  EXPECT_EQ(run_local(no_program, &result).code(), CIUIC_ERR_INVALID_ARGUMENT);
  LaunchOptions bad_env = sh_ranks(1, "true");
  bad_env.extra_env = {"NO_EQUALS_SIGN"};
  Status status = run_local(bad_env, &result);
  EXPECT_EQ(status.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(status.message().find("NO_EQUALS_SIGN"), std::string::npos) << status.message();
}

// ---- the ciuic-run program ----

std::string ciuic_run_path() { return ciuic::testing::built_program("tools/ciuic-run/ciuic-run"); }

#define REQUIRE_CIUIC_RUN(var)                                        \
  const std::string var = ciuic_run_path();                           \
  if (var.empty())                                                    \
  GTEST_SKIP() << "ciuic-run not found: CIUIC_BUILD_DIR is unset or " \
                  "the program is not built"

using Outcome = ciuic::testing::CommandOutcome;
using ciuic::testing::run_command;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(CiuicRun, TagsEveryLineWithItsRank) {
  REQUIRE_CIUIC_RUN(program);
  Outcome outcome =
      run_command(program +
                  " -n 3 --tag-output -- sh -c "
                  "'echo \"hello from $CIUIC_RANK\"; echo \"to stderr $CIUIC_RANK\" >&2; "
                  "printf \"unterminated $CIUIC_RANK\"'");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  std::multiset<std::string> lines;
  for (const std::string& line : lines_of(outcome.output)) lines.insert(line);
  for (int rank = 0; rank < 3; ++rank) {
    std::string tag = "[" + std::to_string(rank) + "] ";
    EXPECT_EQ(lines.count(tag + "hello from " + std::to_string(rank)), 1u) << outcome.output;
    EXPECT_EQ(lines.count(tag + "to stderr " + std::to_string(rank)), 1u) << outcome.output;
    EXPECT_EQ(lines.count(tag + "unterminated " + std::to_string(rank)), 1u) << outcome.output;
  }
  EXPECT_EQ(lines.size(), 9u) << outcome.output;
}

TEST(CiuicRun, ExitCodeIsTheFirstFailure) {
  REQUIRE_CIUIC_RUN(program);
  Outcome outcome = run_command(
      program + " -n 2 --grace-ms 100 -- sh -c '[ \"$CIUIC_RANK\" = 1 ] && exit 7; sleep 60'");
  EXPECT_EQ(outcome.exit_code, 7) << outcome.output;
  EXPECT_NE(outcome.output.find("rank 1 (pid"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("exited with status 7"), std::string::npos) << outcome.output;

  EXPECT_EQ(
      run_command(program + " -n 2 -x GREETING=hi -- sh -c '[ \"$GREETING\" = hi ]'").exit_code, 0);
}

TEST(CiuicRun, MissingProgramExits127) {
  REQUIRE_CIUIC_RUN(program);
  Outcome outcome = run_command(program + " -n 2 -- ./ciuic-no-such-program");
  EXPECT_EQ(outcome.exit_code, 127) << outcome.output;
  EXPECT_NE(outcome.output.find("cannot execute './ciuic-no-such-program'"), std::string::npos)
      << outcome.output;
}

TEST(CiuicRun, BadUsageExits2) {
  REQUIRE_CIUIC_RUN(program);
  for (const char* args : {"", "-- true", "-n 0 -- true", "-n two -- true", "-n 2",
                           "--no-such-option -n 2 -- true", "-n 2 --grace-ms"}) {
    Outcome outcome = run_command(program + " " + args);
    EXPECT_EQ(outcome.exit_code, 2) << "args: '" << args << "'\n" << outcome.output;
    EXPECT_NE(outcome.output.find("ciuic-run: "), std::string::npos) << outcome.output;
  }
  Outcome help = run_command(program + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("usage: ciuic-run -n N"), std::string::npos) << help.output;
}

TEST(CiuicRun, ForwardsSigintAndNeverHangs) {
  REQUIRE_CIUIC_RUN(program);
  TempDir dir;
  std::string script = "touch \"" + dir.path() + "/ready.$CIUIC_RANK\"; sleep 60";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(program.c_str(), program.c_str(), "-n", "2", "--grace-ms", "2000", "--", "sh", "-c",
            script.c_str(), static_cast<char*>(nullptr));
    ::_exit(126);
  }
  auto start = steady_clock::now();
  while (!(fs::exists(dir.path() + "/ready.0") && fs::exists(dir.path() + "/ready.1")) &&
         seconds_since(start) < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(fs::exists(dir.path() + "/ready.1")) << "the ranks never started";
  ::kill(pid, SIGINT);
  auto signalled = steady_clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && seconds_since(signalled) < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  ASSERT_EQ(done, pid) << "ciuic-run did not exit after SIGINT";
  // sh dies of the forwarded SIGINT at once: no need to wait for the grace period.
  EXPECT_LT(seconds_since(signalled), 1.9);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
}

}  // namespace
}  // namespace ciuic::launch
