// The collectives benchmark: nccl-tests' sweep, columns and bandwidth conventions.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"
#include "options.h"
#include "reduce/reduce.h"

#if CIUIC_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ciuic::perf {
namespace {

struct Shape {
  size_t count = 0;       // the count argument of the call
  size_t send_bytes = 0;
  size_t recv_bytes = 0;
  size_t size = 0;        // the size column (nccl-tests' convention)
  double bus_factor = 1;  // busbw = algbw * bus_factor
};

Shape shape_for(const std::string& cmd, size_t bytes, size_t elem, int n) {
  Shape s;
  const double nd = n;
  if (cmd == "allgather" || cmd == "reduce_scatter" || cmd == "alltoall") {
    s.count = bytes / (elem * static_cast<size_t>(n));
    const size_t block = s.count * elem, total = block * static_cast<size_t>(n);
    s.size = total;
    s.send_bytes = cmd == "allgather" ? block : total;
    s.recv_bytes = cmd == "reduce_scatter" ? block : total;
    s.bus_factor = (nd - 1) / nd;
  } else {
    s.count = bytes / elem;
    s.size = s.send_bytes = s.recv_bytes = s.count * elem;
    s.bus_factor = cmd == "allreduce" ? 2 * (nd - 1) / nd : 1;
  }
  return s;
}

struct Ctx {
  const Options& o;
  ciuic_comm_t comm;
  int rank;
  int n;
  size_t elem;
  ciuic_stream_t stream = nullptr;  // -d cuda: this rank's CUDA stream
};

// Host memory, or GPU memory with -d cuda (the host fills and checks through copies).
struct Buf {
  void* p = nullptr;
  bool device = false;
  Buf(size_t bytes, bool on_device = false) : device(on_device) {
#if CIUIC_HAVE_CUDA
    if (device) {
      if (cudaMalloc(&p, bytes > 0 ? bytes : 1) != cudaSuccess) p = nullptr;
      else cudaMemset(p, 0, bytes);
      return;
    }
#endif
    if (posix_memalign(&p, 4096, bytes > 0 ? bytes : 1) != 0) p = nullptr;
    else std::memset(p, 0, bytes);
  }
  ~Buf() {
#if CIUIC_HAVE_CUDA
    if (device) {
      cudaFree(p);
      return;
    }
#endif
    std::free(p);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  char* c() const { return static_cast<char*>(p); }
};

// Host bytes into a buffer of the run's memory, and back (after the stream's work).
void put(const Ctx& c, void* dst, const void* host, size_t bytes) {
#if CIUIC_HAVE_CUDA
  if (c.o.cuda) {
    cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(c.stream));
    cudaStreamSynchronize(static_cast<cudaStream_t>(c.stream));
    return;
  }
#endif
  std::memcpy(dst, host, bytes);
}
void get(const Ctx& c, void* host, const void* src, size_t bytes) {
#if CIUIC_HAVE_CUDA
  if (c.o.cuda) {
    cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(c.stream));
    cudaStreamSynchronize(static_cast<cudaStream_t>(c.stream));
    return;
  }
#endif
  std::memcpy(host, src, bytes);
}
// The stream's work is done (-d cuda); nothing to do for host buffers.
void sync(const Ctx& c) {
#if CIUIC_HAVE_CUDA
  if (c.o.cuda) cudaStreamSynchronize(static_cast<cudaStream_t>(c.stream));
#endif
}

