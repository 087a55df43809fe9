#include "options.h"

#include <strings.h>

#include <cstdlib>

#include "base/config.h"
#include "reduce/reduce.h"

namespace ciuic::perf {

bool parse_size(const std::string& text, size_t* out) {
  int64_t v;
  if (!config::parse_int(text, &v) || v < 0) return false;
  *out = static_cast<size_t>(v);
  return true;
}

namespace {

bool parse_datatype(const std::string& s, ciuic_datatype_t* out) {
  static const struct {
    const char* name;
    ciuic_datatype_t type;
  } kAliases[] = {{"float", CIUIC_FLOAT32}, {"half", CIUIC_FLOAT16}, {"double", CIUIC_FLOAT64},
                  {"bf16", CIUIC_BFLOAT16}, {"int", CIUIC_INT32},    {"uint", CIUIC_UINT32},
                  {"char", CIUIC_INT8},     {"fp16", CIUIC_FLOAT16}, {"fp32", CIUIC_FLOAT32},
                  {"fp8e4m3", CIUIC_FLOAT8_E4M3}, {"fp8e5m2", CIUIC_FLOAT8_E5M2}};
  for (int t = 0; t < CIUIC_NUM_DATATYPES; ++t) {
    if (strcasecmp(s.c_str(), reduce::datatype_name(static_cast<ciuic_datatype_t>(t))) == 0) {
      *out = static_cast<ciuic_datatype_t>(t);
      return true;
    }
  }
  for (const auto& a : kAliases) {
    if (strcasecmp(s.c_str(), a.name) == 0) {
      *out = a.type;
      return true;
    }
  }
  return false;
}

bool parse_op(const std::string& s, ciuic_op_t* out) {
  for (int o = 0; o < CIUIC_NUM_OPS; ++o) {
    if (strcasecmp(s.c_str(), reduce::op_name(static_cast<ciuic_op_t>(o))) == 0) {
      *out = static_cast<ciuic_op_t>(o);
      return true;
    }
  }
  return false;
}

bool parse_int_arg(const std::string& s, int lo, int* out) {
  int64_t v;
  if (!config::parse_int(s, &v) || v < lo || v > (1 << 30)) return false;
  *out = static_cast<int>(v);
  return true;
}

}  // namespace

std::string usage() {
  return R"(usage: ciuic-perf <collective> [options]
       ciuic-perf transport bw|lat [options]
       ciuic-perf simulate --ranks N [--topo T] [--algo NAME|auto] [--collective C] [--exact] [-b -e -f]
       ciuic-perf tune --ranks N [--topo T] [--collective C] [--transport NAME] [-b -e -f]
       ciuic-perf calibrate [-N ranks] [-b SMALL] [-e LARGE] [-n iters] [--write FILE]
       ciuic-perf --print-config

collectives: allreduce allgather reduce_scatter broadcast reduce alltoall sendrecv

  -b, --minbytes SIZE   smallest size (default 8; K/M/G suffixes)
  -e, --maxbytes SIZE   largest size (default 128M)
  -f, --stepfactor N    multiply the size by N each step (default 2)
  -n, --iters N         timed iterations per size (default 20)
  -w, --warmup_iters N  untimed iterations first (default 5)
  -c, --check 0|1       verify results and count wrong elements (default 1)
  -d, --datatype T      int8 uint8 int32 uint32 int64 uint64 float16 bfloat16 float32 float64
                        (also float, half, double, bf16, int) (default float32);
                        -d cuda / -d host pick the buffers' memory (same as --device)
      --device host|cuda  buffers in host memory (default) or GPU memory, each rank on GPU
                        rank % GPUs with its own stream (builds with CUDA)
  -o, --op OP           sum prod min max avg (default sum)
  -r, --root N          root of broadcast/reduce (default 0)
  -N, --nranks N        ranks to start on this machine when no launcher started us (default 4)
      --transport NAME  transport between ranks (auto, tcp) -> CIUIC_TRANSPORT
      --algo NAME       force an algorithm (ring, chain, ...) -> CIUIC_ALGO
      --json FILE       also write the results as JSON (written by rank 0)
      --dump-schedule   print rank 0's schedule for the smallest size and exit
      --print-config    list every CIUIC_* parameter with its value and meaning
      --ranks N         simulate / tune: rank count (same as -N)
      --topo T          simulate / tune: flat, torus:AxBxC or nodes:N (default flat)
      --collective C    simulate: which collective (default allreduce); tune: only that one
      --exact           simulate: run every rank's schedule event by event (small rank counts)
      --unregistered    transport: do not register the buffers first (as perftest and NCCL
                        do), so the transport's own staging for unregistered memory is timed
      --transport NAME  tune: also take the figures the transports in use here report
                        (NAME as CIUIC_TRANSPORT: auto, tcp, ...)
      --write FILE      calibrate: write the measured parameters for CIUIC_TUNER_FILE
  -h, --help

Sizes are bytes of the whole buffer as nccl-tests counts them (all-gather: the gathered
result; reduce-scatter: the input). busbw follows nccl-tests: all-reduce algbw*2(n-1)/n,
all-gather / reduce-scatter / all-to-all algbw*(n-1)/n, others algbw.
Started by mpirun, srun, torchrun or ciuic-run, every process is one rank; started alone,
ciuic-perf starts -N ranks of itself on this machine.

calibrate measures, between rank 0 and a peer on another host (else the next rank) over
the network transport, and a peer on its host over the local one (shm): the half round
trip of a -b byte message and the streaming rate of -e bytes (default 16M), on the
transport itself and through the executor, and the float32 sum reduction rate. It
starts 2 ranks unless -N says otherwise (docs/tuning.md).
)";
}

