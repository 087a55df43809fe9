// float16, bfloat16 and the 8-bit floats to and from float (src/reduce/convert_bits.h,
// fp8_bits.h and the rounding they share, round_bits.h): every encoding, every tie between
// neighbours, and random floats, against the reference conversions of reduce_test_helpers.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <utility>

#include "reduce/reduce.h"
#include "unit/reduce_test_helpers.h"

namespace ciuic::reduce {
namespace {

using namespace reference;

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---- conversions: exhaustive over all 65536 encodings ----

TEST(ReduceConvert, HalfToFloatMatchesReferenceForAllEncodings) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = half_to_float(static_cast<uint16_t>(h));
    const double want = ref_half_value(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
      EXPECT_EQ(bits_of(got) & 0x807fffffu, ((h & 0x8000u) << 16) | ((h & 0x3ffu) << 13))
          << "sign and payload kept for " << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000u) != 0) << std::hex << h;
    }
  }
}

TEST(ReduceConvert, BfloatToFloatMatchesReferenceForAllEncodings) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float got = bfloat16_to_float(static_cast<uint16_t>(b));
    const double want = ref_bfloat16_value(static_cast<uint16_t>(b));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << b;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << std::hex << b;
      ASSERT_EQ(std::signbit(got), (b & 0x8000u) != 0) << std::hex << b;
    }
  }
}

TEST(ReduceConvert, EveryHalfRoundTripsAndNaNStaysQuietNaN) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = float_to_half(half_to_float(static_cast<uint16_t>(h)));
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) {
      EXPECT_EQ(back & 0x7e00u, 0x7e00u) << "NaN must stay a quiet NaN: " << std::hex << h;
      EXPECT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << h;
    } else {
      ASSERT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(ReduceConvert, EveryBfloatRoundTripsAndNaNStaysNaN) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t back = float_to_bfloat16(bfloat16_to_float(static_cast<uint16_t>(b)));
    if ((b & 0x7f80u) == 0x7f80u && (b & 0x7fu)) {
      EXPECT_EQ(back & 0x7fc0u, 0x7fc0u) << std::hex << b;
      EXPECT_EQ(back & 0x8000u, b & 0x8000u) << std::hex << b;
    } else {
      ASSERT_EQ(back, b) << std::hex << b;
    }
  }
}

// Between every pair of neighbouring finite values: the midpoint goes to the even one, a
// hair either side goes to the nearer one. The top pair includes overflow to infinity.
template <class Decode, class Encode>
void check_ties(uint16_t largest_finite, double beyond_largest, Decode decode, Encode encode) {
  for (uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
    for (uint32_t low = 0; low <= largest_finite; ++low) {
      const double low_value = decode(static_cast<uint16_t>(low));
      const double high_value =
          low == largest_finite ? beyond_largest : decode(static_cast<uint16_t>(low + 1));
      const float mid = static_cast<float>((low_value + high_value) / 2);  // exact in float
      ASSERT_EQ(static_cast<double>(mid), (low_value + high_value) / 2);
      const float s = sign ? -1.0f : 1.0f;
      const uint16_t even = static_cast<uint16_t>((low & 1) ? low + 1 : low);
      ASSERT_EQ(encode(s * mid), sign | even) << std::hex << low;
      ASSERT_EQ(encode(s * std::nextafter(mid, 0.0f)), sign | low) << std::hex << low;
      ASSERT_EQ(encode(s * std::nextafter(mid, INFINITY)), sign | (low + 1)) << std::hex << low;
    }
  }
}

TEST(ReduceConvert, HalfRoundsTiesToEvenBetweenEveryNeighbourPair) {
  check_ties(0x7bff, 65536.0, ref_half_value, float_to_half);
}

TEST(ReduceConvert, BfloatRoundsTiesToEvenBetweenEveryNeighbourPair) {
  check_ties(0x7f7f, std::ldexp(1.0, 128), ref_bfloat16_value, float_to_bfloat16);
}