ciuic_result_t run_once(const Ctx& c, const Shape& s, const void* send, void* recv) {
  const std::string& cmd = c.o.command;
  ciuic_stream_t st = c.stream;
  if (cmd == "allreduce") return ciuic_allreduce(send, recv, s.count, c.o.datatype, c.o.op, c.comm, st);
  if (cmd == "allgather") return ciuic_allgather(send, recv, s.count, c.o.datatype, c.comm, st);
  if (cmd == "reduce_scatter")
    return ciuic_reduce_scatter(send, recv, s.count, c.o.datatype, c.o.op, c.comm, st);
  if (cmd == "broadcast") return ciuic_broadcast(send, recv, s.count, c.o.datatype, c.o.root, c.comm, st);
  if (cmd == "reduce") return ciuic_reduce(send, recv, s.count, c.o.datatype, c.o.op, c.o.root, c.comm, st);
  if (cmd == "alltoall") return ciuic_alltoall(send, recv, s.count, c.o.datatype, c.comm, st);
  // sendrecv: everyone sends to the next rank and receives from the previous one.
  if (c.n == 1) {
    std::vector<char> tmp(s.send_bytes);
    get(c, tmp.data(), send, s.send_bytes);
    put(c, recv, tmp.data(), s.send_bytes);
    return CIUIC_SUCCESS;
  }
  ciuic_request_t reqs[2] = {nullptr, nullptr};
  ciuic_group_start();  // on a stream, the exchange is one operation (host calls run at once)
  ciuic_result_t rc = ciuic_isend(send, s.count, c.o.datatype, (c.rank + 1) % c.n, c.comm, st, &reqs[0]);
  if (rc == CIUIC_SUCCESS)
    rc = ciuic_irecv(recv, s.count, c.o.datatype, (c.rank + c.n - 1) % c.n, c.comm, st, &reqs[1]);
  ciuic_result_t rc_group = ciuic_group_end();
  if (rc == CIUIC_SUCCESS) rc = rc_group;
  if (rc != CIUIC_SUCCESS) {
    for (auto& r : reqs)
      if (r != nullptr) ciuic_wait(&r);
    return rc;
  }
  ciuic_result_t rc0 = ciuic_wait(&reqs[0]);
  ciuic_result_t rc1 = rc == CIUIC_SUCCESS ? ciuic_wait(&reqs[1]) : rc;
  return rc0 != CIUIC_SUCCESS ? rc0 : rc1;
}

// Small integers, exact in every datatype and under any summation order (8-bit floats:
// 0 or 1, so that sums of up to 8 ranks stay exact in e5m2).
void fill_input(void* buf, size_t count, ciuic_datatype_t t, ciuic_op_t op, int rank) {
  const bool float8 = reduce::is_float8(t);
  auto value = [&](size_t i) {
    if (op == CIUIC_PROD) return static_cast<double>(1 + (i + static_cast<size_t>(rank)) % 2);
    if (float8) return static_cast<double>((i * 3 + static_cast<size_t>(rank) * 7) % 2);
    return static_cast<double>(1 + (i * 3 + static_cast<size_t>(rank) * 7) % 5);
  };
  for (size_t i = 0; i < count; ++i) {
    double v = value(i);
    switch (t) {
      case CIUIC_INT8: static_cast<int8_t*>(buf)[i] = static_cast<int8_t>(v); break;
      case CIUIC_UINT8: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(v); break;
      case CIUIC_INT32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); break;
      case CIUIC_UINT32: static_cast<uint32_t*>(buf)[i] = static_cast<uint32_t>(v); break;
      case CIUIC_INT64: static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); break;
      case CIUIC_UINT64: static_cast<uint64_t*>(buf)[i] = static_cast<uint64_t>(v); break;
      case CIUIC_FLOAT16: static_cast<uint16_t*>(buf)[i] = reduce::float_to_half(static_cast<float>(v)); break;
      case CIUIC_BFLOAT16: static_cast<uint16_t*>(buf)[i] = reduce::float_to_bfloat16(static_cast<float>(v)); break;
      case CIUIC_FLOAT32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
      case CIUIC_FLOAT64: static_cast<double*>(buf)[i] = v; break;
      case CIUIC_FLOAT8_E4M3: static_cast<uint8_t*>(buf)[i] = reduce::float_to_e4m3(static_cast<float>(v)); break;
      case CIUIC_FLOAT8_E5M2: static_cast<uint8_t*>(buf)[i] = reduce::float_to_e5m2(static_cast<float>(v)); break;
      default: break;
    }
  }
}

