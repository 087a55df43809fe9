#include "support/command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "base/config.h"

namespace ciuic::testing {

std::string built_program(const std::string& relative) {
  auto build_dir = config::foreign_env("CIUIC_BUILD_DIR");
  if (!build_dir) return "";
  std::string path = *build_dir + "/" + relative;
  return ::access(path.c_str(), X_OK) == 0 ? path : "";
}

CommandOutcome run_command(const std::string& command) {
  CommandOutcome outcome;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return outcome;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) outcome.output.append(buffer, n);
  const int status = ::pclose(pipe);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

}  // namespace ciuic::testing
