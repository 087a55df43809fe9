// CPU reductions: every datatype x op x instruction set against a scalar reference written
// independently here (conversions: reduce_test_helpers.h), at odd lengths, misaligned
// starts and every aliasing of dst with the inputs. The conversions themselves:
// convert_test.cc.
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
#include "unit/reduce_test_helpers.h"

namespace ciuic::reduce {
namespace {

using namespace reference;

constexpr ciuic_op_t kAllOps[] = {CIUIC_SUM, CIUIC_PROD, CIUIC_MIN, CIUIC_MAX, CIUIC_AVG};

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
    EXPECT_EQ(is_float8(dt), std::string(names[d]).rfind("f8", 0) == 0) << names[d];
  }
  for (int bad : {-1, static_cast<int>(CIUIC_NUM_DATATYPES), 1000}) {
    const auto dt = static_cast<ciuic_datatype_t>(bad);
    EXPECT_FALSE(valid_datatype(bad));
    EXPECT_STREQ(datatype_name(dt), "");
    EXPECT_STREQ(ciuic_datatype_name(dt), "");
    EXPECT_EQ(datatype_size(dt), 0u);
    EXPECT_EQ(ciuic_datatype_size(dt), 0u);
    EXPECT_FALSE(is_float8(dt));
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