TEST(ReduceConvert, RandomFloatsRoundLikeTheNearestValueSearch) {
  std::mt19937 rng(7);
  for (int i = 0; i < 300000; ++i) {
    const float f = float_of(rng());
    if (std::isnan(f)) {
      EXPECT_EQ(float_to_half(f) & 0x7e00u, 0x7e00u);
      EXPECT_EQ(float_to_bfloat16(f) & 0x7fc0u, 0x7fc0u);
      continue;
    }
    ASSERT_EQ(float_to_half(f), ref_double_to_half(f)) << std::hexfloat << f;
    ASSERT_EQ(float_to_bfloat16(f), ref_double_to_bfloat16(f)) << std::hexfloat << f;
  }
  // Values in the half range, where most of them are not huge or tiny.
  std::uniform_real_distribution<float> moderate(-70000.0f, 70000.0f);
  std::uniform_real_distribution<float> small(-1e-4f, 1e-4f);  // half subnormals
  for (int i = 0; i < 300000; ++i) {
    const float f = (i & 1) ? moderate(rng) : small(rng);
    ASSERT_EQ(float_to_half(f), ref_double_to_half(f)) << std::hexfloat << f;
    ASSERT_EQ(float_to_bfloat16(f), ref_double_to_bfloat16(f)) << std::hexfloat << f;
  }
}

TEST(ReduceConvert, EveryFloat8EncodingDecodesLikeTheReference) {
  for (const auto& [spec, decode] :
       {std::pair{kE4m3, &e4m3_to_float}, std::pair{kE5m2, &e5m2_to_float}}) {
    for (int v = 0; v < 256; ++v) {
      const float got = decode(static_cast<uint8_t>(v));
      const double want = ref_fp8_value(spec, static_cast<uint8_t>(v));
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(got)) << std::hex << v;
      } else {
        ASSERT_EQ(static_cast<double>(got), want) << std::hex << v;
        ASSERT_EQ(std::signbit(got), (v & 0x80) != 0) << std::hex << v;
      }
    }
  }
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e5m2_to_float(0x7b), 57344.0f);
  EXPECT_TRUE(std::isinf(e5m2_to_float(0x7c)));
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9)) << "smallest e4m3 subnormal";
  EXPECT_EQ(e5m2_to_float(0x01), std::ldexp(1.0f, -16)) << "smallest e5m2 subnormal";
}

// Every encoding, the midpoints between neighbours (ties go to the even encoding), just
// either side of them, overflow, infinities, NaN and random floats.
TEST(ReduceConvert, Float8RoundsToNearestEvenAndSaturates) {
  std::mt19937_64 rng(8);
  for (const auto& [spec, encode, decode] :
       {std::tuple{kE4m3, &float_to_e4m3, &e4m3_to_float},
        std::tuple{kE5m2, &float_to_e5m2, &e5m2_to_float}}) {
    auto check = [&, spec = spec, encode = encode](float x) {
      if (std::isnan(x)) {
        ASSERT_TRUE(std::isnan(ref_fp8_value(spec, encode(x)))) << std::hexfloat << x;
        return;
      }
      ASSERT_EQ(encode(x), ref_double_to_fp8(spec, x)) << std::hexfloat << x;
    };
    for (int v = 0; v <= spec.max_finite; ++v) {
      const float here = decode(static_cast<uint8_t>(v));
      check(here);
      check(-here);
      if (v == spec.max_finite) break;
      const float mid = 0.5f * (here + decode(static_cast<uint8_t>(v + 1)));  // exact in float
      for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
        check(x);
        check(-x);
      }
    }
    const float max = decode(spec.max_finite);
    EXPECT_EQ(encode(max * 1.1f), spec.max_finite) << "finite overflow saturates";
    EXPECT_EQ(encode(-1e30f), 0x80 | spec.max_finite);
    EXPECT_EQ(encode(std::numeric_limits<float>::infinity()),
              spec.has_infinity ? spec.max_finite + 1 : spec.max_finite);
    EXPECT_TRUE(std::isnan(decode(encode(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_EQ(encode(std::numeric_limits<float>::denorm_min()), 0) << "float subnormal";
    EXPECT_EQ(encode(-0.0f), 0x80) << "negative zero keeps its sign";
    for (int i = 0; i < 200000; ++i) {
      check(float_of(static_cast<uint32_t>(rng())));
      check(std::uniform_real_distribution<float>(-2 * max, 2 * max)(rng));
      check(std::uniform_real_distribution<float>(-0.02f, 0.02f)(rng));  // around subnormals
    }
  }
}

}  // namespace
}  // namespace ciuic::reduce
