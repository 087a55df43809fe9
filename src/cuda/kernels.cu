// Reduction kernels for every datatype x op, and the stream-holding kernel. The
// arithmetic (datatypes, ops) is device_math.cuh's.
#include <cuda_runtime.h>

#include <string>
#include <type_traits>

#include "cuda/device_math.cuh"
#include "cuda/kernels.h"

namespace ciuic::cuda {
namespace {

using dev::Bfloat16;
using dev::Float8;
using dev::Half;
using dev::Max;
using dev::Min;
using dev::Plain;
using dev::Prod;
using dev::Sum;

struct Sources {
  const void* p[kMaxReduceSources];
  int n;
};

constexpr int kThreads = 256;

// Each thread takes 16 bytes of every source at once where all pointers allow it.
template <class Codec, class Op>
__global__ void __launch_bounds__(kThreads)
    reduce_kernel(Sources srcs, void* dst, size_t count, size_t vectors) {
  using S = typename Codec::Storage;
  using C = typename Codec::Compute;
  constexpr int kLanes = 16 / sizeof(S);
  union Pack {
    uint4 bits;
    S lanes[kLanes];
  };
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t first = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (size_t v = first; v < vectors; v += stride) {
    Pack in;
    in.bits = static_cast<const uint4*>(srcs.p[0])[v];
    C acc[kLanes];
#pragma unroll
    for (int e = 0; e < kLanes; ++e) acc[e] = Codec::load(in.lanes[e]);
    for (int s = 1; s < srcs.n; ++s) {
      in.bits = static_cast<const uint4*>(srcs.p[s])[v];
#pragma unroll
      for (int e = 0; e < kLanes; ++e) acc[e] = Op::apply(acc[e], Codec::load(in.lanes[e]));
    }
    Pack out;
#pragma unroll
    for (int e = 0; e < kLanes; ++e) out.lanes[e] = Codec::store(acc[e]);
    static_cast<uint4*>(dst)[v] = out.bits;
  }
  for (size_t i = vectors * kLanes + first; i < count; i += stride) {
    C acc = Codec::load(static_cast<const S*>(srcs.p[0])[i]);
    for (int s = 1; s < srcs.n; ++s)
      acc = Op::apply(acc, Codec::load(static_cast<const S*>(srcs.p[s])[i]));
    static_cast<S*>(dst)[i] = Codec::store(acc);
  }
}

template <class Codec>
__global__ void __launch_bounds__(kThreads) average_kernel(void* data, size_t count, int nranks) {
  using S = typename Codec::Storage;
  S* d = static_cast<S*>(data);
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride)
    d[i] = dev::average_of<Codec>(d[i], nranks);
}

__global__ void wait_value_kernel(const volatile uint32_t* flag, uint32_t value) {
  while (static_cast<int32_t>(*flag - value) < 0) __nanosleep(500);
}

unsigned blocks_for(size_t items) {
  const size_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 8192 ? 8192 : blocks));
}

Status launched(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::Ok();
  return internal_error(std::string(what) + ": kernel launch failed: " + cudaGetErrorName(e) +
                        " (" + cudaGetErrorString(e) + ")");
}

template <class Codec, class Op>
Status run_reduce(void* dst, const Sources& srcs, size_t count, cudaStream_t stream) {
  using S = typename Codec::Storage;
  constexpr size_t kLanes = 16 / sizeof(S);
  bool aligned = reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  for (int s = 0; s < srcs.n; ++s)
    aligned = aligned && reinterpret_cast<uintptr_t>(srcs.p[s]) % 16 == 0;
  const size_t vectors = aligned ? count / kLanes : 0;
  const size_t items = vectors + (count - vectors * kLanes);
  reduce_kernel<Codec, Op><<<blocks_for(items), kThreads, 0, stream>>>(srcs, dst, count, vectors);
  return launched("reduce");
}

template <class Codec>
Status run_reduce_op(void* dst, const Sources& srcs, size_t count, ciuic_op_t op,
                     cudaStream_t stream) {
  switch (op) {
    case CIUIC_SUM:
    case CIUIC_AVG:
      return run_reduce<Codec, Sum>(dst, srcs, count, stream);
    case CIUIC_PROD:
      return run_reduce<Codec, Prod>(dst, srcs, count, stream);
    case CIUIC_MIN:
      return run_reduce<Codec, Min>(dst, srcs, count, stream);
    case CIUIC_MAX:
      return run_reduce<Codec, Max>(dst, srcs, count, stream);
    default:
      break;
  }
  return invalid_argument("reduce: op " + std::to_string(static_cast<int>(op)) +
                          " is not a ciuic_op_t");
}

template <class Fn>
Status by_datatype(ciuic_datatype_t t, Fn&& fn) {
  switch (t) {
    case CIUIC_INT8:
      return fn(Plain<int8_t>{});
    case CIUIC_UINT8:
      return fn(Plain<uint8_t>{});
    case CIUIC_INT32:
      return fn(Plain<int32_t>{});
    case CIUIC_UINT32:
      return fn(Plain<uint32_t>{});
    case CIUIC_INT64:
      return fn(Plain<int64_t>{});
    case CIUIC_UINT64:
      return fn(Plain<uint64_t>{});
    case CIUIC_FLOAT16:
      return fn(Half{});
    case CIUIC_BFLOAT16:
      return fn(Bfloat16{});
    case CIUIC_FLOAT32:
      return fn(Plain<float>{});
    case CIUIC_FLOAT64:
      return fn(Plain<double>{});
    case CIUIC_FLOAT8_E4M3:
      return fn(Float8<fp8::E4m3>{});
    case CIUIC_FLOAT8_E5M2:
      return fn(Float8<fp8::E5m2>{});
    default:
      break;
  }
  return invalid_argument("datatype " + std::to_string(static_cast<int>(t)) +
                          " is not a ciuic_datatype_t");
}

}  // namespace

Status launch_reduce(void* dst, const void* const* srcs, int nsrc, size_t count,
                     ciuic_datatype_t datatype, ciuic_op_t op, cudaStream_t stream) {
  if (nsrc < 1 || nsrc > kMaxReduceSources)
    return invalid_argument("reduce: " + std::to_string(nsrc) + " sources (1 to " +
                            std::to_string(kMaxReduceSources) + ")");
  if (count == 0) return Status::Ok();
  Sources s{};
  s.n = nsrc;
  for (int i = 0; i < nsrc; ++i) s.p[i] = srcs[i];
  return by_datatype(datatype, [&](auto codec) {
    return run_reduce_op<decltype(codec)>(dst, s, count, op, stream);
  });
}

Status launch_average(void* data, size_t count, ciuic_datatype_t datatype, int nranks,
                      cudaStream_t stream) {
  if (count == 0 || nranks == 1) return Status::Ok();
  if (nranks < 1) return invalid_argument("average over " + std::to_string(nranks) + " ranks");
  return by_datatype(datatype, [&](auto codec) {
    average_kernel<decltype(codec)>
        <<<blocks_for(count), kThreads, 0, stream>>>(data, count, nranks);
    return launched("average");
  });
}

Status launch_wait_value(cudaStream_t stream, const volatile uint32_t* flag, uint32_t value) {
  wait_value_kernel<<<1, 1, 0, stream>>>(flag, value);
  return launched("stream wait");
}

}  // namespace ciuic::cuda
