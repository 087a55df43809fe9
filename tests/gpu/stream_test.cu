// Stream semantics of CUDA buffers (docs/gpu.md): on one stream, a kernel writes the input
// before the call and others read the output after it with no host synchronisation in
// between; two communicators on two streams at once; non-blocking calls interleaved with
// host calls; managed, pinned and legacy-stream cases; the stream-wait kernel fallback;
// errors with clear messages; a stream that never arrives fails the operation by its
// deadline (and abort ends it at once) without leaving the stream held.
#include <cuda_runtime.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gpu_test.h"

namespace ciuic::gputest {
namespace {

__device__ float input_of(int rank, size_t i, int iter) {
  return static_cast<float>((i % 97) + 3 * rank + iter);
}

// Writes the input after spinning a while, so an engine that did not wait for it would
// stage stale data.
__global__ void slow_fill(float* data, size_t count, int rank, int iter, unsigned spin_ns) {
  if (threadIdx.x == 0) {
    for (unsigned t = 0; t < spin_ns; t += 1000) __nanosleep(1000);
  }
  __syncthreads();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    data[i] = input_of(rank, i, iter);
}

__global__ void scribble(float* data, size_t count) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    data[i] = -12345.0f;
}

// kind 0: sum over ranks; kind 1: max over ranks.
__global__ void check_result(const float* data, size_t count, int nranks, int iter, int kind,
                             unsigned long long* errors) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    float want = 0;
    for (int r = 0; r < nranks; ++r)
      want = kind == 0 ? want + input_of(r, i, iter) : fmaxf(want, input_of(r, i, iter));
    if (data[i] != want) atomicAdd(errors, 1ull);
  }
}

__global__ void hold_until(const volatile int* flag) {
  while (*flag == 0) __nanosleep(1000);
}

unsigned grid_for(size_t count) {
  size_t b = (count + 255) / 256;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 1024 ? 1024 : b));
}

struct RankState {
  cudaStream_t stream = nullptr;
  float* send = nullptr;
  float* recv = nullptr;
  unsigned long long* errors = nullptr;
};

