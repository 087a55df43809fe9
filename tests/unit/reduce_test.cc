// CPU reductions: every datatype x op x instruction set against a scalar reference written
// independently here (conversions by double arithmetic and nearest-value search), at odd
// lengths, misaligned starts and every aliasing of dst with the inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "reduce/kernels.h"
#include "reduce/reduce.h"

namespace ciuic::reduce {
namespace {

constexpr ciuic_op_t kAllOps[] = {CIUIC_SUM, CIUIC_PROD, CIUIC_MIN, CIUIC_MAX, CIUIC_AVG};

// ---- reference conversions, by double arithmetic ----

double ref_half_value(uint16_t h) {
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

double ref_bfloat16_value(uint16_t b) {
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
uint16_t pick_nearest(double x, uint16_t low, double low_value, double high_value) {
  const double to_low = x - low_value, to_high = high_value - x;
  if (to_low < to_high) return low;
  if (to_high < to_low) return static_cast<uint16_t>(low + 1);
  return (low & 1) ? static_cast<uint16_t>(low + 1) : low;
}

// Rounds |x| to the nearest half by binary search over the (monotonic) positive encodings.
uint16_t ref_double_to_half(double x) {
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

uint16_t ref_double_to_bfloat16(double x) {
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
constexpr Fp8Spec kE4m3{4, 3, false, 0x7e};
constexpr Fp8Spec kE5m2{5, 2, true, 0x7b};

double ref_fp8_value(const Fp8Spec& f, uint8_t v) {
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
uint8_t ref_double_to_fp8(const Fp8Spec& f, double x) {
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

// ---- names and sizes ----

TEST(ReduceNames, DatatypeAndOpNamesAndSizes) {
  const char* names[] = {"int8",    "uint8",   "int32",    "uint32",  "int64",  "uint64",
                         "float16", "bfloat16", "float32", "float64", "f8e4m3", "f8e5m2"};
  const size_t sizes[] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1};
  for (int d = 0; d < CIUIC_NUM_DATATYPES; ++d) {
    const auto dt = static_cast<ciuic_datatype_t>(d);
    EXPECT_TRUE(valid_datatype(d));
    EXPECT_STREQ(datatype_name(dt), names[d]);
    EXPECT_STREQ(ciuic_datatype_name(dt), names[d]);
    EXPECT_EQ(datatype_size(dt), sizes[d]);
    EXPECT_EQ(ciuic_datatype_size(dt), sizes[d]);
  }
  for (int bad : {-1, static_cast<int>(CIUIC_NUM_DATATYPES), 1000}) {
    const auto dt = static_cast<ciuic_datatype_t>(bad);
    EXPECT_FALSE(valid_datatype(bad));
    EXPECT_STREQ(datatype_name(dt), "");
    EXPECT_STREQ(ciuic_datatype_name(dt), "");
    EXPECT_EQ(datatype_size(dt), 0u);
    EXPECT_EQ(ciuic_datatype_size(dt), 0u);
  }
  const char* ops[] = {"sum", "prod", "min", "max", "avg"};
  for (int o = 0; o < CIUIC_NUM_OPS; ++o) {
    EXPECT_TRUE(valid_op(o));
    EXPECT_STREQ(op_name(static_cast<ciuic_op_t>(o)), ops[o]);
  }
  EXPECT_FALSE(valid_op(-1));
  EXPECT_FALSE(valid_op(CIUIC_NUM_OPS));
  EXPECT_STREQ(op_name(static_cast<ciuic_op_t>(CIUIC_NUM_OPS)), "");
}


// ---- kernels against a scalar reference ----

using Rng = std::mt19937_64;

template <class S>
struct IntTraits {
  using Storage = S;
  static S generate(Rng& rng, size_t) { return static_cast<S>(rng()); }
  static S reference(S a, S b, ciuic_op_t op) {
    // Wrap-around by arithmetic modulo 2^64, then truncation (modular in C++20).
    const uint64_t x = static_cast<uint64_t>(a), y = static_cast<uint64_t>(b);
    switch (op) {
      case CIUIC_SUM:
      case CIUIC_AVG: return static_cast<S>(x + y);
      case CIUIC_PROD: return static_cast<S>(x * y);
      case CIUIC_MIN: return b < a ? b : a;
      case CIUIC_MAX: return b > a ? b : a;
      default: return 0;
    }
  }
  static bool same(S got, S want, ciuic_op_t) { return got == want; }
  static std::string show(S v) { return std::to_string(static_cast<int64_t>(v)); }
};

float e4m3_value_as_float(uint8_t v) { return static_cast<float>(ref_fp8_value(kE4m3, v)); }
float e5m2_value_as_float(uint8_t v) { return static_cast<float>(ref_fp8_value(kE5m2, v)); }
uint8_t ref_float_to_e4m3(float f) { return ref_double_to_fp8(kE4m3, f); }
uint8_t ref_float_to_e5m2(float f) { return ref_double_to_fp8(kE5m2, f); }
float identity_float(float f) { return f; }
double identity_double(double d) { return d; }
float half_value_as_float(uint16_t h) { return static_cast<float>(ref_half_value(h)); }
float bfloat16_value_as_float(uint16_t b) { return static_cast<float>(ref_bfloat16_value(b)); }
uint16_t ref_float_to_half(float f) { return ref_double_to_half(f); }
uint16_t ref_float_to_bfloat16(float f) { return ref_double_to_bfloat16(f); }

// Computes in C (float, or double for float64) like the kernels, then rounds once.
template <class S, class C, C (*kDecode)(S), S (*kEncode)(C)>
struct FloatTraits {
  using Storage = S;
  static S generate(Rng& rng, size_t i) {
    if (i % 4 == 0) {  // any bit pattern: NaN, inf, subnormals, zeros of both signs
      S s;
      const uint64_t bits = rng();
      std::memcpy(&s, &bits, sizeof s);
      return s;
    }
    return kEncode(static_cast<C>(std::uniform_real_distribution<double>(-1000, 1000)(rng)));
  }
  static S reference(S a, S b, ciuic_op_t op) {
    const C x = kDecode(a), y = kDecode(b);
    const C nan = std::numeric_limits<C>::quiet_NaN();
    switch (op) {
      case CIUIC_SUM:
      case CIUIC_AVG: return kEncode(x + y);
      case CIUIC_PROD: return kEncode(x * y);
      case CIUIC_MIN: return (std::isnan(x) || std::isnan(y)) ? kEncode(nan) : (y < x ? b : a);
      case CIUIC_MAX: return (std::isnan(x) || std::isnan(y)) ? kEncode(nan) : (y > x ? b : a);
      default: return S{};
    }
  }
  // NaN matches any NaN; MIN/MAX of equal values (+0 and -0) may return either.
  static bool same(S got, S want, ciuic_op_t op) {
    const C g = kDecode(got), w = kDecode(want);
    if (std::isnan(w)) return std::isnan(g);
    if ((op == CIUIC_MIN || op == CIUIC_MAX) && g == w) return true;
    return std::memcmp(&got, &want, sizeof(S)) == 0;
  }
  static std::string show(S v) {
    char text[64];
    std::snprintf(text, sizeof text, "%a", static_cast<double>(kDecode(v)));
    return text;
  }
};

using HalfTraits = FloatTraits<uint16_t, float, half_value_as_float, ref_float_to_half>;
using BfloatTraits = FloatTraits<uint16_t, float, bfloat16_value_as_float, ref_float_to_bfloat16>;
using Float32Traits = FloatTraits<float, float, identity_float, identity_float>;
using Float64Traits = FloatTraits<double, double, identity_double, identity_double>;
using E4m3Traits = FloatTraits<uint8_t, float, e4m3_value_as_float, ref_float_to_e4m3>;
using E5m2Traits = FloatTraits<uint8_t, float, e5m2_value_as_float, ref_float_to_e5m2>;

enum class Alias { kDisjoint, kDstIsA, kDstIsB, kAllSame };
const char* alias_name(Alias alias) {
  switch (alias) {
    case Alias::kDisjoint: return "disjoint";
    case Alias::kDstIsA: return "dst==a";
    case Alias::kDstIsB: return "dst==b";
    case Alias::kAllSame: return "dst==a==b";
  }
  return "?";
}

// Runs one kernel on buffers that start `offset` elements into their allocation and are
// followed by guard elements, and compares every element and guard with the reference.
template <class Traits>
void check_kernel(ReduceFn kernel, ciuic_op_t op, size_t count, size_t offset, Alias alias,
                  uint64_t seed) {
  using S = typename Traits::Storage;
  constexpr size_t kGuard = 17;
  const size_t total = offset + count + kGuard;
  Rng rng(seed);
  std::vector<S> a(total), b(total), out(total);
  for (size_t i = 0; i < total; ++i) {
    a[i] = Traits::generate(rng, i);
    b[i] = Traits::generate(rng, i + 1);
    out[i] = Traits::generate(rng, i + 2);
  }
  S* dst = alias == Alias::kDisjoint ? out.data()
           : alias == Alias::kDstIsB ? b.data()
                                     : a.data();
  const S* second = alias == Alias::kAllSame ? a.data() : b.data();
  std::vector<S> expected(dst, dst + total);
  for (size_t i = offset; i < offset + count; ++i) {
    expected[i] = Traits::reference(a[i], second[i], op);
  }
  kernel(dst + offset, a.data() + offset, second + offset, count);
  size_t wrong = 0;
  for (size_t i = 0; i < total; ++i) {
    const bool inside = i >= offset && i < offset + count;
    const bool ok = inside ? Traits::same(dst[i], expected[i], op)
                           : std::memcmp(&dst[i], &expected[i], sizeof(S)) == 0;
    if (!ok && ++wrong <= 3) {
      ADD_FAILURE() << op_name(op) << " count " << count << " offset " << offset << " "
                    << alias_name(alias) << ": element " << i - offset
                    << (inside ? "" : " (outside the range: must be untouched)") << " is "
                    << Traits::show(dst[i]) << ", want " << Traits::show(expected[i]);
    }
  }
  EXPECT_EQ(wrong, 0u);
}

template <class Traits>
void check_all_shapes(const KernelTable& table, ciuic_datatype_t datatype) {
  uint64_t seed = 1;
  for (ciuic_op_t op : kAllOps) {
    for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{33}, size_t{1023}, size_t{4099}}) {
      for (size_t offset : {size_t{0}, size_t{1}, size_t{3}}) {
        for (Alias alias : {Alias::kDisjoint, Alias::kDstIsA, Alias::kDstIsB, Alias::kAllSame}) {
          check_kernel<Traits>(table.reduce[datatype][op], op, count, offset, alias, ++seed);
        }
      }
    }
    // Large enough for many iterations of every unrolled vector loop.
    check_kernel<Traits>(table.reduce[datatype][op], op, 65536 + 45, 5, Alias::kDisjoint, ++seed);
  }
}

void check_datatype(const KernelTable& table, ciuic_datatype_t datatype) {
  switch (datatype) {
    case CIUIC_INT8: return check_all_shapes<IntTraits<int8_t>>(table, datatype);
    case CIUIC_UINT8: return check_all_shapes<IntTraits<uint8_t>>(table, datatype);
    case CIUIC_INT32: return check_all_shapes<IntTraits<int32_t>>(table, datatype);
    case CIUIC_UINT32: return check_all_shapes<IntTraits<uint32_t>>(table, datatype);
    case CIUIC_INT64: return check_all_shapes<IntTraits<int64_t>>(table, datatype);
    case CIUIC_UINT64: return check_all_shapes<IntTraits<uint64_t>>(table, datatype);
    case CIUIC_FLOAT16: return check_all_shapes<HalfTraits>(table, datatype);
    case CIUIC_BFLOAT16: return check_all_shapes<BfloatTraits>(table, datatype);
    case CIUIC_FLOAT32: return check_all_shapes<Float32Traits>(table, datatype);
    case CIUIC_FLOAT64: return check_all_shapes<Float64Traits>(table, datatype);
    case CIUIC_FLOAT8_E4M3: return check_all_shapes<E4m3Traits>(table, datatype);
    case CIUIC_FLOAT8_E5M2: return check_all_shapes<E5m2Traits>(table, datatype);
    default: FAIL() << "unknown datatype " << datatype;
  }
}

const KernelTable& table_or_skip(Isa isa) {
  static const KernelTable empty{};
  const KernelTable* table = kernel_table(isa);
  return table ? *table : empty;
}

class ReduceKernelTest : public ::testing::TestWithParam<std::tuple<Isa, int>> {};

TEST_P(ReduceKernelTest, MatchesScalarReference) {
  const auto [isa, datatype] = GetParam();
  if (kernel_table(isa) == nullptr) GTEST_SKIP() << "this CPU cannot run " << isa_name(isa);
  check_datatype(table_or_skip(isa), static_cast<ciuic_datatype_t>(datatype));
}

INSTANTIATE_TEST_SUITE_P(
    AllIsasAndDatatypes, ReduceKernelTest,
    ::testing::Combine(::testing::Values(Isa::kBaseline, Isa::kAvx2, Isa::kAvx512),
                       ::testing::Range(0, static_cast<int>(CIUIC_NUM_DATATYPES))),
    [](const auto& param_info) {
      return std::string(isa_name(std::get<0>(param_info.param))) + "_" +
             datatype_name(static_cast<ciuic_datatype_t>(std::get<1>(param_info.param)));
    });

// ---- specific cases, through the public entry points ----

template <class T>
std::vector<T> reduced(std::vector<T> a, const std::vector<T>& b, ciuic_datatype_t dt,
                       ciuic_op_t op) {
  reduce(a.data(), a.data(), b.data(), a.size(), dt, op);
  return a;
}

TEST(Reduce, IntegersWrapAround) {
  EXPECT_EQ(reduced<int8_t>({127, -128, 100}, {1, -1, 100}, CIUIC_INT8, CIUIC_SUM),
            (std::vector<int8_t>{-128, 127, -56}));
  EXPECT_EQ(reduced<uint8_t>({255, 16}, {1, 16}, CIUIC_UINT8, CIUIC_PROD),
            (std::vector<uint8_t>{255, 0}));
  const int32_t imax = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(reduced<int32_t>({imax, imax}, {1, 2}, CIUIC_INT32, CIUIC_SUM),
            (std::vector<int32_t>{std::numeric_limits<int32_t>::min(), -imax}));
  EXPECT_EQ(reduced<uint32_t>({0}, {0xffffffffu}, CIUIC_UINT32, CIUIC_AVG),
            (std::vector<uint32_t>{0xffffffffu}));
  const int64_t lmin = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(reduced<int64_t>({lmin, int64_t{1} << 62}, {-1, 4}, CIUIC_INT64, CIUIC_PROD),
            (std::vector<int64_t>{lmin, 0}));
  EXPECT_EQ(reduced<uint64_t>({~uint64_t{0}}, {2}, CIUIC_UINT64, CIUIC_SUM),
            (std::vector<uint64_t>{1}));
  EXPECT_EQ(reduced<int8_t>({-128, 5}, {127, -5}, CIUIC_INT8, CIUIC_MIN),
            (std::vector<int8_t>{-128, -5}));
  EXPECT_EQ(reduced<uint64_t>({~uint64_t{0}, 1}, {0, 2}, CIUIC_UINT64, CIUIC_MAX),
            (std::vector<uint64_t>{~uint64_t{0}, 2}));
}

TEST(Reduce, MinAndMaxPropagateNaNFromEitherSide) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (ciuic_op_t op : {CIUIC_MIN, CIUIC_MAX}) {
    // 40 elements so both the vector body and the tail see NaN on each side.
    std::vector<float> a(40, 1.0f), b(40, 2.0f);
    for (size_t i = 0; i < a.size(); i += 3) a[i] = nan;
    for (size_t i = 1; i < b.size(); i += 3) b[i] = nan;
    const auto f32 = reduced(a, b, CIUIC_FLOAT32, op);
    std::vector<double> a64(a.begin(), a.end()), b64(b.begin(), b.end());
    const auto f64 = reduced(a64, b64, CIUIC_FLOAT64, op);
    std::vector<uint16_t> ah, bh, ab, bb;
    for (size_t i = 0; i < a.size(); ++i) {
      ah.push_back(float_to_half(a[i]));
      bh.push_back(float_to_half(b[i]));
      ab.push_back(float_to_bfloat16(a[i]));
      bb.push_back(float_to_bfloat16(b[i]));
    }
    const auto f16 = reduced(ah, bh, CIUIC_FLOAT16, op);
    const auto bf16 = reduced(ab, bb, CIUIC_BFLOAT16, op);
    for (size_t i = 0; i < a.size(); ++i) {
      const bool want_nan = i % 3 != 2;
      const float want = op == CIUIC_MIN ? 1.0f : 2.0f;
      SCOPED_TRACE(std::string(op_name(op)) + " element " + std::to_string(i));
      EXPECT_EQ(std::isnan(f32[i]), want_nan);
      EXPECT_EQ(std::isnan(f64[i]), want_nan);
      EXPECT_EQ(std::isnan(half_to_float(f16[i])), want_nan);
      EXPECT_EQ(std::isnan(bfloat16_to_float(bf16[i])), want_nan);
      if (!want_nan) {
        EXPECT_EQ(f32[i], want);
        EXPECT_EQ(half_to_float(f16[i]), want);
        EXPECT_EQ(bfloat16_to_float(bf16[i]), want);
      }
    }
  }
}

TEST(Reduce, PublicEntryUsesTheActiveTable) {
  ASSERT_NE(kernel_table(active_isa()), nullptr);
  ASSERT_NE(kernel_table(Isa::kBaseline), nullptr);
  std::vector<uint16_t> a(1000), b(1000);
  Rng rng(3);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = float_to_half(static_cast<float>(rng() % 2000) / 7.0f);
    b[i] = float_to_half(static_cast<float>(rng() % 2000) / 3.0f);
  }
  std::vector<uint16_t> via_public(a.size()), via_baseline(a.size());
  reduce(via_public.data(), a.data(), b.data(), a.size(), CIUIC_FLOAT16, CIUIC_SUM);
  kernel_table(Isa::kBaseline)->reduce[CIUIC_FLOAT16][CIUIC_SUM](via_baseline.data(), a.data(),
                                                                 b.data(), a.size());
  EXPECT_EQ(via_public, via_baseline);
  // Zero count and invalid arguments leave memory alone.
  std::vector<uint16_t> untouched = a;
  reduce(untouched.data(), b.data(), b.data(), 0, CIUIC_FLOAT16, CIUIC_SUM);
  reduce(untouched.data(), b.data(), b.data(), 10, static_cast<ciuic_datatype_t>(99), CIUIC_SUM);
  reduce(untouched.data(), b.data(), b.data(), 10, CIUIC_FLOAT16, static_cast<ciuic_op_t>(-1));
  EXPECT_EQ(untouched, a);
}

// ---- finish_average ----

class FinishAverageTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (kernel_table(GetParam()) == nullptr) GTEST_SKIP() << "this CPU cannot run " << isa_name(GetParam());
  }
  template <class T>
  std::vector<T> averaged(std::vector<T> data, ciuic_datatype_t dt, int nranks) {
    kernel_table(GetParam())->average[dt](data.data(), data.size(), nranks);
    return data;
  }
};

TEST_P(FinishAverageTest, IntegersDivideTowardZero) {
  EXPECT_EQ(averaged<int32_t>({-7, 7, 9, -1, std::numeric_limits<int32_t>::min()}, CIUIC_INT32, 2),
            (std::vector<int32_t>{-3, 3, 4, 0, -1073741824}));
  EXPECT_EQ(averaged<int8_t>({-128, 127, -3}, CIUIC_INT8, 200), (std::vector<int8_t>{0, 0, 0}));
  EXPECT_EQ(averaged<int8_t>({-128, 127, -3}, CIUIC_INT8, 3), (std::vector<int8_t>{-42, 42, -1}));
  EXPECT_EQ(averaged<uint8_t>({255, 7}, CIUIC_UINT8, 2), (std::vector<uint8_t>{127, 3}));
  EXPECT_EQ(averaged<uint32_t>({0xffffffffu}, CIUIC_UINT32, 1000), (std::vector<uint32_t>{4294967}));
  EXPECT_EQ(averaged<int64_t>({-(int64_t{1} << 40) - 1}, CIUIC_INT64, 4),
            (std::vector<int64_t>{-(int64_t{1} << 38)}));
  EXPECT_EQ(averaged<uint64_t>({~uint64_t{0}}, CIUIC_UINT64, 3),
            (std::vector<uint64_t>{~uint64_t{0} / 3}));
}

TEST_P(FinishAverageTest, FloatsDivideAndRoundOnce) {
  std::vector<float> f32(37);
  std::vector<double> f64(37);
  std::vector<uint16_t> f16(37), bf16(37);
  for (size_t i = 0; i < f32.size(); ++i) {
    f32[i] = static_cast<float>(i) * 1.37f - 20.0f;
    f64[i] = static_cast<double>(i) * 1.37 - 20.0;
    f16[i] = ref_double_to_half(f32[i]);
    bf16[i] = ref_double_to_bfloat16(f32[i]);
  }
  const auto g32 = averaged(f32, CIUIC_FLOAT32, 3);
  const auto g64 = averaged(f64, CIUIC_FLOAT64, 3);
  const auto g16 = averaged(f16, CIUIC_FLOAT16, 3);
  const auto gbf = averaged(bf16, CIUIC_BFLOAT16, 3);
  for (size_t i = 0; i < f32.size(); ++i) {
    EXPECT_EQ(g32[i], f32[i] / 3.0f) << i;
    EXPECT_EQ(g64[i], f64[i] / 3.0) << i;
    EXPECT_EQ(g16[i], ref_double_to_half(half_value_as_float(f16[i]) / 3.0f)) << i;
    EXPECT_EQ(gbf[i], ref_double_to_bfloat16(bfloat16_value_as_float(bf16[i]) / 3.0f)) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, FinishAverageTest,
                         ::testing::Values(Isa::kBaseline, Isa::kAvx2, Isa::kAvx512),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

TEST(FinishAverage, PublicEntryAndOneRankLeaveDataAsExpected) {
  std::vector<int32_t> data{10, -10, 5};
  finish_average(data.data(), data.size(), CIUIC_INT32, 1);
  EXPECT_EQ(data, (std::vector<int32_t>{10, -10, 5}));
  finish_average(data.data(), data.size(), CIUIC_INT32, 0);  // invalid: unchanged
  EXPECT_EQ(data, (std::vector<int32_t>{10, -10, 5}));
  finish_average(data.data(), data.size(), CIUIC_INT32, 4);
  EXPECT_EQ(data, (std::vector<int32_t>{2, -2, 1}));
}

}  // namespace
}  // namespace ciuic::reduce
