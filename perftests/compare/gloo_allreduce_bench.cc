// Gloo baseline for ciuic-perf: the same size sweep as mpi_allreduce_bench, over Gloo's
// TCP transport (gloo::allreduce, ring or Gloo's default choice; or gloo::allgather).
//
//   ciuic-run -n 4 -- gloo_allreduce_bench -b 8 -e 128M -f 4 -n 20 -w 5 [--allgather]
//   mpirun -np 4 gloo_allreduce_bench --store-dir /tmp/some-fresh-dir ...
//
// This is a standalone Gloo program, not part of ciuic: it reads its launcher's
// variables itself (CIUIC_RANK / CIUIC_WORLD_SIZE, else OMPI_COMM_WORLD_RANK / _SIZE).
// Ranks meet through a gloo FileStore in --store-dir; without it the directory is
// derived from the job (CIUIC_SECRET or Open MPI's job id) under $TMPDIR, and rank 0
// removes it at the end. Output and --json are those of mpi_allreduce_bench.

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/config.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int64_t min_bytes = 8, max_bytes = 128 << 20, factor = 2;
  int iters = 20, warmup = 5;
  bool allgather = false;
  std::string algorithm = "ring";  // ring | default
  std::string json_path, store_dir, host = "127.0.0.1";
  int rank = -1, size = -1;
  int timeout_s = 120;
};

bool parse_size(const char* text, int64_t* out) {
  char* end = nullptr;
  double value = std::strtod(text, &end);
  if (end == text || value < 0) return false;
  if (*end == 'K' || *end == 'k')
    value *= 1024.0, ++end;
  else if (*end == 'M' || *end == 'm')
    value *= 1024.0 * 1024, ++end;
  else if (*end == 'G' || *end == 'g')
    value *= 1024.0 * 1024 * 1024, ++end;
  if (*end == 'B' || *end == 'b') ++end;
  if (*end != '\0') return false;
  *out = static_cast<int64_t>(value);
  return true;
}

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::atoi(value) : fallback;
}

std::string env_text(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

const char kUsage[] =
    "usage: gloo_allreduce_bench [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP]\n"
    "         [--allgather] [--algo ring|default] [--json FILE] [--store-dir DIR]\n"
    "         [--host ADDR] [--rank R --size N] [--timeout-s S]\n";

bool parse_options(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--allgather") {
      o->allgather = true;
      continue;
    }
    if (a == "--allreduce") {
      o->allgather = false;
      continue;
    }
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    int64_t number = 0;
    if (a == "--json")
      o->json_path = v;
    else if (a == "--store-dir")
      o->store_dir = v;
    else if (a == "--host")
      o->host = v;
    else if (a == "--algo")
      o->algorithm = v;
    else if (!parse_size(v.c_str(), &number))
      return false;
    else if (a == "-b")
      o->min_bytes = number;
    else if (a == "-e")
      o->max_bytes = number;
    else if (a == "-f")
      o->factor = number;
    else if (a == "-n")
      o->iters = static_cast<int>(number);
    else if (a == "-w")
      o->warmup = static_cast<int>(number);
    else if (a == "--rank")
      o->rank = static_cast<int>(number);
    else if (a == "--size")
      o->size = static_cast<int>(number);
    else if (a == "--timeout-s")
      o->timeout_s = static_cast<int>(number);
    else
      return false;
  }
  if (o->algorithm != "ring" && o->algorithm != "default") return false;
  if (o->min_bytes < 1 || o->max_bytes < o->min_bytes || o->factor < 2 || o->iters < 1) {
    return false;
  }
  if (o->rank < 0) o->rank = env_int("CIUIC_RANK", env_int("OMPI_COMM_WORLD_RANK", -1));
  if (o->size < 0) o->size = env_int("CIUIC_WORLD_SIZE", env_int("OMPI_COMM_WORLD_SIZE", -1));
  if (o->store_dir.empty()) {
    std::string job = env_text("CIUIC_SECRET").substr(0, 16);
    if (job.empty()) job = env_text("OMPI_MCA_ess_base_jobid");
    if (!job.empty()) {
      o->store_dir = (std::filesystem::temp_directory_path() / ("gloo-bench-" + job)).string();
    }
  }
  return true;
}

