// ciuic-perf: collective and transport benchmarks with nccl-tests' flags and columns.
// Under a launcher every process is one rank; started alone it starts -N ranks of itself.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "base/config.h"
#include "core/bootstrap.h"
#include "launch.h"
#include "options.h"

namespace {

void print_config() {
  std::printf("# CIUIC_* parameters (value in force, default, meaning)\n");
  for (const ciuic::config::Param* p : ciuic::config::all_params()) {
    std::printf("%-24s = %-10s (default %s%s)\n    %s\n", p->name(), p->current_text().c_str(),
                p->default_text().empty() ? "\"\"" : p->default_text().c_str(),
                p->is_set() ? ", set" : "", p->doc());
  }
}

std::string self_path(const char* argv0) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return argv0;
  buf[n] = '\0';
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ciuic;
  perf::Options options;
  std::string error;
  if (!perf::parse_options(argc, argv, &options, &error)) {
    std::fprintf(stderr, "ciuic-perf: %s\n\n%s", error.c_str(), perf::usage().c_str());
    return 2;
  }
  if (options.help) {
    std::printf("%s", perf::usage().c_str());
    return 0;
  }
  if (!options.transport.empty()) config::set_override("CIUIC_TRANSPORT", options.transport);
  if (!options.algo.empty()) config::set_override("CIUIC_ALGO", options.algo);
  if (options.print_config) {
    print_config();
    return 0;
  }
  core::LaunchInfo info;
  if (!core::read_launch_env(&info).ok()) {
    // Nobody launched us as a rank: start the ranks here, each a copy of this command.
    launch::LaunchOptions launch;
    launch.nranks = options.command == "transport" ? 2 : options.nranks;
    launch.argv.push_back(self_path(argv[0]));
    for (int i = 1; i < argc; ++i) launch.argv.push_back(argv[i]);
    launch::LaunchResult result;
    Status s = launch::run_local(launch, &result);
    if (!s.ok()) {
      std::fprintf(stderr, "ciuic-perf: cannot start the ranks: %s\n", s.message().c_str());
      return 1;
    }
    if (result.exit_code != 0)
      std::fprintf(stderr, "ciuic-perf: %s\n", result.failure.c_str());
    return result.exit_code;
  }
  if (options.command == "transport") return perf::run_transport_bench(options);
  return perf::run_collective_bench(options);
}
