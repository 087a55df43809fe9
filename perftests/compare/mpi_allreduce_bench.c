/* MPI baseline for ciuic-perf: an nccl-tests-like size sweep of MPI_Allreduce (float32
 * sum) or MPI_Allgather, on host memory, out of place.
 *
 *   mpirun -np 4 mpi_allreduce_bench -b 8 -e 128M -f 4 -n 20 -w 5 [--allgather] [--json FILE]
 *
 * Sizes are bytes of the full buffer, as nccl-tests counts them: for all-gather the
 * total received (count per rank = size / 4 / nranks). time_us is the mean over the -n
 * timed iterations, averaged over the ranks as nccl-tests and ciuic-perf do; busbw = algbw *
 * 2(n-1)/n for all-reduce and (n-1)/n for all-gather (nccl-tests' doc/PERFORMANCE.md). After the
 * timed loop the result is checked; #wrong counts wrong elements over all ranks. The count column
 * is elements of the full buffer (size / 4), like nccl-tests' column.
 * --json writes the same document as `ciuic-perf --json`, so one parser reads both. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct options {
  int64_t min_bytes, max_bytes, factor;
  int iters, warmup, allgather;
  const char* json_path;
};

static int parse_size(const char* text, int64_t* out) {
  char* end = NULL;
  double value = strtod(text, &end);
  if (end == text || value < 0) return 0;
  switch (*end) {
    case 'K':
    case 'k':
      value *= 1024.0;
      ++end;
      break;
    case 'M':
    case 'm':
      value *= 1024.0 * 1024;
      ++end;
      break;
    case 'G':
    case 'g':
      value *= 1024.0 * 1024 * 1024;
      ++end;
      break;
    default:
      break;
  }
  if (*end == 'B' || *end == 'b') ++end;
  if (*end != '\0') return 0;
  *out = (int64_t)value;
  return 1;
}

static void usage(int rank) {
  if (rank == 0) {
    fprintf(
        stderr,
        "usage: mpi_allreduce_bench [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP]\n"
        "                           [--allgather] [--json FILE]\n"
        "  sizes take K/M/G suffixes (powers of 1024); defaults -b 8 -e 128M -f 2 -n 20 -w 5\n");
  }
}

static int parse_options(int argc, char** argv, int rank, struct options* o) {
  o->min_bytes = 8;
  o->max_bytes = 128 << 20;
  o->factor = 2;
  o->iters = 20;
  o->warmup = 5;
  o->allgather = 0;
  o->json_path = NULL;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t number = 0;
    if (strcmp(a, "--allgather") == 0) {
      o->allgather = 1;
      continue;
    }
    if (strcmp(a, "--allreduce") == 0) {
      o->allgather = 0;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(rank);
      return 0;
    }
    if (v == NULL) {
      usage(rank);
      return 0;
    }
    if (strcmp(a, "--json") == 0) {
      o->json_path = v;
      ++i;
      continue;
    }
    if (!parse_size(v, &number)) {
      if (rank == 0) fprintf(stderr, "mpi_allreduce_bench: bad value '%s' for %s\n", v, a);
      return 0;
    }
    ++i;
    if (strcmp(a, "-b") == 0)
      o->min_bytes = number;
    else if (strcmp(a, "-e") == 0)
      o->max_bytes = number;
    else if (strcmp(a, "-f") == 0)
      o->factor = number;
    else if (strcmp(a, "-n") == 0)
      o->iters = (int)number;
    else if (strcmp(a, "-w") == 0)
      o->warmup = (int)number;
    else {
      if (rank == 0) fprintf(stderr, "mpi_allreduce_bench: unknown option %s\n", a);
      usage(rank);
      return 0;
    }
  }
  if (o->min_bytes < 1 || o->max_bytes < o->min_bytes || o->factor < 2 || o->iters < 1 ||
      o->warmup < 0) {
    if (rank == 0) fprintf(stderr, "mpi_allreduce_bench: need 1 <= -b <= -e, -f >= 2, -n >= 1\n");
    return 0;
  }
  return 1;
}

static void fill_input(float* send, int64_t count, int rank, int allgather) {
  for (int64_t i = 0; i < count; ++i) {
    /* Small integers: every sum is exact in float32, so the check can be exact. */
    send[i] = allgather ? (float)(rank * 1000 + i % 1000) : (float)((rank + i) % 8);
  }
}

static int64_t count_wrong(const float* recv, int64_t count, int nranks, int allgather) {
  int64_t wrong = 0;
  if (allgather) {
    for (int r = 0; r < nranks; ++r) {
      for (int64_t i = 0; i < count; ++i) {
        if (recv[r * count + i] != (float)(r * 1000 + i % 1000)) ++wrong;
      }
    }
    return wrong;
  }
  for (int64_t i = 0; i < count; ++i) {
    int64_t expected = 0;
    for (int r = 0; r < nranks; ++r) expected += (r + i) % 8;
    if (recv[i] != (float)expected) ++wrong;
  }
  return wrong;
}

