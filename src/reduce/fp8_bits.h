// Bit-exact 8-bit float <-> float conversions, written once for the CPU kernels
// (src/reduce) and the GPU kernels (src/cuda/device_math.cuh), so both round alike.
//
//   e4m3 (OCP FP8 E4M3): sign, 4 exponent bits (bias 7), 3 mantissa bits. No infinities;
//        S.1111.111 is NaN; the largest finite value is 448; subnormals down to 2^-9.
//   e5m2 (OCP FP8 E5M2): sign, 5 exponent bits (bias 15), 2 mantissa bits, IEEE-like:
//        S.11111.00 is infinity, S.11111.xx (xx != 0) NaN; largest finite 57344.
//
// float -> fp8 rounds to nearest even. A finite value beyond the largest finite one
// saturates to it (as CUDA's __NV_SATFINITE does: training code wants a clipped gradient,
// not an infinity or a NaN); infinity stays infinity in e5m2 and saturates in e4m3, which
// has none; NaN gives the format's NaN with the input's sign.
//
// Internal linkage on purpose, like convert_bits.h: each CPU instruction set keeps its
// own copy.
#pragma once

#include <cstdint>
#include <cstring>

#include "reduce/round_bits.h"

namespace ciuic::fp8 {
namespace {

CIUIC_HOST_DEVICE_INLINE uint32_t bits_of(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  return bits;
}

CIUIC_HOST_DEVICE_INLINE float float_of(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

// The format's constants, from its exponent and mantissa widths.
template <int kExponentBits, int kMantissaBits, bool kHasInfinity>
struct Format {
  static constexpr int kBias = (1 << (kExponentBits - 1)) - 1;
  static constexpr uint32_t kMantissaMask = (1u << kMantissaBits) - 1;
  static constexpr uint32_t kExponentMask = (1u << kExponentBits) - 1;
  // e4m3: 0x7e (448); e5m2: 0x7b (57344), the code below the infinity 0x7c.
  static constexpr uint8_t kMaxFinite =
      kHasInfinity ? static_cast<uint8_t>(((kExponentMask - 1) << kMantissaBits) | kMantissaMask)
                   : static_cast<uint8_t>((kExponentMask << kMantissaBits) | (kMantissaMask - 1));
  static constexpr uint8_t kInfinity = static_cast<uint8_t>(kExponentMask << kMantissaBits);
  // e4m3: the only NaN, 0x7f; e5m2: the quiet NaN 0x7e.
  static constexpr uint8_t kNan = kHasInfinity
                                      ? static_cast<uint8_t>(kInfinity | (1u << (kMantissaBits - 1)))
                                      : static_cast<uint8_t>(0x7f);

  static CIUIC_HOST_DEVICE_INLINE float to_float(uint8_t value) {
    const uint32_t sign = static_cast<uint32_t>(value & 0x80u) << 24;
    const uint32_t exponent = (value >> kMantissaBits) & kExponentMask;
    const uint32_t mantissa = value & kMantissaMask;
    if (kHasInfinity && exponent == kExponentMask)
      return float_of(sign | 0x7f800000u | (mantissa << (23 - kMantissaBits)) |
                      (mantissa != 0 ? 0x400000u : 0u));
    if (!kHasInfinity && (value & 0x7fu) == 0x7fu) return float_of(sign | 0x7fc00000u);
    if (exponent != 0)
      return float_of(sign | ((exponent - kBias + 127) << 23) | (mantissa << (23 - kMantissaBits)));
    // Zero or subnormal: mantissa * 2^(1 - bias - mantissa bits), exact in float.
    const float magnitude =
        static_cast<float>(mantissa) * float_of(static_cast<uint32_t>(127 + 1 - kBias - kMantissaBits) << 23);
    return float_of(sign | bits_of(magnitude));
  }

  static CIUIC_HOST_DEVICE_INLINE uint8_t from_float(float value) {
    const uint32_t bits = bits_of(value);
    const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return static_cast<uint8_t>(sign | kNan);
    if (magnitude == 0x7f800000u)
      return static_cast<uint8_t>(sign | (kHasInfinity ? kInfinity : kMaxFinite));
    const int exponent = static_cast<int>(magnitude >> 23) - 127;  // float subnormals: -127
    if (exponent >= 1 - kBias) {
      // Normal: drop the low mantissa bits with ties to even (a carry may bump the
      // exponent), then rebias. Anything past the largest finite code saturates.
      constexpr int kDrop = 23 - kMantissaBits;
      const uint32_t rounded =
          magnitude + ((1u << (kDrop - 1)) - 1) + ((magnitude >> kDrop) & 1u);
      const uint32_t code = (rounded >> kDrop) - (static_cast<uint32_t>(127 - kBias) << kMantissaBits);
      return static_cast<uint8_t>(sign | (code > kMaxFinite ? kMaxFinite : code));
    }
    // Subnormal (or zero): round(|value| / 2^(1 - bias - mantissa bits)) with ties to even;
    // the result 1 << kMantissaBits, the smallest normal, is the right encoding too.
    const int shift = 23 + (1 - kBias - kMantissaBits) - exponent;
    if (shift > 24 || exponent == -127) return sign;  // below half the smallest subnormal
    return static_cast<uint8_t>(
        sign | reduce::shift_significand_round_even(magnitude, static_cast<uint32_t>(shift)));
  }
};

using E4m3 = Format<4, 3, false>;
using E5m2 = Format<5, 2, true>;

}  // namespace
}  // namespace ciuic::fp8
