// The device side of the same-node CUDA IPC kernel (ipc_kernels.h): the meeting, the
// element loops and the kernel template. Each datatype's kernels are compiled in a
// translation unit of their own (cmake/cuda.cmake writes one from ipc_kernels_datatype.cu.in
// per datatype), so a build compiles the twelve in parallel instead of one file holding
// all 48 kernels; ipc_kernels.cu dispatches to them.
//
// The ranks' kernels meet block by block: block b of rank r writes the meeting's value into
// flags[b][r] of every peer's memory (after a system-scope fence, so that what the block
// wrote before is visible first) and waits until every peer's value sits in its own
// flags[b][peer]. Every rank launches the same grid for an operation, so when a rank's
// kernel has finished, every block of every peer has passed the same meetings.
#pragma once

#include <cuda_runtime.h>

#include "cuda/device_math.cuh"
#include "cuda/ipc_kernels.h"

namespace ciuic::cuda::ipc_detail {

// A launchable IPC kernel of one datatype and op.
using IpcKernel = void (*)(IpcLaunch);

// The kernel for `op` on datatype T (defined in T's translation unit); nullptr for an op
// that is not a ciuic_op_t.
template <ciuic_datatype_t T>
IpcKernel kernel_of(ciuic_op_t op);

// Everything below has internal linkage: each translation unit instantiates its own
// datatype's kernels and nothing else.
namespace {

__device__ __forceinline__ void store_release(uint64_t* p, uint64_t v) {
  asm volatile("st.release.sys.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t load_acquire(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ uint64_t now_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__host__ __device__ __forceinline__ size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }
__host__ __device__ __forceinline__ size_t round_up(size_t a, size_t b) { return div_up(a, b) * b; }

// Every rank's block blockIdx.x reaches `value`. False (for the whole block) once a waiting
// thread gave up: the deadline passed, the communicator was aborted, or an earlier kernel
// of this engine gave up (it recorded why in the host words).
__device__ bool meet(const IpcLaunch& a, uint64_t value, int* failed) {
  __syncthreads();
  const int peer = static_cast<int>(threadIdx.x);
  if (peer < a.nranks && peer != a.rank) {
    __threadfence_system();
    store_release(a.peer_flags[peer] + blockIdx.x * kIpcMaxRanks + a.rank, value);
    const uint64_t* mine = a.flags + blockIdx.x * kIpcMaxRanks + peer;
    uint64_t start = 0, start_cycles = 0;
    for (uint32_t spin = 1; load_acquire(mine) < value; ++spin) {
      if (spin % 1024 != 0) continue;
      const volatile IpcHostWords* host = a.host;
      uint32_t kind = 0;
      if (host->abort != 0 || host->error != 0) {
        kind = kIpcErrorAborted;
      } else {
        // The global timer; the multiprocessor's cycles too (at most 4 GHz), in case the
        // timer does not advance where the kernel runs.
        const uint64_t t = now_ns(), cycles = clock64();
        if (start_cycles == 0) {
          start = t;
          start_cycles = cycles;
        } else if (t - start > a.timeout_ns || cycles - start_cycles > 4 * a.timeout_ns) {
          kind = kIpcErrorTimeout;
        }
      }
      if (kind != 0) {
        atomicCAS_system(reinterpret_cast<unsigned int*>(&a.host->error), 0u,
                         kind << 8 | static_cast<uint32_t>(peer));
        *failed = 1;
        break;
      }
    }
  }
  __syncthreads();
  return *failed == 0;
}

template <class Codec, class Op>
struct Elements {
  using S = typename Codec::Storage;
  using C = typename Codec::Compute;
  static constexpr int kLanes = 16 / sizeof(S);
  // Vectors in flight per thread with more than two sources: about 16 registers of
  // accumulators whatever the datatype.
  static constexpr int kRegistersPerLane = sizeof(C) > 4 ? 2 : 1;
  static constexpr int kUnroll =
      kLanes * kRegistersPerLane >= 16 ? 1 : 16 / (kLanes * kRegistersPerLane);
  static constexpr int kCopyUnroll = 8;
  union Pack {
    uint4 bits;
    S lanes[kLanes];
  };

  static __device__ __forceinline__ S finish(C acc, int average_over) {
    const S v = Codec::store(acc);
    return average_over > 0 ? dev::average_of<Codec>(v, average_over) : v;
  }

  // dsts[d][i] = srcs[0][i] op srcs[1][i] ... for i < count (nsrc >= 2), divided by
  // average_over when it is not 0. The block's threads share the work.
  static __device__ void reduce(const char* const* srcs, int nsrc, char* const* dsts, int ndst,
                                size_t count, int average_over) {
    bool aligned = true;
    for (int s = 0; s < nsrc; ++s)
      aligned = aligned && reinterpret_cast<uintptr_t>(srcs[s]) % 16 == 0;
    for (int d = 0; d < ndst; ++d)
      aligned = aligned && reinterpret_cast<uintptr_t>(dsts[d]) % 16 == 0;
    const size_t vectors = aligned ? count / kLanes : 0;
    if (nsrc == 2) {  // two ranks: both sources' vectors in flight at once
      constexpr int kPairs = 8;
      const uint4* a = reinterpret_cast<const uint4*>(srcs[0]);
      const uint4* b = reinterpret_cast<const uint4*>(srcs[1]);
      for (size_t v0 = threadIdx.x; v0 < vectors; v0 += static_cast<size_t>(blockDim.x) * kPairs) {
        Pack x[kPairs], y[kPairs];
#pragma unroll
        for (int u = 0; u < kPairs; ++u) {
          const size_t v = v0 + static_cast<size_t>(u) * blockDim.x;
          if (v < vectors) {
            x[u].bits = a[v];
            y[u].bits = b[v];
          }
        }
#pragma unroll
        for (int u = 0; u < kPairs; ++u) {
          const size_t v = v0 + static_cast<size_t>(u) * blockDim.x;
          if (v >= vectors) continue;
#pragma unroll
          for (int e = 0; e < kLanes; ++e)
            x[u].lanes[e] = finish(
                Op::apply(Codec::load(x[u].lanes[e]), Codec::load(y[u].lanes[e])), average_over);
          for (int d = 0; d < ndst; ++d) reinterpret_cast<uint4*>(dsts[d])[v] = x[u].bits;
        }
      }
    }
    const size_t step = static_cast<size_t>(blockDim.x) * kUnroll;
    for (size_t v0 = threadIdx.x; nsrc != 2 && v0 < vectors; v0 += step) {
      C acc[kUnroll][kLanes];
      Pack p[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const size_t v = v0 + static_cast<size_t>(u) * blockDim.x;
        if (v < vectors) p[u].bits = reinterpret_cast<const uint4*>(srcs[0])[v];
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int e = 0; e < kLanes; ++e) acc[u][e] = Codec::load(p[u].lanes[e]);
      for (int s = 1; s < nsrc; ++s) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const size_t v = v0 + static_cast<size_t>(u) * blockDim.x;
          if (v < vectors) p[u].bits = reinterpret_cast<const uint4*>(srcs[s])[v];
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
#pragma unroll
          for (int e = 0; e < kLanes; ++e)
            acc[u][e] = Op::apply(acc[u][e], Codec::load(p[u].lanes[e]));
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const size_t v = v0 + static_cast<size_t>(u) * blockDim.x;
        if (v >= vectors) continue;
        Pack o;
#pragma unroll
        for (int e = 0; e < kLanes; ++e) o.lanes[e] = finish(acc[u][e], average_over);
        for (int d = 0; d < ndst; ++d) reinterpret_cast<uint4*>(dsts[d])[v] = o.bits;
      }
    }
    for (size_t i = vectors * kLanes + threadIdx.x; i < count; i += blockDim.x) {
      C acc = Codec::load(reinterpret_cast<const S*>(srcs[0])[i]);
      for (int s = 1; s < nsrc; ++s)
        acc = Op::apply(acc, Codec::load(reinterpret_cast<const S*>(srcs[s])[i]));
      const S v = finish(acc, average_over);
      for (int d = 0; d < ndst; ++d) reinterpret_cast<S*>(dsts[d])[i] = v;
    }
  }

  // dsts[d][i] = src[i] for i < count, bit for bit.
  static __device__ void copy(const char* src, char* const* dsts, int ndst, size_t count) {
    bool aligned = reinterpret_cast<uintptr_t>(src) % 16 == 0;
    for (int d = 0; d < ndst; ++d)
      aligned = aligned && reinterpret_cast<uintptr_t>(dsts[d]) % 16 == 0;
    const size_t vectors = aligned ? count / kLanes : 0;
    const size_t step = static_cast<size_t>(blockDim.x) * kCopyUnroll;
    for (size_t v0 = threadIdx.x; v0 < vectors; v0 += step) {
      uint4 p[kCopyUnroll];
#pragma unroll
      for (int u = 0; u < kCopyUnroll; ++u) {
        const size_t v = v0 + static_cast<size_t>(u) * blockDim.x;
        if (v < vectors) p[u] = reinterpret_cast<const uint4*>(src)[v];
      }
#pragma unroll
      for (int u = 0; u < kCopyUnroll; ++u) {
        const size_t v = v0 + static_cast<size_t>(u) * blockDim.x;
        if (v >= vectors) continue;
        for (int d = 0; d < ndst; ++d) reinterpret_cast<uint4*>(dsts[d])[v] = p[u];
      }
    }
    for (size_t i = vectors * kLanes + threadIdx.x; i < count; i += blockDim.x) {
      const S v = reinterpret_cast<const S*>(src)[i];
      for (int d = 0; d < ndst; ++d) reinterpret_cast<S*>(dsts[d])[i] = v;
    }
  }
};

// This block's part [lo, lo + len) of `length` elements split over the grid, in pieces
// that are multiples of kIpcAlign (so the same element always falls to the same block).
__device__ __forceinline__ void block_part(size_t length, size_t per_block, size_t* lo,
                                           size_t* len) {
  const size_t start = min(length, static_cast<size_t>(blockIdx.x) * per_block);
  *lo = start;
  *len = min(length, start + per_block) - start;
}

template <class Codec, class Op>
__device__ void run_windowed(const IpcLaunch& a, int* failed) {
  using E = Elements<Codec, Op>;
  constexpr size_t elem = sizeof(typename Codec::Storage);
  const int n = a.nranks, r = a.rank;
  const size_t count = a.count, cc = a.chunk;
  const int rows = a.collective == IpcCollective::kReduceScatter ? n : 1;
  const size_t chunks = div_up(count, cc);
  const size_t per_block = round_up(div_up(cc, gridDim.x), kIpcAlign);
  const int average_over = a.op == CIUIC_AVG ? n : 0;
  const size_t parity = (a.base >> 32) & 1;
  const char* in = static_cast<const char*>(a.in);
  char* out = static_cast<char*>(a.out);
  const char* srcs[kIpcMaxRanks];
  char* dsts[1];
  for (size_t c = 0; c < chunks; ++c) {
    const size_t first = c * cc;
    const size_t cols = min(cc, count - first);
    size_t lo, len;
    block_part(cols, per_block, &lo, &len);
    const size_t slot = (parity * 2 + (c & 1)) * a.slot_bytes;
    if (in != nullptr && len > 0) {
      for (int row = 0; row < rows; ++row) {
        dsts[0] = a.windows[r] + slot + (row * cc + lo) * elem;
        E::copy(in + (row * count + first + lo) * elem, dsts, 1, len);
      }
    }
    if (!meet(a, a.base + c + 1, failed)) return;
    if (len == 0 || out == nullptr) continue;
    switch (a.collective) {
      case IpcCollective::kAllreduce:
      case IpcCollective::kReduce:
      case IpcCollective::kReduceScatter: {
        const size_t row = a.collective == IpcCollective::kReduceScatter ? r : 0;
        for (int q = 0; q < n; ++q) srcs[q] = a.windows[q] + slot + (row * cc + lo) * elem;
        dsts[0] = out + (first + lo) * elem;
        E::reduce(srcs, n, dsts, 1, len, average_over);
        break;
      }
      case IpcCollective::kAllgather:
        for (int q = 0; q < n; ++q) {
          dsts[0] = out + (q * count + first + lo) * elem;
          E::copy(a.windows[q] + slot + lo * elem, dsts, 1, len);
        }
        break;
      case IpcCollective::kBroadcast:
        dsts[0] = out + (first + lo) * elem;
        E::copy(a.windows[a.root] + slot + lo * elem, dsts, 1, len);
        break;
    }
  }
  // Every rank has read this rank's windows: once the kernel ends, nothing of this
  // operation touches them (the next operation may refill them, the engine may free them).
  meet(a, a.base + chunks + 1, failed);
}

template <class Codec, class Op>
__device__ void run_direct(const IpcLaunch& a, const uint64_t* ins, const uint64_t* outs,
                           int* failed) {
  using E = Elements<Codec, Op>;
  constexpr size_t elem = sizeof(typename Codec::Storage);
  if (!meet(a, a.base + 1, failed)) return;
  const int n = a.nranks, r = a.rank;
  const size_t count = a.count;
  const int average_over = a.op == CIUIC_AVG ? n : 0;
  auto in_of = [&](int q, size_t at) { return reinterpret_cast<const char*>(ins[q]) + at * elem; };
  auto out_of = [&](int q, size_t at) { return reinterpret_cast<char*>(outs[q]) + at * elem; };
  const char* srcs[kIpcMaxRanks];
  char* dsts[kIpcMaxRanks];
  int ndst = 0;
  // Rank r's share: slice r of the count (all-reduce, reduce, broadcast), or its own block.
  const size_t slice = round_up(div_up(count, n), kIpcAlign);
  const size_t s0 = min(count, r * slice), s1 = min(count, s0 + slice);
  const bool sliced =
      a.collective != IpcCollective::kReduceScatter && a.collective != IpcCollective::kAllgather;
  const size_t length = sliced ? s1 - s0 : count;
  size_t lo, len;
  block_part(length, round_up(div_up(sliced ? slice : count, gridDim.x), kIpcAlign), &lo, &len);
  if (len > 0) {
    switch (a.collective) {
      case IpcCollective::kAllreduce:
      case IpcCollective::kReduce:
        for (int q = 0; q < n; ++q) srcs[q] = in_of(q, s0 + lo);
        if (a.collective == IpcCollective::kReduce) {
          dsts[ndst++] = out_of(a.root, s0 + lo);
        } else {
          for (int q = 0; q < n; ++q) dsts[ndst++] = out_of(q, s0 + lo);
        }
        E::reduce(srcs, n, dsts, ndst, len, average_over);
        break;
      case IpcCollective::kReduceScatter:
        for (int q = 0; q < n; ++q) srcs[q] = in_of(q, r * count + lo);
        dsts[ndst++] = out_of(r, lo);
        E::reduce(srcs, n, dsts, ndst, len, average_over);
        break;
      case IpcCollective::kAllgather:
      case IpcCollective::kBroadcast: {
        const int from = a.collective == IpcCollective::kAllgather ? r : a.root;
        const size_t at = a.collective == IpcCollective::kAllgather ? lo : s0 + lo;
        const char* src = in_of(from, at);
        for (int q = 0; q < n; ++q) {
          if (outs[q] == 0) continue;
          char* d = out_of(q, a.collective == IpcCollective::kAllgather ? r * count + lo : at);
          if (d != src) dsts[ndst++] = d;  // an in-place rank's own block is already there
        }
        E::copy(src, dsts, ndst, len);
        break;
      }
    }
  }
  meet(a, a.base + 2, failed);
}

template <class Codec, class Op>
__global__ void __launch_bounds__(kIpcThreads, 1) ipc_kernel(const IpcLaunch a) {
  __shared__ int failed;
  __shared__ uint32_t mode;
  __shared__ uint64_t pointers[2 * kIpcMaxRanks];
  const volatile IpcDescriptor* d = a.descriptor;
  if (threadIdx.x == 0) {
    failed = 0;
    mode = d != nullptr ? d->mode : static_cast<uint32_t>(kIpcModeWindowed);
  }
  if (d != nullptr && threadIdx.x < 2 * kIpcMaxRanks) {
    const int q = static_cast<int>(threadIdx.x) % kIpcMaxRanks;
    pointers[threadIdx.x] = threadIdx.x < kIpcMaxRanks ? d->in[q] : d->out[q];
  }
  __syncthreads();
  if (mode == kIpcModeWindowed)
    run_windowed<Codec, Op>(a, &failed);
  else if (mode == kIpcModeDirect)
    run_direct<Codec, Op>(a, pointers, pointers + kIpcMaxRanks, &failed);
}


template <class Codec>
IpcKernel kernel_for_op(ciuic_op_t op) {
  switch (op) {
    case CIUIC_SUM:
    case CIUIC_AVG:
      return ipc_kernel<Codec, dev::Sum>;
    case CIUIC_PROD:
      return ipc_kernel<Codec, dev::Prod>;
    case CIUIC_MIN:
      return ipc_kernel<Codec, dev::Min>;
    case CIUIC_MAX:
      return ipc_kernel<Codec, dev::Max>;
    default:
      return nullptr;
  }
}

}  // namespace
}  // namespace ciuic::cuda::ipc_detail