bool parse_options(int argc, char** argv, Options* o, std::string* error) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto fail = [&](std::string message) {
    *error = std::move(message);
    return false;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool takes_value = a.size() > 1 && a[0] == '-' && a != "-h" && a != "--help" &&
                             a != "--print-config" && a != "--dump-schedule" && a != "--exact" &&
                             a != "--unregistered";
    if (takes_value && i + 1 >= args.size()) return fail("option " + a + " needs a value");
    const std::string v = takes_value ? args[++i] : "";
    bool ok = true;
    if (a == "-h" || a == "--help") o->help = true;
    else if (a == "--print-config") o->print_config = true;
    else if (a == "--dump-schedule") o->dump_schedule = true;
    else if (a == "--exact") o->exact = true;
    else if (a == "--unregistered") o->unregistered = true;
    else if (a == "--ranks") ok = parse_int_arg(v, 1, &o->nranks);
    else if (a == "--topo") o->topology = v;
    else if (a == "--collective") o->collective = o->collective_given = v == "reducescatter" ? "reduce_scatter" : v;
    else if (a == "-b" || a == "--minbytes") ok = parse_size(v, &o->min_bytes);
    else if (a == "-e" || a == "--maxbytes") ok = parse_size(v, &o->max_bytes);
    else if (a == "-f" || a == "--stepfactor") ok = parse_size(v, &o->step_factor) && o->step_factor >= 2;
    else if (a == "-n" || a == "--iters") ok = parse_int_arg(v, 1, &o->iters);
    else if (a == "-w" || a == "--warmup_iters") ok = parse_int_arg(v, 0, &o->warmup);
    else if (a == "-c" || a == "--check") ok = parse_int_arg(v, 0, &o->check);
    else if ((a == "-d" || a == "--device") && (v == "cuda" || v == "host")) o->cuda = v == "cuda";
    else if (a == "--device") return fail("--device takes host or cuda, not " + v);
    else if (a == "-d" || a == "--datatype") ok = parse_datatype(v, &o->datatype);
    else if (a == "-o" || a == "--op") ok = parse_op(v, &o->op);
    else if (a == "-r" || a == "--root") ok = parse_int_arg(v, 0, &o->root);
    else if (a == "-N" || a == "--nranks") ok = parse_int_arg(v, 1, &o->nranks);
    else if (a == "--transport") o->transport = v;
    else if (a == "--algo") o->algo = v;
    else if (a == "--json") o->json_path = v;
    else if (a == "--write") o->write_path = v;
    else if (takes_value) return fail("unknown option " + a);
    else if (o->command.empty()) o->command = a == "reducescatter" ? "reduce_scatter" : a;
    else if (o->command == "transport" && o->transport_mode.empty()) o->transport_mode = a;
    else return fail("unexpected argument " + a);
    if (!ok) return fail("bad value for " + a + ": " + v);
    o->nranks_given = o->nranks_given || a == "-N" || a == "--nranks";
    o->max_bytes_given = o->max_bytes_given || a == "-e" || a == "--maxbytes";
  }
  if (o->help || o->print_config) return true;
  static const char* kCommands[] = {"allreduce", "allgather", "reduce_scatter", "broadcast",
                                    "reduce",    "alltoall",  "sendrecv",       "transport",
                                    "simulate",  "tune",           "calibrate"};
  bool known = false;
  for (const char* c : kCommands) known = known || o->command == c;
  if (!known) return fail(o->command.empty() ? "no command given" : "unknown command " + o->command);
  if (o->command == "transport" && o->transport_mode != "bw" && o->transport_mode != "lat")
    return fail("transport needs a mode: bw or lat");
  if (o->min_bytes > o->max_bytes) return fail("-b is larger than -e");
  return true;
}

}  // namespace ciuic::perf
