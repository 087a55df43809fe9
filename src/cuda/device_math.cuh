// Device-side arithmetic shared by ciuic's kernels (kernels.cu, ipc_kernels.cu): the
// datatypes' storage and compute types and the reduction ops, as src/reduce defines them.
//
// The conversions mirror src/reduce/convert_bits.h in integer code rather than using the
// hardware's, so that NaN payloads and subnormals come out bit for bit as on the CPU; the
// rounding to a float16 subnormal is the CPU's own (reduce/round_bits.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "ciuic/ciuic.h"
#include "reduce/fp8_bits.h"
#include "reduce/round_bits.h"

namespace ciuic::cuda::dev {

__device__ __forceinline__ float half_bits_to_float(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return __uint_as_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  return __uint_as_float(sign | __float_as_uint(static_cast<float>(mantissa) * 0x1p-24f));
}

__device__ __forceinline__ uint16_t float_to_half_bits(float value) {
  const uint32_t bits = __float_as_uint(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u)
    return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (magnitude >= 0x38800000u) {
    const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  const uint32_t shift = 126 - (magnitude >> 23);
  if (shift > 24) return sign;
  return static_cast<uint16_t>(sign | reduce::shift_significand_round_even(magnitude, shift));
}

__device__ __forceinline__ float bfloat16_bits_to_float(uint16_t value) {
  return __uint_as_float(static_cast<uint32_t>(value) << 16);
}

__device__ __forceinline__ uint16_t float_to_bfloat16_bits(float value) {
  const uint32_t bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Storage type, compute type, and the conversions between them.
template <class T>
struct Plain {
  using Storage = T;
  using Compute = T;
  static __device__ __forceinline__ T load(T v) { return v; }
  static __device__ __forceinline__ T store(T v) { return v; }
};
struct Half {
  using Storage = uint16_t;
  using Compute = float;
  static __device__ __forceinline__ float load(uint16_t v) { return half_bits_to_float(v); }
  static __device__ __forceinline__ uint16_t store(float v) { return float_to_half_bits(v); }
};
struct Bfloat16 {
  using Storage = uint16_t;
  using Compute = float;
  static __device__ __forceinline__ float load(uint16_t v) { return bfloat16_bits_to_float(v); }
  static __device__ __forceinline__ uint16_t store(float v) { return float_to_bfloat16_bits(v); }
};
// 8-bit floats: the CPU's own conversions (reduce/fp8_bits.h, host and device alike).
template <class Format>
struct Float8 {
  using Storage = uint8_t;
  using Compute = float;
  static __device__ __forceinline__ float load(uint8_t v) { return Format::to_float(v); }
  static __device__ __forceinline__ uint8_t store(float v) { return Format::from_float(v); }
};

// The ops as src/reduce/kernels_impl.h defines them: integers wrap, MIN/MAX propagate NaN.
struct Sum {
  template <class T>
  static __device__ __forceinline__ T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return a + b;
    }
  }
};
struct Prod {
  template <class T>
  static __device__ __forceinline__ T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
    } else {
      return a * b;
    }
  }
};
struct Min {
  template <class T>
  static __device__ __forceinline__ T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>)
      return a < b ? a : b;
    else
      return ((a < b) | (a != a)) ? a : b;
  }
};
struct Max {
  template <class T>
  static __device__ __forceinline__ T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>)
      return a > b ? a : b;
    else
      return ((a > b) | (a != a)) ? a : b;
  }
};

// dst = dst / nranks after a sum, as reduce::finish_average does it (the sum is rounded to
// the storage type first, then divided).
template <class Codec>
__device__ __forceinline__ typename Codec::Storage average_of(typename Codec::Storage sum,
                                                              int nranks) {
  using S = typename Codec::Storage;
  using C = typename Codec::Compute;
  if constexpr (std::is_integral_v<C>) {
    using Divisor = std::conditional_t<(sizeof(C) < sizeof(int)), int, C>;
    return static_cast<S>(sum / static_cast<Divisor>(nranks));
  } else {
    return Codec::store(Codec::load(sum) / static_cast<C>(nranks));
  }
}

// fn(Codec{}) for a datatype; false for a value that is not a ciuic_datatype_t.
template <class Fn>
__host__ bool with_codec(ciuic_datatype_t t, Fn&& fn) {
  switch (t) {
    case CIUIC_INT8:
      fn(Plain<int8_t>{});
      return true;
    case CIUIC_UINT8:
      fn(Plain<uint8_t>{});
      return true;
    case CIUIC_INT32:
      fn(Plain<int32_t>{});
      return true;
    case CIUIC_UINT32:
      fn(Plain<uint32_t>{});
      return true;
    case CIUIC_INT64:
      fn(Plain<int64_t>{});
      return true;
    case CIUIC_UINT64:
      fn(Plain<uint64_t>{});
      return true;
    case CIUIC_FLOAT16:
      fn(Half{});
      return true;
    case CIUIC_BFLOAT16:
      fn(Bfloat16{});
      return true;
    case CIUIC_FLOAT32:
      fn(Plain<float>{});
      return true;
    case CIUIC_FLOAT64:
      fn(Plain<double>{});
      return true;
    case CIUIC_FLOAT8_E4M3:
      fn(Float8<fp8::E4m3>{});
      return true;
    case CIUIC_FLOAT8_E5M2:
      fn(Float8<fp8::E5m2>{});
      return true;
    default:
      return false;
  }
}

}  // namespace ciuic::cuda::dev