// What rank c.rank must hold after the collective, or nothing to check (returns false).
bool expected_output(const Ctx& c, const Shape& s, void* out) {
  const std::string& cmd = c.o.command;
  const size_t block = s.count * c.elem;
  const ciuic_datatype_t t = c.o.datatype;
  if (cmd == "allreduce" || cmd == "reduce_scatter" || cmd == "reduce") {
    if (cmd == "reduce" && c.rank != c.o.root) return false;
    const size_t total = cmd == "reduce_scatter" ? s.count * static_cast<size_t>(c.n) : s.count;
    Buf acc(total * c.elem), tmp(total * c.elem);
    fill_input(acc.p, total, t, c.o.op, 0);
    for (int r = 1; r < c.n; ++r) {
      fill_input(tmp.p, total, t, c.o.op, r);
      reduce::reduce(acc.p, acc.p, tmp.p, total, t, c.o.op);
    }
    if (c.o.op == CIUIC_AVG) reduce::finish_average(acc.p, total, t, c.n);
    const size_t from = cmd == "reduce_scatter" ? static_cast<size_t>(c.rank) * block : 0;
    std::memcpy(out, acc.c() + from, cmd == "reduce_scatter" ? block : total * c.elem);
    return true;
  }
  if (cmd == "allgather") {
    for (int r = 0; r < c.n; ++r) fill_input(static_cast<char*>(out) + static_cast<size_t>(r) * block, s.count, t, c.o.op, r);
    return true;
  }
  if (cmd == "alltoall") {
    Buf theirs(block * static_cast<size_t>(c.n));
    for (int r = 0; r < c.n; ++r) {
      fill_input(theirs.p, s.count * static_cast<size_t>(c.n), t, c.o.op, r);
      std::memcpy(static_cast<char*>(out) + static_cast<size_t>(r) * block,
                  theirs.c() + static_cast<size_t>(c.rank) * block, block);
    }
    return true;
  }
  if (cmd == "broadcast") {
    fill_input(out, s.count, t, c.o.op, c.o.root);
    return true;
  }
  fill_input(out, s.count, t, c.o.op, (c.rank + c.n - 1) % c.n);  // sendrecv
  return true;
}

size_t input_count(const std::string& cmd, const Shape& s, int n) {
  if (cmd == "reduce_scatter" || cmd == "alltoall") return s.count * static_cast<size_t>(n);
  return s.count;
}

struct Result {
  double time_us = 0, algbw = 0, busbw = 0;
  long long wrong = 0;
  bool skipped = false;
};

long long sum_over_ranks(const Ctx& c, long long v) {
  int64_t in = v, out = 0;
  if (ciuic_allreduce(&in, &out, 1, CIUIC_INT64, CIUIC_SUM, c.comm, nullptr) != CIUIC_SUCCESS) return -1;
  return out;
}

double mean_over_ranks(const Ctx& c, double v) {
  double out = 0;
  if (ciuic_allreduce(&v, &out, 1, CIUIC_FLOAT64, CIUIC_SUM, c.comm, nullptr) != CIUIC_SUCCESS) return -1;
  return out / c.n;
}

bool measure(const Ctx& c, const Shape& s, const Buf& send, const Buf& recv, bool in_place, Result* res) {
  const std::string& cmd = c.o.command;
  if (in_place && cmd == "sendrecv") {
    res->skipped = true;
    return true;
  }
  const size_t block = s.count * c.elem;
  // In place, the input sits where each collective's in-place form expects it.
  char* input = in_place ? recv.c() : send.c();
  if (in_place && cmd == "allgather") input = recv.c() + static_cast<size_t>(c.rank) * block;
  if (in_place && cmd == "reduce_scatter") input = send.c();
  void* output = in_place && cmd == "reduce_scatter" ? send.c() + static_cast<size_t>(c.rank) * block : recv.p;
  auto call = [&]() -> bool {
    ciuic_result_t rc = run_once(c, s, input, output);
    if (rc != CIUIC_SUCCESS) {
      std::fprintf(stderr, "rank %d: %s failed: %s: %s\n", c.rank, cmd.c_str(), ciuic_result_string(rc),
                   ciuic_comm_get_last_error(c.comm));
      return false;
    }
    return true;
  };
  if (c.o.check) {
    const size_t in_count = input_count(cmd, s, c.n);
    Buf host_input(in_count * c.elem);
    fill_input(host_input.p, in_count, c.o.datatype, c.o.op, c.rank);
    put(c, input, host_input.p, in_count * c.elem);
    if (!call()) return false;
    Buf want(s.recv_bytes), got_buf(s.recv_bytes);
    get(c, got_buf.p, output, s.recv_bytes);
    long long wrong = 0;
    if (expected_output(c, s, want.p)) {
      const char* got = got_buf.c();
      for (size_t i = 0; i < s.recv_bytes / c.elem; ++i)
        if (std::memcmp(got + i * c.elem, want.c() + i * c.elem, c.elem) != 0) ++wrong;
    }
    res->wrong = sum_over_ranks(c, wrong);
  }
  for (int i = 0; i < c.o.warmup; ++i)
    if (!call()) return false;
  sync(c);
  if (ciuic_barrier(c.comm, nullptr) != CIUIC_SUCCESS) return false;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < c.o.iters; ++i)
    if (!call()) return false;
  sync(c);  // with a stream, the calls only enqueued: the time ends when the stream is done
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / c.o.iters;
  res->time_us = mean_over_ranks(c, us);
  res->algbw = res->time_us > 0 ? static_cast<double>(s.size) / res->time_us / 1e3 : 0;
  res->busbw = res->algbw * s.bus_factor;
  return true;
}

