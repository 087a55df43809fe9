// ciuic-perf: collective and transport benchmarks with nccl-tests' flags and columns.
// Under a launcher every process is one rank; started alone it starts -N ranks of itself.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "base/config.h"
#include "coll/algorithms.h"
#include "reduce/reduce.h"
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

// Prints rank 0's schedule for the smallest size: what the algorithm will do, step by
// step, without starting any rank.
int dump_schedule(const ciuic::perf::Options& o) {
  using namespace ciuic;
  static const struct {
    const char* command;
    coll::Collective collective;
  } kMap[] = {{"allreduce", coll::Collective::kAllreduce},   {"allgather", coll::Collective::kAllgather},
              {"reduce_scatter", coll::Collective::kReduceScatter}, {"broadcast", coll::Collective::kBroadcast},
              {"reduce", coll::Collective::kReduce},         {"alltoall", coll::Collective::kAlltoall}};
  coll::CollectiveArgs args;
  bool found = false;
  for (const auto& m : kMap) {
    if (o.command == m.command) {
      args.collective = m.collective;
      found = true;
    }
  }
  if (!found) {
    std::fprintf(stderr, "ciuic-perf: --dump-schedule works for the collectives, not %s\n", o.command.c_str());
    return 2;
  }
  const size_t elem = reduce::datatype_size(o.datatype);
  const bool per_rank = args.collective == coll::Collective::kAllgather ||
                        args.collective == coll::Collective::kReduceScatter ||
                        args.collective == coll::Collective::kAlltoall;
  args.nranks = o.nranks;
  args.count = o.min_bytes / elem / (per_rank ? static_cast<size_t>(o.nranks) : 1);
  args.datatype = o.datatype;
  args.op = o.op;
  args.root = o.root;
  int64_t chunk = 1 << 20;
  if (const config::Param* p = config::find_param("CIUIC_CHUNK_BYTES")) config::parse_int(p->current_text(), &chunk);
  args.chunk_bytes = static_cast<size_t>(chunk);
  coll::Schedule schedule;
  Status s = coll::build_schedule(args, o.algo, &schedule);
  if (!s.ok()) {
    std::fprintf(stderr, "ciuic-perf: %s\n", s.message().c_str());
    return 2;
  }
  std::printf("%s", schedule.to_string().c_str());
  return 0;
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
  if (options.dump_schedule) return dump_schedule(options);
  if (options.command == "simulate") return perf::run_simulate(options);
  if (options.command == "tune") return perf::run_tune(options);
  core::LaunchInfo info;
  if (!core::read_launch_env(&info).ok()) {
    // Nobody launched us as a rank: start the ranks here, each a copy of this command.
    launch::LaunchOptions launch;
    launch.nranks = options.command == "transport" ? 2 : options.nranks;
    if (options.command == "calibrate" && !options.nranks_given) launch.nranks = 2;
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
  if (options.command == "calibrate") return perf::run_calibrate(options);
  return perf::run_collective_bench(options);
}
