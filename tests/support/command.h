// Running the programs of this build as a user would: their path under CIUIC_BUILD_DIR
// (which ctest sets) and a shell command line's exit code and output.
#pragma once

#include <string>

namespace ciuic::testing {

// `relative` under CIUIC_BUILD_DIR ("tools/ciuic-run/ciuic-run"), or "" when the variable
// is unset or the program is not built there.
std::string built_program(const std::string& relative);

struct CommandOutcome {
  int exit_code = -1;  // -1: it could not be run, or a signal ended it
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing its output.
CommandOutcome run_command(const std::string& command);

}  // namespace ciuic::testing
