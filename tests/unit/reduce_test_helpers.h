// Reference conversions for the reduction tests, written independently of src/reduce:
// values by double arithmetic, encodings by a nearest-value search over the encodings.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace ciuic::reduce::reference {

inline double ref_half_value(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0x1f) {
    return mantissa ? std::numeric_limits<double>::quiet_NaN()
                    : sign * std::numeric_limits<double>::infinity();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

inline double ref_bfloat16_value(uint16_t b) {
  const int sign = (b >> 15) ? -1 : 1;
  const int exponent = (b >> 7) & 0xff;
  const int mantissa = b & 0x7f;
  if (exponent == 0xff) {
    return mantissa ? std::numeric_limits<double>::quiet_NaN()
                    : sign * std::numeric_limits<double>::infinity();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -133);
  return sign * std::ldexp(128 + mantissa, exponent - 134);
}

// Nearest of two neighbours, ties to the even encoding.
inline uint16_t pick_nearest(double x, uint16_t low, double low_value, double high_value) {
  const double to_low = x - low_value, to_high = high_value - x;
  if (to_low < to_high) return low;
  if (to_high < to_low) return static_cast<uint16_t>(low + 1);
  return (low & 1) ? static_cast<uint16_t>(low + 1) : low;
}

// Rounds |x| to the nearest half by binary search over the (monotonic) positive encodings.
inline uint16_t ref_double_to_half(double x) {
  if (std::isnan(x)) return 0x7e00;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double magnitude = std::fabs(x);
  if (magnitude >= 65520.0) return sign | 0x7c00;  // halfway between 65504 and 2^16, and up
  uint16_t low = 0, high = 0x7bff;  // largest encoding whose value <= magnitude
  while (low < high) {
    const uint16_t mid = static_cast<uint16_t>((low + high + 1) / 2);
    if (ref_half_value(mid) <= magnitude) low = mid; else high = static_cast<uint16_t>(mid - 1);
  }
  const double next = low == 0x7bff ? 65536.0 : ref_half_value(static_cast<uint16_t>(low + 1));
  return sign | pick_nearest(magnitude, low, ref_half_value(low), next);
}

inline uint16_t ref_double_to_bfloat16(double x) {
  if (std::isnan(x)) return 0x7fc0;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double magnitude = std::fabs(x);
  if (std::isinf(magnitude)) return sign | 0x7f80;
  uint16_t low = 0, high = 0x7f7f;
  while (low < high) {
    const uint16_t mid = static_cast<uint16_t>((low + high + 1) / 2);
    if (ref_bfloat16_value(mid) <= magnitude) low = mid; else high = static_cast<uint16_t>(mid - 1);
  }
  const double next = low == 0x7f7f ? std::ldexp(1.0, 128) : ref_bfloat16_value(low + 1);
  return sign | pick_nearest(magnitude, low, ref_bfloat16_value(low), next);
}

// 8-bit floats: value of an encoding, and the nearest encoding to a double with
// saturation of finite overflow (reduce/fp8_bits.h says why).
struct Fp8Spec {
  int exponent_bits, mantissa_bits;
  bool has_infinity;
  uint8_t max_finite;  // positive encoding of the largest finite value
  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
};
inline constexpr Fp8Spec kE4m3{4, 3, false, 0x7e};
inline constexpr Fp8Spec kE5m2{5, 2, true, 0x7b};

inline double ref_fp8_value(const Fp8Spec& f, uint8_t v) {
  const int sign = (v & 0x80) ? -1 : 1;
  const int exponent = (v >> f.mantissa_bits) & ((1 << f.exponent_bits) - 1);
  const int mantissa = v & ((1 << f.mantissa_bits) - 1);
  if (f.has_infinity && exponent == (1 << f.exponent_bits) - 1)
    return mantissa ? std::numeric_limits<double>::quiet_NaN()
                    : sign * std::numeric_limits<double>::infinity();
  if (!f.has_infinity && (v & 0x7f) == 0x7f) return std::numeric_limits<double>::quiet_NaN();
  if (exponent == 0) return sign * std::ldexp(mantissa, 1 - f.bias() - f.mantissa_bits);
  return sign * std::ldexp((1 << f.mantissa_bits) + mantissa,
                           exponent - f.bias() - f.mantissa_bits);
}

// Nearest encoding, ties to even; beyond the largest finite value: that value (or
// infinity for an infinite input where the format has one). NaN: the format's NaN code
// with the sign (callers compare NaN-ness only).
inline uint8_t ref_double_to_fp8(const Fp8Spec& f, double x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  if (std::isnan(x)) return sign | 0x7f;
  const double magnitude = std::fabs(x);
  if (std::isinf(magnitude))
    return sign | (f.has_infinity ? static_cast<uint8_t>(f.max_finite + 1) : f.max_finite);
  int low = 0, high = f.max_finite;  // largest encoding whose value <= magnitude
  while (low < high) {
    const int mid = (low + high + 1) / 2;
    if (ref_fp8_value(f, static_cast<uint8_t>(mid)) <= magnitude) low = mid; else high = mid - 1;
  }
  if (low == f.max_finite) return sign | f.max_finite;
  const double to_low = magnitude - ref_fp8_value(f, static_cast<uint8_t>(low));
  const double to_high = ref_fp8_value(f, static_cast<uint8_t>(low + 1)) - magnitude;
  const int pick = to_low < to_high ? low : to_high < to_low ? low + 1 : (low & 1 ? low + 1 : low);
  return static_cast<uint8_t>(sign | pick);
}

}  // namespace ciuic::reduce::reference