void print_result(const Result& r) {
  if (r.skipped) {
    std::printf("  %8s %7s %7s %6s", "N/A", "N/A", "N/A", "N/A");
    return;
  }
  std::printf("  %8.2f %7.2f %7.2f %6lld", r.time_us, r.algbw, r.busbw, r.wrong);
}

std::string json_result(const Result& r) {
  if (r.skipped) return "null";
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "{\"time_us\":%.3f,\"algbw_gbps\":%.4f,\"busbw_gbps\":%.4f,\"wrong\":%lld}",
                r.time_us, r.algbw, r.busbw, r.wrong);
  return buf;
}

}  // namespace

int run_collective_bench(const Options& o) {
  ciuic_comm_t comm = nullptr;
  if (ciuic_comm_init_env(&comm) != CIUIC_SUCCESS) {
    std::fprintf(stderr, "ciuic-perf: init failed: %s\n", ciuic_comm_get_last_error(nullptr));
    return 1;
  }
  int rank = 0, n = 1;
  ciuic_comm_rank(comm, &rank);
  ciuic_comm_size(comm, &n);
  Ctx c{o, comm, rank, n, reduce::datatype_size(o.datatype)};
  if (o.root >= n) {
    if (rank == 0) std::fprintf(stderr, "ciuic-perf: root %d is not a rank (%d ranks)\n", o.root, n);
    ciuic_comm_destroy(comm);
    return 2;
  }
  std::string memory = "host memory";
  if (o.cuda) {
#if CIUIC_HAVE_CUDA
    int gpus = 0;
    cudaStream_t stream = nullptr;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0 || cudaSetDevice(rank % gpus) != cudaSuccess ||
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
      std::fprintf(stderr, "ciuic-perf: rank %d: -d cuda needs a GPU: %s\n", rank, cudaGetErrorString(cudaGetLastError()));
      ciuic_comm_destroy(comm);
      return 2;
    }
    c.stream = stream;
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, rank % gpus);
    memory = "CUDA memory on " + std::string(prop.name) + " (GPU rank % " + std::to_string(gpus) + "), a stream per rank";
#else
    if (rank == 0) std::fprintf(stderr, "ciuic-perf: -d cuda: this build of ciuic has no CUDA support\n");
    ciuic_comm_destroy(comm);
    return 2;
