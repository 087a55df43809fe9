// ciuic-run: starts N ranks of a program on this machine with the CIUIC_* variables
// that ciuic_comm_init_env reads, and waits for them.
//
//   ciuic-run -n 4 [--tag-output] [--grace-ms N] [-x NAME=value]... -- ./prog args...

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "base/config.h"
#include "launch.h"

namespace {

constexpr int kUsageError = 2;

const char kUsage[] =
    "usage: ciuic-run -n N [options] [--] program [args...]\n"
    "\n"
    "Starts N ranks of program on this machine. Each rank gets CIUIC_RANK, CIUIC_WORLD_SIZE,\n"
    "CIUIC_LOCAL_RANK, CIUIC_LOCAL_SIZE, CIUIC_ROOT (a free port on the root host) and\n"
    "CIUIC_SECRET (fresh for every run) in its environment.\n"
    "\n"
    "options:\n"
    "  -n, --nranks N      number of ranks (required, at least 1)\n"
    "  --tag-output        prefix every output line with \"[rank] \"\n"
    "  --grace-ms N        after the first rank fails, how long the others may take to\n"
    "                      exit before they are killed (default 5000)\n"
    "  --timeout-ms N      kill the job after N ms and exit with 124 (default: no limit)\n"
    "  --root-host HOST    address where rank 0 serves the bootstrap (default 127.0.0.1)\n"
    "  -x NAME=value       add NAME=value to every rank's environment (repeatable);\n"
    "  -x NAME             accepted for mpirun habits: the environment is inherited anyway\n"
    "  -h, --help          print this and exit\n"
    "\n"
    "The exit status is 0 if every rank exited 0, else the first failed rank's status\n"
    "(128+S for a rank killed by signal S, 127 if the program cannot be executed).\n"
    "SIGINT and SIGTERM are forwarded to the ranks; a second one kills them at once.\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "ciuic-run: %s\nTry 'ciuic-run --help'.\n", message.c_str());
  return kUsageError;
}

bool parse_count(std::string_view text, int64_t min_value, int64_t* value) {
  int64_t parsed = 0;
  if (!ciuic::config::parse_int(text, &parsed) || parsed < min_value || parsed > (1 << 30)) {
    return false;
  }
  *value = parsed;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  ciuic::launch::LaunchOptions options;
  options.nranks = 0;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.empty() || arg[0] != '-') break;  // the program starts here
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--tag-output") {
      options.tag_output = true;
      continue;
    }
    // The remaining options take a value: "--opt value" or "--opt=value".
    std::string_view name = arg;
    std::string value;
    size_t eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage_error("option " + std::string(arg) + " needs a value");
    }
    int64_t number = 0;
    if (name == "-n" || name == "-np" || name == "--nranks") {
      if (!parse_count(value, 1, &number)) {
        return usage_error("rank count must be a positive integer, got '" + value + "'");
      }
      options.nranks = static_cast<int>(number);
    } else if (name == "--grace-ms") {
      if (!parse_count(value, 0, &number)) {
        return usage_error("--grace-ms needs a number of milliseconds, got '" + value + "'");
      }
      options.grace_ms = static_cast<int>(number);
    } else if (name == "--timeout-ms") {
      if (!parse_count(value, 1, &number)) {
        return usage_error("--timeout-ms needs a positive number of milliseconds, got '" + value +
                           "'");
      }
      options.timeout_ms = number;
    } else if (name == "--root-host") {
      options.root_host = value;
    } else if (name == "-x") {
      if (value.empty() || value[0] == '=') return usage_error("-x needs NAME=value or NAME");
      // "-x NAME" (mpirun's way to pass a variable on) needs nothing here: the ranks
      // inherit the whole environment.
      if (value.find('=') != std::string::npos) options.extra_env.push_back(value);
    } else {
      return usage_error("unknown option " + std::string(arg));
    }
  }
  if (options.nranks == 0) return usage_error("the rank count is required: -n N");
  if (i >= argc) return usage_error("no program given: ciuic-run -n N -- program [args...]");
  options.argv.assign(argv + i, argv + argc);

  ciuic::launch::LaunchResult result;
  ciuic::Status status = ciuic::launch::run_local(options, &result);
  if (!status.ok()) {
    std::fprintf(stderr, "ciuic-run: %s\n", status.to_string().c_str());
    return 1;
  }
  if (result.exit_code != 0) {
    std::fprintf(stderr, "ciuic-run: %s\n", result.failure.c_str());
  }
  return result.exit_code;
}
