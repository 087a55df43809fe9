// Bit-exact float16 / bfloat16 <-> float conversions, round to nearest even, written as
// integer code so the result never depends on the FPU's rounding mode or on F16C.
// Internal linkage on purpose: kernels_*.cc include this after `#pragma GCC target`, and
// each ISA must keep its own copy (a shared inline copy could be the AVX-512 one).
#pragma once

#include <cstdint>

#include "reduce/round_bits.h"

namespace ciuic::reduce {
namespace {

inline __attribute__((always_inline)) float bits_to_float(uint32_t bits) {
  return __builtin_bit_cast(float, bits);
}
inline __attribute__((always_inline)) uint32_t float_to_bits(float value) {
  return __builtin_bit_cast(uint32_t, value);
}

inline __attribute__((always_inline)) float soft_half_to_float(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));  // inf/NaN
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24 is exact in float (at most 10 significant bits).
  return bits_to_float(sign | float_to_bits(static_cast<float>(mantissa) * 0x1p-24f));
}

inline __attribute__((always_inline)) uint16_t soft_float_to_half(float value) {
  const uint32_t bits = float_to_bits(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) {  // NaN: keep the top payload bits, force the quiet bit
    return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  }
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  if (magnitude >= 0x38800000u) {  // normal half: drop 13 bits, a carry may bump the exponent
    const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  // Subnormal half (or zero): round(|value| * 2^24) with ties to even. The result 0x400
  // (rounded up to the smallest normal) is the right encoding too.
  const uint32_t float_exponent = magnitude >> 23;
  const uint32_t shift = 126 - float_exponent;  // >= 14 here
  if (shift > 24) return sign;                  // below half the smallest subnormal
  return static_cast<uint16_t>(sign | shift_significand_round_even(magnitude, shift));
}

inline __attribute__((always_inline)) float soft_bfloat16_to_float(uint16_t value) {
  return bits_to_float(static_cast<uint32_t>(value) << 16);
}

inline __attribute__((always_inline)) uint16_t soft_float_to_bfloat16(float value) {
  const uint32_t bits = float_to_bits(value);
  // Written as a select so the loop vectorises; NaN gets its quiet bit so that dropping the
  // low payload bits can never turn it into infinity.
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (bits >> 16) | 0x40u;
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(is_nan ? quiet_nan : rounded);
}

}  // namespace
}  // namespace ciuic::reduce