#endif
  }
  Shape largest = shape_for(o.command, o.max_bytes, c.elem, n);
  Buf send(std::max(largest.send_bytes, largest.recv_bytes), o.cuda),
      recv(std::max(largest.send_bytes, largest.recv_bytes), o.cuda);
  const bool reduces = o.command == "allreduce" || o.command == "reduce_scatter" || o.command == "reduce";
  const bool rooted = o.command == "broadcast" || o.command == "reduce";
  if (rank == 0) {
    std::printf("# ciuic-perf %s: %d ranks, transport %s, datatype %s%s%s, iters %d, warmup %d, check %d\n",
                o.command.c_str(), n, core::configured_transport().c_str(),
                reduce::datatype_name(o.datatype), reduces ? ", op " : "", reduces ? reduce::op_name(o.op) : "",
                o.iters, o.warmup, o.check);
    std::printf("# buffers: %s\n", memory.c_str());
#if CIUIC_HAVE_CUDA
    if (o.cuda) {  // the GPU's own copy bandwidth, for scale
      const size_t bytes = std::min<size_t>(std::max<size_t>(largest.send_bytes, 1 << 20), size_t{256} << 20);
      Buf a(bytes, true), b(bytes, true);
      cudaStream_t st = static_cast<cudaStream_t>(c.stream);
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      for (int i = 0; i < 2; ++i) cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, st);
      cudaEventRecord(e0, st);
      for (int i = 0; i < 10; ++i) cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, st);
      cudaEventRecord(e1, st);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      std::printf("# cudaMemcpy device to device, %zu bytes: %.1f GB/s (bytes copied / time)\n", bytes,
                  ms > 0 ? 10.0 * static_cast<double>(bytes) / (ms * 1e6) : 0.0);
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
    }
#endif
    std::printf("#\n#                                                    out-of-place                       in-place\n");
    std::printf("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n");
    std::printf("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)\n");
  }
  std::string json = "{\"collective\":\"" + o.command + "\",\"nranks\":" + std::to_string(n) +
                     ",\"transport\":\"" + core::configured_transport() +
                     "\",\"datatype\":\"" + reduce::datatype_name(o.datatype) + "\",\"op\":\"" +
                     reduce::op_name(o.op) + "\",\"results\":[";
  double bus_sum = 0;
  int sizes = 0;
  long long wrong_total = 0;
  int status = 0;
  for (size_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= o.step_factor) {
    Shape s = shape_for(o.command, bytes, c.elem, n);
    Result oop, ip;
    if (!measure(c, s, send, recv, false, &oop) || !measure(c, s, send, recv, true, &ip)) {
      status = 1;
      break;
    }
    wrong_total += oop.wrong + (ip.skipped ? 0 : ip.wrong);
    bus_sum += ip.skipped ? oop.busbw : (oop.busbw + ip.busbw) / 2;
    ++sizes;
    if (rank == 0) {
      std::printf("%12zu  %12zu  %8s  %6s  %6d", s.size, s.size / c.elem,
                  reduce::datatype_name(o.datatype), reduces ? reduce::op_name(o.op) : "none", rooted ? o.root : -1);
      print_result(oop);
      print_result(ip);
      std::printf("\n");
      std::fflush(stdout);
      char entry[256];
      std::snprintf(entry, sizeof(entry), "%s{\"size\":%zu,\"count\":%zu,\"type\":\"%s\",\"redop\":\"%s\",\"root\":%d,",
                    sizes > 1 ? "," : "", s.size, s.size / c.elem, reduce::datatype_name(o.datatype),
                    reduces ? reduce::op_name(o.op) : "none", rooted ? o.root : -1);
      json += entry;
      json += "\"out_of_place\":" + json_result(oop) + ",\"in_place\":" + json_result(ip) + "}";
    }
    if (bytes == 0) break;
  }
  json += "]}\n";
  if (rank == 0) {
    std::printf("# Out of bounds values : %lld %s\n", wrong_total, wrong_total == 0 ? "OK" : "FAILED");
    std::printf("# Avg bus bandwidth    : %.4f\n#\n", sizes ? bus_sum / sizes : 0.0);
    if (!o.json_path.empty()) {
      FILE* f = std::fopen(o.json_path.c_str(), "w");
      if (f == nullptr) {
        std::fprintf(stderr, "ciuic-perf: cannot write %s: %s\n", o.json_path.c_str(), std::strerror(errno));
        status = 1;
      } else {
        std::fputs(json.c_str(), f);
        std::fclose(f);
      }
    }
  }
  ciuic_comm_destroy(comm);
#if CIUIC_HAVE_CUDA
  if (c.stream != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(c.stream));
#endif
  if (status == 0 && wrong_total != 0) status = 3;
  return status;
}

}  // namespace ciuic::perf