// Kernel -> call -> kernels on one stream, `iters` times, one synchronisation at the end.
void ordering(Tally& tally, int n, size_t count, int iters, const char* label,
              bool nonblocking = false) {
  std::vector<ciuic_comm_t> comms = make_comms(n, tally);
  if (comms.empty()) return;
  Barrier barrier(n);
  testing::run_threads(n, [&](int rank) {
    cudaSetDevice(0);
    RankState s;
    GPU_OK(tally, cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    GPU_OK(tally, cudaMalloc(&s.send, count * sizeof(float)));
    GPU_OK(tally, cudaMalloc(&s.recv, count * sizeof(float)));
    GPU_OK(tally, cudaMalloc(&s.errors, sizeof(unsigned long long)));
    GPU_OK(tally, cudaMemsetAsync(s.errors, 0, sizeof(unsigned long long), s.stream));
    barrier.wait();
    std::vector<ciuic_request_t> requests;
    for (int it = 0; it < iters; ++it) {
      slow_fill<<<grid_for(count), 256, 0, s.stream>>>(s.send, count, rank, it, 200000);
      if (nonblocking) {
        ciuic_request_t req = nullptr;
        CIUIC_EXPECT(tally, comms[rank],
                     ciuic_iallreduce(s.send, s.recv, count, CIUIC_FLOAT32, CIUIC_SUM, comms[rank],
                                      s.stream, &req));
        requests.push_back(req);
      } else {
        CIUIC_EXPECT(tally, comms[rank],
                     ciuic_allreduce(s.send, s.recv, count, CIUIC_FLOAT32, CIUIC_SUM, comms[rank],
                                     s.stream));
      }
      scribble<<<grid_for(count), 256, 0, s.stream>>>(s.send, count);  // must not reach the result
      check_result<<<grid_for(count), 256, 0, s.stream>>>(s.recv, count, n, it, 0, s.errors);
      scribble<<<grid_for(count), 256, 0, s.stream>>>(s.recv,
                                                      count);  // the next result must replace it
    }
    for (auto& r : requests)
      if (r != nullptr) CIUIC_EXPECT(tally, comms[rank], ciuic_wait(&r));
    // Every rank's stream done before any pageable copy: such a copy waits holding the
    // context, and ranks that are threads share it (docs/gpu.md).
    GPU_OK(tally, cudaStreamSynchronize(s.stream));
    barrier.wait();
    unsigned long long errors = 0;
    GPU_OK(tally, cudaMemcpy(&errors, s.errors, sizeof errors, cudaMemcpyDeviceToHost));
    tally.check(errors == 0, "%s: rank %d: %llu wrong elements over %d iterations", label, rank,
                errors, iters);
    barrier.wait();
    cudaFree(s.send);
    cudaFree(s.recv);
    cudaFree(s.errors);
    cudaStreamDestroy(s.stream);
  });
  destroy_comms(comms);
  std::printf("  %s: done\n", label);
  std::fflush(stdout);
}

// Two communicators of the same ranks, each on its own stream, in flight together.
void two_comms(Tally& tally, int n, size_t count, int iters) {
  std::vector<ciuic_comm_t> a = make_comms(n, tally), b = make_comms(n, tally);
  if (a.empty() || b.empty()) return;
  Barrier barrier(n);
  testing::run_threads(n, [&](int rank) {
    cudaSetDevice(0);
    RankState s[2];
    for (RankState& st : s) {
      GPU_OK(tally, cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking));
      GPU_OK(tally, cudaMalloc(&st.send, count * sizeof(float)));
      GPU_OK(tally, cudaMalloc(&st.recv, count * sizeof(float)));
      GPU_OK(tally, cudaMalloc(&st.errors, sizeof(unsigned long long)));
      GPU_OK(tally, cudaMemsetAsync(st.errors, 0, sizeof(unsigned long long), st.stream));
    }
    barrier.wait();
    for (int it = 0; it < iters; ++it) {
      for (int k = 0; k < 2; ++k) {
        RankState& st = s[k];
        slow_fill<<<grid_for(count), 256, 0, st.stream>>>(st.send, count, rank, it + 100 * k,
                                                          50000);
        ciuic_comm_t c = k == 0 ? a[rank] : b[rank];
        CIUIC_EXPECT(tally, c,
                     ciuic_allreduce(st.send, st.recv, count, CIUIC_FLOAT32,
                                     k == 0 ? CIUIC_SUM : CIUIC_MAX, c, st.stream));
        check_result<<<grid_for(count), 256, 0, st.stream>>>(st.recv, count, n, it + 100 * k, k,
                                                             st.errors);
        scribble<<<grid_for(count), 256, 0, st.stream>>>(st.recv, count);
      }
    }
    for (int k = 0; k < 2; ++k) GPU_OK(tally, cudaStreamSynchronize(s[k].stream));
    barrier.wait();
    for (int k = 0; k < 2; ++k) {
      unsigned long long errors = 0;
      GPU_OK(tally, cudaMemcpyAsync(&errors, s[k].errors, sizeof errors, cudaMemcpyDeviceToHost,
                                    s[k].stream));
      GPU_OK(tally, cudaStreamSynchronize(s[k].stream));
      tally.check(errors == 0, "two communicators: rank %d, stream %d: %llu wrong elements", rank,
                  k, errors);
      cudaFree(s[k].send);
      cudaFree(s[k].recv);
      cudaFree(s[k].errors);
      cudaStreamDestroy(s[k].stream);
    }
  });
  destroy_comms(a);
  destroy_comms(b);
  std::printf("  two communicators on two streams: done\n");
}

