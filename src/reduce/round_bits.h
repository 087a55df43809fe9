// Integer rounding shared by the float16 (convert_bits.h) and 8-bit float (fp8_bits.h)
// conversions on the CPU and by the GPU's (src/cuda/device_math.cuh), so that every path
// rounds a value that lands below the format's normal range the same way.
//
// Internal linkage on purpose, like convert_bits.h: each CPU instruction set keeps its
// own copy.
#pragma once

#include <cstdint>

// For functions that the CPU kernels and the CUDA kernels both call. Always inlined: they
// sit in the kernels' inner loops.
#if defined(__CUDACC__)
#define CIUIC_HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#else
#define CIUIC_HOST_DEVICE_INLINE inline __attribute__((always_inline))
#endif

namespace ciuic::reduce {
namespace {

// The significand of the finite float whose bits are float_bits (implicit leading one
// included, sign ignored), divided by 2^shift and rounded to nearest with ties to even.
// 1 <= shift <= 31. A result of 1 << (24 - shift) is a carry into the next power of two,
// which is what a conversion to a subnormal wants: it is the smallest normal's encoding.
CIUIC_HOST_DEVICE_INLINE uint32_t shift_significand_round_even(uint32_t float_bits,
                                                               uint32_t shift) {
  const uint32_t significand = (float_bits & 0x7fffffu) | 0x800000u;
  uint32_t quotient = significand >> shift;
  const uint32_t remainder = significand & ((1u << shift) - 1);
  const uint32_t halfway = 1u << (shift - 1);
  if (remainder > halfway || (remainder == halfway && (quotient & 1u))) ++quotient;
  return quotient;
}

}  // namespace
}  // namespace ciuic::reduce