static void run_once(const float* send, float* recv, int64_t count, int allgather) {
  if (allgather) {
    MPI_Allgather(send, (int)count, MPI_FLOAT, recv, (int)count, MPI_FLOAT, MPI_COMM_WORLD);
  } else {
    MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, nranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  struct options o;
  if (!parse_options(argc, argv, rank, &o)) {
    MPI_Finalize();
    return 2;
  }
  const char* collective = o.allgather ? "allgather" : "allreduce";
  const double bus_factor =
      o.allgather ? (double)(nranks - 1) / nranks : 2.0 * (nranks - 1) / nranks;

  /* Buffers for the largest size, reused for every size. */
  int64_t max_count = o.max_bytes / (int64_t)sizeof(float);
  int64_t send_elems = o.allgather ? max_count / nranks : max_count;
  float* send = malloc((size_t)(send_elems > 0 ? send_elems : 1) * sizeof(float));
  float* recv = malloc((size_t)(max_count > 0 ? max_count : 1) * sizeof(float));
  if (send == NULL || recv == NULL) {
    fprintf(stderr, "mpi_allreduce_bench: rank %d: out of memory for %lld bytes\n", rank,
            (long long)o.max_bytes);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  char library[MPI_MAX_LIBRARY_VERSION_STRING] = "";
  int library_len = 0;
  MPI_Get_library_version(library, &library_len);
  char* newline = strchr(library, '\n');
  if (newline) *newline = '\0';
  char* comma = strchr(library, ','); /* "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4" */
  if (comma) *comma = '\0';

  FILE* json = NULL;
  if (rank == 0) {
    printf("# mpi_allreduce_bench: %s, %d ranks, float32%s, %s\n", collective, nranks,
           o.allgather ? "" : " sum", library);
    printf(
        "# %d warm-up and %d timed iterations per size; time is the mean over iterations and "
        "ranks\n",
        o.warmup, o.iters);
    printf("#%13s %12s %8s %6s %12s %10s %10s %8s\n", "size(B)", "count", "type", "redop",
           "time(us)", "algbw", "busbw", "#wrong");
    if (o.json_path) {
      json = fopen(o.json_path, "w");
      if (json == NULL) {
        fprintf(stderr, "mpi_allreduce_bench: cannot write %s\n", o.json_path);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      fprintf(json,
              "{\"collective\":\"%s\",\"nranks\":%d,\"transport\":\"mpi\",\"library\":\"%s\","
              "\"datatype\":\"float32\",\"op\":\"%s\",\"results\":[",
              collective, nranks, library, o.allgather ? "none" : "sum");
    }
  }

  double bw_sum = 0;
  int rows = 0;
  for (int64_t size = o.min_bytes; size <= o.max_bytes; size *= o.factor) {
    /* count: elements per rank's input (all-gather) or of the whole buffer (all-reduce). */
    int64_t count =
        o.allgather ? size / (int64_t)sizeof(float) / nranks : size / (int64_t)sizeof(float);
    if (count == 0) continue; /* smaller than one element per rank */
    int64_t bytes =
        o.allgather ? count * nranks * (int64_t)sizeof(float) : count * (int64_t)sizeof(float);
    fill_input(send, count, rank, o.allgather);
    for (int i = 0; i < o.warmup; ++i) run_once(send, recv, count, o.allgather);
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (int i = 0; i < o.iters; ++i) run_once(send, recv, count, o.allgather);
    double mean_us = (MPI_Wtime() - start) * 1e6 / o.iters;
    double sum_us = 0;
    MPI_Allreduce(&mean_us, &sum_us, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double time_us = sum_us / nranks;
    long long wrong = (long long)count_wrong(recv, count, nranks, o.allgather);
    long long wrong_total = 0;
    MPI_Allreduce(&wrong, &wrong_total, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    double algbw = (double)bytes / (time_us * 1e-6) / 1e9;
    double busbw = algbw * bus_factor;
    bw_sum += busbw;
    ++rows;
    if (rank == 0) {
      printf("%14lld %12lld %8s %6s %12.2f %10.3f %10.3f %8lld\n", (long long)bytes,
             (long long)(bytes / (int64_t)sizeof(float)), "float", o.allgather ? "none" : "sum",
             time_us, algbw, busbw, wrong_total);
      fflush(stdout);
      if (json) {
        fprintf(json,
                "%s\n{\"size\":%lld,\"count\":%lld,\"type\":\"float32\",\"redop\":\"%s\","
                "\"root\":-1,\"out_of_place\":{\"time_us\":%.3f,\"algbw_gbps\":%.6f,"
                "\"busbw_gbps\":%.6f,\"wrong\":%lld}}",
                rows > 1 ? "," : "", (long long)bytes, (long long)(bytes / (int64_t)sizeof(float)),
                o.allgather ? "none" : "sum", time_us, algbw, busbw, wrong_total);
      }
    }
  }
  if (rank == 0) {
    printf("# Avg bus bandwidth    : %.3f GB/s\n", rows ? bw_sum / rows : 0.0);
    if (json) {
      fprintf(json, "\n]}\n");
      fclose(json);
    }
  }
  free(send);
  free(recv);
  MPI_Finalize();
  return 0;
}