// A non-blocking device call, a host call on the same communicator, then the wait: issue
// order holds (every rank issues both in the same order) and both results are right.
void mixed_with_host(Tally& tally, int n) {
  std::vector<ciuic_comm_t> comms = make_comms(n, tally);
  if (comms.empty()) return;
  Barrier barrier(n);
  const size_t count = 300001;
  testing::run_threads(n, [&](int rank) {
    cudaSetDevice(0);
    cudaStream_t stream;
    GPU_OK(tally, cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    std::vector<int32_t> host(count, rank + 1), host_out(count, 0), dev_out(count, 0);
    int32_t* dev = nullptr;
    GPU_OK(tally, cudaMalloc(&dev, count * sizeof(int32_t)));
    GPU_OK(tally, cudaMemcpy(dev, host.data(), count * sizeof(int32_t), cudaMemcpyHostToDevice));
    barrier.wait();
    for (int round = 0; round < 3; ++round) {
      ciuic_request_t req = nullptr;
      CIUIC_EXPECT(tally, comms[rank],
                   ciuic_iallreduce(CIUIC_IN_PLACE, dev, count, CIUIC_INT32, CIUIC_MAX, comms[rank],
                                    stream, &req));
      CIUIC_EXPECT(tally, comms[rank],
                   ciuic_allreduce(host.data(), host_out.data(), count, CIUIC_INT32, CIUIC_SUM,
                                   comms[rank], nullptr));
      CIUIC_EXPECT(tally, comms[rank], ciuic_wait(&req));
      barrier.wait();
      GPU_OK(tally,
             cudaMemcpy(dev_out.data(), dev, count * sizeof(int32_t), cudaMemcpyDeviceToHost));
      size_t bad_host = 0, bad_dev = 0;
      for (size_t i = 0; i < count; ++i) {
        bad_host += host_out[i] != n * (n + 1) / 2;
        bad_dev += dev_out[i] != n;
      }
      tally.check(bad_host == 0 && bad_dev == 0,
                  "device then host on one communicator, rank %d round %d: %zu host and %zu device "
                  "elements wrong",
                  rank, round, bad_host, bad_dev);
    }
    barrier.wait();
    cudaFree(dev);
    cudaStreamDestroy(stream);
  });
  destroy_comms(comms);
  std::printf("  device and host calls on one communicator: done\n");
}

// Managed memory, pinned host memory, and device memory with a NULL stream (the legacy
// default stream).
void memory_kinds(Tally& tally, int n) {
  std::vector<ciuic_comm_t> comms = make_comms(n, tally);
  if (comms.empty()) return;
  Barrier barrier(n);
  const size_t count = 100003;
  testing::run_threads(n, [&](int rank) {
    cudaSetDevice(0);
    cudaStream_t stream;
    GPU_OK(tally, cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    double *managed = nullptr, *pinned = nullptr, *dev = nullptr;
    GPU_OK(tally, cudaMallocManaged(&managed, count * sizeof(double)));
    GPU_OK(tally, cudaMallocHost(&pinned, count * sizeof(double)));
    GPU_OK(tally, cudaMalloc(&dev, count * sizeof(double)));
    for (size_t i = 0; i < count; ++i)
      managed[i] = pinned[i] = static_cast<double>(i % 13) * (rank + 1);
    barrier.wait();
    const double factor = n * (n + 1) / 2.0;
    auto bad_in = [&](const double* p) {
      size_t bad = 0;
      for (size_t i = 0; i < count; ++i) bad += p[i] != static_cast<double>(i % 13) * factor;
      return bad;
    };
    // managed, in place, on a stream
    CIUIC_EXPECT(
        tally, comms[rank],
        ciuic_allreduce(managed, managed, count, CIUIC_FLOAT64, CIUIC_SUM, comms[rank], stream));
    GPU_OK(tally, cudaStreamSynchronize(stream));
    tally.check(bad_in(managed) == 0, "managed memory on a stream, rank %d: %zu wrong", rank,
                bad_in(managed));
    // pinned host in, device out, on a stream
    CIUIC_EXPECT(
        tally, comms[rank],
        ciuic_allreduce(pinned, dev, count, CIUIC_FLOAT64, CIUIC_SUM, comms[rank], stream));
    std::vector<double> out(count);
    GPU_OK(tally, cudaStreamSynchronize(stream));
    barrier.wait();
    GPU_OK(tally, cudaMemcpy(out.data(), dev, count * sizeof(double), cudaMemcpyDeviceToHost));
    tally.check(bad_in(out.data()) == 0, "pinned host to device on a stream, rank %d: %zu wrong",
                rank, bad_in(out.data()));
    // Device buffers, NULL stream: the legacy default stream orders it. Ranks that are
    // threads of one process share that stream, so only one rank may use it (docs/gpu.md).
    if (n == 1) {
      GPU_OK(tally, cudaMemcpy(dev, pinned, count * sizeof(double), cudaMemcpyHostToDevice));
      CIUIC_EXPECT(tally, comms[rank],
                   ciuic_allreduce(CIUIC_IN_PLACE, dev, count, CIUIC_FLOAT64, CIUIC_SUM,
                                   comms[rank], nullptr));
      GPU_OK(tally, cudaMemcpy(out.data(), dev, count * sizeof(double),
                               cudaMemcpyDeviceToHost));  // legacy stream: after it
      tally.check(bad_in(out.data()) == 0, "device memory with a NULL stream, rank %d: %zu wrong",
                  rank, bad_in(out.data()));
    }
    barrier.wait();
    cudaFree(managed);
    cudaFreeHost(pinned);
    cudaFree(dev);
    cudaStreamDestroy(stream);
  });
  destroy_comms(comms);
  std::printf("  managed, pinned, legacy stream: done\n");
}

bool mentions(const char* message, const char* what) {
  return std::strstr(message, what) != nullptr;
}

// Refused calls return at once with the reason, and the communicator stays usable.
void errors(Tally& tally) {
  std::vector<ciuic_comm_t> comms = make_comms(1, tally);
  if (comms.empty()) return;
  ciuic_comm_t c = comms[0];
  cudaStream_t stream;
  GPU_OK(tally, cudaStreamCreate(&stream));
  float* dev = nullptr;
  GPU_OK(tally, cudaMalloc(&dev, 64 * sizeof(float)));
  std::vector<float> host(64, 1.0f);
  ciuic_result_t rc = ciuic_allreduce(host.data(), dev, 64, CIUIC_FLOAT32, CIUIC_SUM, c, nullptr);
  tally.check(rc == CIUIC_ERR_INVALID_ARGUMENT &&
                  mentions(ciuic_comm_get_last_error(c), "mixes host and CUDA memory"),
              "host send + device recv: %s: %s", ciuic_result_string(rc),
              ciuic_comm_get_last_error(c));
  rc = ciuic_allreduce(host.data(), host.data(), 64, CIUIC_FLOAT32, CIUIC_SUM, c, stream);
  tally.check(
      rc == CIUIC_ERR_UNSUPPORTED &&
          mentions(ciuic_comm_get_last_error(c), "with a stream, buffers must be CUDA memory"),
      "host buffers with a stream: %s: %s", ciuic_result_string(rc), ciuic_comm_get_last_error(c));
  {
    testing::ScopedConfig off("CIUIC_CUDA", "0");
    rc = ciuic_allreduce(dev, dev, 64, CIUIC_FLOAT32, CIUIC_SUM, c, stream);
    tally.check(rc == CIUIC_ERR_UNSUPPORTED &&
                    mentions(ciuic_comm_get_last_error(c), "CUDA support is switched off") &&
                    mentions(ciuic_comm_get_last_error(c), "device memory on GPU 0"),
                "CIUIC_CUDA=0: %s: %s", ciuic_result_string(rc), ciuic_comm_get_last_error(c));
  }
  rc = ciuic_group_end();
  tally.check(rc == CIUIC_ERR_INVALID_ARGUMENT &&
                  mentions(ciuic_comm_get_last_error(nullptr), "no group is open"),
              "ciuic_group_end without a group: %s: %s", ciuic_result_string(rc),
              ciuic_comm_get_last_error(nullptr));
  // Still usable: a good call works.
  GPU_OK(tally, cudaMemcpy(dev, host.data(), 64 * sizeof(float), cudaMemcpyHostToDevice));
  CIUIC_EXPECT(tally, c, ciuic_allreduce(dev, dev, 64, CIUIC_FLOAT32, CIUIC_SUM, c, stream));
  std::vector<float> out(64);
  GPU_OK(tally,
         cudaMemcpyAsync(out.data(), dev, 64 * sizeof(float), cudaMemcpyDeviceToHost, stream));
  GPU_OK(tally, cudaStreamSynchronize(stream));
  tally.check(out[0] == 1.0f && out[63] == 1.0f, "one-rank allreduce after refused calls: %g",
              out[0]);
  cudaFree(dev);
  cudaStreamDestroy(stream);
  destroy_comms(comms);
  std::printf("  refused calls: done\n");
}

// The stream is held by a kernel of ours: the operation cannot start. With a short
// deadline it fails naming the stream; with abort it fails at once; either way the stream
// is not left waiting on ciuic once our kernel lets go.
void stuck_stream(Tally& tally, bool by_abort) {
  testing::ScopedConfig timeout("CIUIC_TIMEOUT_MS", by_abort ? "60000" : "1500");
  std::vector<ciuic_comm_t> comms = make_comms(1, tally);
  if (comms.empty()) return;
  ciuic_comm_t c = comms[0];
  cudaStream_t stream;
  GPU_OK(tally, cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int* flag = nullptr;
  GPU_OK(tally, cudaHostAlloc(&flag, sizeof(int), cudaHostAllocMapped));
  *flag = 0;
  float* dev = nullptr;
  GPU_OK(tally, cudaMalloc(&dev, 1024 * sizeof(float)));
  hold_until<<<1, 1, 0, stream>>>(flag);
  CIUIC_EXPECT(tally, c, ciuic_allreduce(dev, dev, 1024, CIUIC_FLOAT32, CIUIC_SUM, c, stream));
  const auto t0 = std::chrono::steady_clock::now();
  if (by_abort) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ciuic_comm_abort(c);
  }
  // The next call reports the failure once the engine gave up.
  ciuic_result_t rc = CIUIC_SUCCESS;
  for (int i = 0; i < 100 && rc == CIUIC_SUCCESS; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    rc = ciuic_barrier(c, stream);
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const char* message = ciuic_comm_get_last_error(c);
  if (by_abort) {
    tally.check(rc == CIUIC_ERR_ABORTED && mentions(message, "aborted"),
                "abort of a stuck stream: %s: %s (after %.1f s)", ciuic_result_string(rc), message,
                waited);
  } else {
    tally.check(rc == CIUIC_ERR_TIMEOUT && mentions(message, "did not reach"),
                "stuck stream: %s: %s (after %.1f s)", ciuic_result_string(rc), message, waited);
  }
  *flag = 1;  // our kernel lets go; ciuic's waits were released when it gave up
  GPU_OK(tally, cudaStreamSynchronize(stream));
  cudaFree(dev);
  cudaFreeHost(flag);
  cudaStreamDestroy(stream);
  destroy_comms(comms);
  std::printf("  stuck stream (%s): done\n", by_abort ? "abort" : "deadline");
}

}  // namespace
}  // namespace ciuic::gputest

// With an argument, runs only the parts whose label contains it ("4 KB", "two", ...).
int main(int argc, char** argv) {
  using namespace ciuic::gputest;
  if (int s = skip_without_gpu("gpu_stream_test")) return s;
  const std::string only = argc > 1 ? argv[1] : "";
  auto want = [&](const std::string& label) {
    return only.empty() || label.find(only) != std::string::npos;
  };
  Tally tally;
  {
    ciuic::testing::ScopedConfig chunk("CIUIC_CUDA_CHUNK_BYTES", "1M");
    for (int n : {2, 4}) {
      const std::string label = std::to_string(n) + " ranks";
      for (const auto& [what, count, iters, nb] :
           {std::tuple<const char*, size_t, int, bool>{", 4 KB, blocking", 1000, 20, false},
            {", 12 MB (13 chunks, 4 slots)", 3 * 1024 * 1024 + 5, 6, false},
            {", 3 MB, non-blocking", 777777, 8, true}})
        if (want(label + what)) ordering(tally, n, count, iters, (label + what).c_str(), nb);
      if (want(label + ", two communicators")) two_comms(tally, n, 500001, 6);
    }
    {
      ciuic::testing::ScopedConfig wait("CIUIC_CUDA_STREAM_WAIT", "kernel");
      if (want("2 ranks, 12 MB, polling kernel"))
        ordering(tally, 2, 3 * 1024 * 1024 + 5, 4, "2 ranks, 12 MB, polling kernel");
      if (want("2 ranks, 4 KB, polling kernel"))
        ordering(tally, 2, 1000, 10, "2 ranks, 4 KB, polling kernel");
    }
  }
  if (want("device and host")) mixed_with_host(tally, 3);
  if (want("memory kinds")) {
    memory_kinds(tally, 2);
    memory_kinds(tally, 1);
  }
  if (want("refused")) errors(tally);
  if (want("stuck")) {
    stuck_stream(tally, false);
    stuck_stream(tally, true);
  }
  return tally.finish("gpu_stream_test");
}
