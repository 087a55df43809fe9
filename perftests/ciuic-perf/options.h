// ciuic-perf's command line: nccl-tests' flags for collectives, perftest-like ones for
// transports.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "base/status.h"
#include "ciuic/ciuic.h"
#include "coll/tuner.h"

namespace ciuic::perf {

struct Options {
  std::string command;           // allreduce, allgather, ..., transport
  std::string transport_mode;    // transport: bw | lat
  size_t min_bytes = 8;          // -b
  size_t max_bytes = 128 << 20;  // -e
  size_t step_factor = 2;        // -f
  int iters = 20;                // -n
  int warmup = 5;                // -w
  int check = 1;                 // -c
  ciuic_datatype_t datatype = CIUIC_FLOAT32;  // -d
  bool cuda = false;             // --device cuda (or -d cuda): buffers in GPU memory, on a stream
  ciuic_op_t op = CIUIC_SUM;     // -o
  int root = 0;                  // -r
  int nranks = 4;                // -N: ranks to spawn when no launcher started us
  std::string transport;         // --transport (CIUIC_TRANSPORT for the spawned ranks)
  std::string algo;              // --algo (CIUIC_ALGO)
  std::string json_path;         // --json FILE
  bool print_config = false;     // --print-config
  bool help = false;
  bool dump_schedule = false;    // --dump-schedule
  // simulate / tune: no ranks started
  std::string topology = "flat";  // --topo
  std::string collective = "allreduce";  // --collective (simulate)
  std::string collective_given;   // --collective as given (tune: only that one)
  bool exact = false;             // --exact: simulate the schedules event by event
  bool unregistered = false;      // --unregistered: transport buffers not registered first
  // calibrate
  std::string write_path;         // --write FILE: the measured cost parameters
  bool nranks_given = false;      // -N given (calibrate starts 2 ranks otherwise)
  bool max_bytes_given = false;   // -e given (calibrate streams 16M otherwise)
};

// Parses argv; false with *error set on bad usage.
bool parse_options(int argc, char** argv, Options* out, std::string* error);
std::string usage();
// "1K" -> 1024, nccl-tests style.
bool parse_size(const std::string& text, size_t* out);

// Collectives benchmark, run by every rank.
int run_collective_bench(const Options& options);
// Transport benchmark between two ranks.
int run_transport_bench(const Options& options);
// The cost model's predictions (simulate) and the tuner's table (tune).
int run_simulate(const Options& options);
int run_tune(const Options& options);
// calibrate: measures the links and the reduction rate, prints the CIUIC_* settings that
// reproduce them and writes them for CIUIC_TUNER_FILE; run by every rank.
int run_calibrate(const Options& options);
// The transports a communicator of this process would use (CIUIC_TRANSPORT,
// CIUIC_LOCAL_TRANSPORT) and what they report of themselves; *note says which and why.
Status transports_here(coll::TransportCosts* out, std::string* note);

}  // namespace ciuic::perf