// The sum over all ranks of one value.
template <typename T>
T sum_over_ranks(const std::shared_ptr<gloo::Context>& context, T value) {
  gloo::AllreduceOptions opts(context);
  opts.setOutput(&value, 1);
  opts.setReduceFunction(
      static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
  opts.setTag(0x7fff0000);
  gloo::allreduce(opts);
  return value;
}

void barrier(const std::shared_ptr<gloo::Context>& context) {
  gloo::BarrierOptions opts(context);
  gloo::barrier(opts);
}

int run(const Options& o) {
  const int rank = o.rank, nranks = o.size;
  std::filesystem::create_directories(o.store_dir);
  gloo::transport::tcp::attr attr;
  attr.hostname = o.host;
  auto device = gloo::transport::tcp::CreateDevice(attr);
  gloo::rendezvous::FileStore store(o.store_dir);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, nranks);
  context->setTimeout(std::chrono::seconds(o.timeout_s));
  context->connectFullMesh(store, device);

  const char* collective = o.allgather ? "allgather" : "allreduce";
  const double bus_factor = o.allgather ? double(nranks - 1) / nranks : 2.0 * (nranks - 1) / nranks;
  const int64_t max_count = o.max_bytes / int64_t(sizeof(float));
  std::vector<float> send(std::max<int64_t>(1, o.allgather ? max_count / nranks : max_count));
  std::vector<float> recv(std::max<int64_t>(1, max_count));

  FILE* json = nullptr;
  if (rank == 0) {
    std::printf(
        "# gloo_allreduce_bench: %s, %d ranks, float32%s, Gloo %d.%d.%d tcp, algorithm %s\n",
        collective, nranks, o.allgather ? "" : " sum", GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR,
        GLOO_VERSION_PATCH, o.allgather ? "ring" : o.algorithm.c_str());
    std::printf(
        "# %d warm-up and %d timed iterations per size; time is the mean over iterations and "
        "ranks\n",
        o.warmup, o.iters);
    std::printf("#%13s %12s %8s %6s %12s %10s %10s %8s\n", "size(B)", "count", "type", "redop",
                "time(us)", "algbw", "busbw", "#wrong");
    if (!o.json_path.empty()) {
      json = std::fopen(o.json_path.c_str(), "w");
      if (json == nullptr) {
        std::fprintf(stderr, "gloo_allreduce_bench: cannot write %s\n", o.json_path.c_str());
        return 1;
      }
      std::fprintf(json,
                   "{\"collective\":\"%s\",\"nranks\":%d,\"transport\":\"gloo-tcp\","
                   "\"library\":\"Gloo %d.%d.%d\",\"algorithm\":\"%s\",\"datatype\":\"float32\","
                   "\"op\":\"%s\",\"results\":[",
                   collective, nranks, GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH,
                   o.allgather ? "ring" : o.algorithm.c_str(), o.allgather ? "none" : "sum");
    }
  }

  uint32_t tag = 1;
  double bw_sum = 0;
  int rows = 0;
  for (int64_t size = o.min_bytes; size <= o.max_bytes; size *= o.factor) {
    int64_t count =
        o.allgather ? size / int64_t(sizeof(float)) / nranks : size / int64_t(sizeof(float));
    if (count == 0) continue;  // smaller than one element per rank
    int64_t bytes = (o.allgather ? count * nranks : count) * int64_t(sizeof(float));
    for (int64_t i = 0; i < count; ++i) {
      // Small integers, so that sums are exact and the check can be exact.
      send[i] = o.allgather ? float(rank * 1000 + i % 1000) : float((rank + i) % 8);
    }
    auto once = [&] {
      if (o.allgather) {
        gloo::AllgatherOptions opts(context);
        opts.setInput(send.data(), count);
        opts.setOutput(recv.data(), count * nranks);
        opts.setTag(tag++);
        gloo::allgather(opts);
      } else {
        gloo::AllreduceOptions opts(context);
        opts.setInput(send.data(), count);
        opts.setOutput(recv.data(), count);
        opts.setReduceFunction(
            static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
        if (o.algorithm == "ring") opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
        opts.setTag(tag++);
        gloo::allreduce(opts);
      }
    };
    for (int i = 0; i < o.warmup; ++i) once();
    barrier(context);
    auto start = Clock::now();
    for (int i = 0; i < o.iters; ++i) once();
    double mean_us =
        std::chrono::duration<double, std::micro>(Clock::now() - start).count() / o.iters;
    double time_us = sum_over_ranks(context, mean_us) / nranks;

    int64_t wrong = 0;
    if (o.allgather) {
      for (int r = 0; r < nranks; ++r) {
        for (int64_t i = 0; i < count; ++i)
          wrong += recv[r * count + i] != float(r * 1000 + i % 1000);
      }
    } else {
      for (int64_t i = 0; i < count; ++i) {
        int64_t expected = 0;
        for (int r = 0; r < nranks; ++r) expected += (r + i) % 8;
        wrong += recv[i] != float(expected);
      }
    }
    wrong = sum_over_ranks<int64_t>(context, wrong);
    double algbw = double(bytes) / (time_us * 1e-6) / 1e9;
    double busbw = algbw * bus_factor;
    bw_sum += busbw;
    ++rows;
    if (rank == 0) {
      std::printf("%14lld %12lld %8s %6s %12.2f %10.3f %10.3f %8lld\n", (long long)bytes,
                  (long long)(bytes / 4), "float", o.allgather ? "none" : "sum", time_us, algbw,
                  busbw, (long long)wrong);
      std::fflush(stdout);
      if (json) {
        std::fprintf(json,
                     "%s\n{\"size\":%lld,\"count\":%lld,\"type\":\"float32\",\"redop\":\"%s\","
                     "\"root\":-1,\"out_of_place\":{\"time_us\":%.3f,\"algbw_gbps\":%.6f,"
                     "\"busbw_gbps\":%.6f,\"wrong\":%lld}}",
                     rows > 1 ? "," : "", (long long)bytes, (long long)(bytes / 4),
                     o.allgather ? "none" : "sum", time_us, algbw, busbw, (long long)wrong);
      }
    }
  }
  barrier(context);  // nobody reads the store any more
  if (rank == 0) {
    std::printf("# Avg bus bandwidth    : %.3f GB/s\n", rows ? bw_sum / rows : 0.0);
    if (json) {
      std::fprintf(json, "\n]}\n");
      std::fclose(json);
    }
    std::error_code ignored;
    std::filesystem::remove_all(o.store_dir, ignored);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_options(argc, argv, &o)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (o.rank < 0 || o.size < 1 || o.rank >= o.size) {
    std::fprintf(stderr,
                 "gloo_allreduce_bench: no rank/size: start it with ciuic-run or mpirun, or pass "
                 "--rank and --size\n");
    return 2;
  }
  if (o.store_dir.empty()) {
    std::fprintf(stderr,
                 "gloo_allreduce_bench: pass --store-dir (a fresh directory all ranks see)\n");
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gloo_allreduce_bench: rank %d: %s\n", o.rank, e.what());
    return 1;
  }
}
