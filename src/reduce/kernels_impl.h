// The reduction loops, written once and compiled once per instruction set: each
// kernels_<isa>.cc includes this file after `#pragma GCC target(...)` and
// `#pragma GCC optimize("O3")`. O3 matters: at -O2 GCC 12 uses the "very cheap" vectoriser
// cost model, which refuses any loop whose trip count is unknown (it would need a tail).
//
// Everything lives in an anonymous namespace so each ISA's instantiations have internal
// linkage: the linker must never merge an AVX-512 copy into the baseline path.
//
// The including file provides, before this header: <cstddef>, <cstdint>, <cstring>,
// <type_traits>, and "reduce/kernels.h".
#pragma once

#include "reduce/convert_bits.h"
#include "reduce/fp8_bits.h"

namespace ciuic::reduce {
namespace {

#define CIUIC_REDUCE_INLINE inline __attribute__((always_inline))

// Ops work on scalars and on GCC vector types (__m256, __m512) alike. Integer arithmetic
// goes through the unsigned type so overflow wraps instead of being undefined.
struct SumOp {
  template <class T>
  static CIUIC_REDUCE_INLINE T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return a + b;
    }
  }
};

struct ProdOp {
  template <class T>
  static CIUIC_REDUCE_INLINE T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
    } else {
      return a * b;
    }
  }
};

// Floating-point MIN/MAX propagate NaN: if either input is NaN the result is NaN (the
// `a != a` term covers a NaN in `a`; a NaN in `b` fails the comparison and picks `b`).
struct MinOp {
  template <class T>
  static CIUIC_REDUCE_INLINE T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return a < b ? a : b;
    } else {
      return ((a < b) | (a != a)) ? a : b;
    }
  }
};

struct MaxOp {
  template <class T>
  static CIUIC_REDUCE_INLINE T apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return a > b ? a : b;
    } else {
      return ((a > b) | (a != a)) ? a : b;
    }
  }
};

// How an element is stored and what type the op computes in.
template <class T>
struct PlainCodec {
  using Storage = T;
  using Compute = T;
  static CIUIC_REDUCE_INLINE T load(T value) { return value; }
  static CIUIC_REDUCE_INLINE T store(T value) { return value; }
};

struct Bfloat16Codec {
  using Storage = uint16_t;
  using Compute = float;
  static CIUIC_REDUCE_INLINE float load(uint16_t value) { return soft_bfloat16_to_float(value); }
  static CIUIC_REDUCE_INLINE uint16_t store(float value) { return soft_float_to_bfloat16(value); }
};

template <class Format>
struct Float8Codec {
  using Storage = uint8_t;
  using Compute = float;
  static CIUIC_REDUCE_INLINE float load(uint8_t value) { return Format::to_float(value); }
  static CIUIC_REDUCE_INLINE uint8_t store(float value) { return Format::from_float(value); }
};

struct SoftFloat16Codec {
  using Storage = uint16_t;
  using Compute = float;
  static CIUIC_REDUCE_INLINE float load(uint16_t value) { return soft_half_to_float(value); }
  static CIUIC_REDUCE_INLINE uint16_t store(float value) { return soft_float_to_half(value); }
};

// One loop per aliasing case, each with restrict pointers so the compiler needs no run-time
// overlap check (and the in-place case, the common one, still vectorises).
template <class Codec, class Op, class S>
CIUIC_REDUCE_INLINE void loop_disjoint(S* __restrict dst, const S* __restrict a,
                                       const S* __restrict b, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    dst[i] = Codec::store(Op::apply(Codec::load(a[i]), Codec::load(b[i])));
  }
}

template <class Codec, class Op, class S>
CIUIC_REDUCE_INLINE void loop_into_a(S* __restrict dst_and_a, const S* __restrict b, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    dst_and_a[i] = Codec::store(Op::apply(Codec::load(dst_and_a[i]), Codec::load(b[i])));
  }
}

template <class Codec, class Op, class S>
CIUIC_REDUCE_INLINE void loop_into_b(S* __restrict dst_and_b, const S* __restrict a, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    dst_and_b[i] = Codec::store(Op::apply(Codec::load(a[i]), Codec::load(dst_and_b[i])));
  }
}

template <class Codec, class Op, class S>
CIUIC_REDUCE_INLINE void loop_self(S* __restrict all, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    const auto value = Codec::load(all[i]);
    all[i] = Codec::store(Op::apply(value, value));
  }
}

template <class Codec, class Op>
void reduce_loop(void* dst, const void* a, const void* b, size_t count) {
  using S = typename Codec::Storage;
  S* d = static_cast<S*>(dst);
  const S* x = static_cast<const S*>(a);
  const S* y = static_cast<const S*>(b);
  if (d == x && d == y) {
    loop_self<Codec, Op>(d, count);
  } else if (d == x) {
    loop_into_a<Codec, Op>(d, y, count);
  } else if (d == y) {
    loop_into_b<Codec, Op>(d, x, count);
  } else {
    loop_disjoint<Codec, Op>(d, x, y, count);
  }
}

template <class Codec>
void average_loop(void* data, size_t count, int nranks) {
  using S = typename Codec::Storage;
  using C = typename Codec::Compute;
  S* d = static_cast<S*>(data);
  if constexpr (std::is_integral_v<C>) {
    // Divide in the element's signedness, at least as wide as int so any nranks fits.
    using Divisor = std::conditional_t<(sizeof(C) < sizeof(int)), int, C>;
    const Divisor divisor = static_cast<Divisor>(nranks);
    for (size_t i = 0; i < count; ++i) d[i] = static_cast<S>(d[i] / divisor);
  } else {
    const C divisor = static_cast<C>(nranks);
    for (size_t i = 0; i < count; ++i) d[i] = Codec::store(Codec::load(d[i]) / divisor);
  }
}

// float16 through the plain (software) codec: used where the CPU has no F16C.
struct SoftFloat16Path {
  template <class Op>
  static void reduce(void* dst, const void* a, const void* b, size_t count) {
    reduce_loop<SoftFloat16Codec, Op>(dst, a, b, count);
  }
  static void average(void* data, size_t count, int nranks) {
    average_loop<SoftFloat16Codec>(data, count, nranks);
  }
};

// float16 through F16C: `Lanes` converts kWidth halves to a float vector and back (round to
// nearest even). Blocks load both inputs before storing, so dst may alias a or b.
template <class Lanes>
struct F16cFloat16Path {
  static constexpr size_t kWidth = Lanes::kWidth;

  template <class Op>
  static void reduce(void* dst, const void* a, const void* b, size_t count) {
    auto* d = static_cast<uint16_t*>(dst);
    const auto* x = static_cast<const uint16_t*>(a);
    const auto* y = static_cast<const uint16_t*>(b);
    size_t i = 0;
    for (; i + 2 * kWidth <= count; i += 2 * kWidth) {  // two vectors per step hide latency
      const auto r0 = Op::apply(Lanes::load(x + i), Lanes::load(y + i));
      const auto r1 = Op::apply(Lanes::load(x + i + kWidth), Lanes::load(y + i + kWidth));
      Lanes::store(d + i, r0);
      Lanes::store(d + i + kWidth, r1);
    }
    for (; i + kWidth <= count; i += kWidth) {
      Lanes::store(d + i, Op::apply(Lanes::load(x + i), Lanes::load(y + i)));
    }
    if (i < count) {  // tail: pad to one vector on the stack
      const size_t rest = count - i;
      uint16_t tx[kWidth] = {}, ty[kWidth] = {}, td[kWidth];
      memcpy(tx, x + i, rest * sizeof(uint16_t));
      memcpy(ty, y + i, rest * sizeof(uint16_t));
      Lanes::store(td, Op::apply(Lanes::load(tx), Lanes::load(ty)));
      memcpy(d + i, td, rest * sizeof(uint16_t));
    }
  }

  static void average(void* data, size_t count, int nranks) {
    auto* d = static_cast<uint16_t*>(data);
    const auto divisor = Lanes::broadcast(static_cast<float>(nranks));
    size_t i = 0;
    for (; i + kWidth <= count; i += kWidth) Lanes::store(d + i, Lanes::load(d + i) / divisor);
    if (i < count) {
      const size_t rest = count - i;
      uint16_t t[kWidth] = {};
      memcpy(t, d + i, rest * sizeof(uint16_t));
      Lanes::store(t, Lanes::load(t) / divisor);
      memcpy(d + i, t, rest * sizeof(uint16_t));
    }
  }
};

// bfloat16 a native vector at a time with GCC vector types (kVectorBytes: 64 for AVX-512,
// 32 for AVX2, 16 for SSE2). A bfloat16 is the top half of a float, so a 32-bit lane
// holding two of them (little endian: even element low) gives the odd element's float by
// masking and the even one's by shifting: no widening shuffles. Rounding is the same
// integer round-to-nearest-even as soft_float_to_bfloat16, on the whole vector.
// Spelled out per width: GCC 12 drops vector_size on a typedef whose size is a template
// parameter, silently leaving a scalar.
template <size_t kBytes>
struct VectorTypes;
template <>
struct VectorTypes<16> {
  using U32 = uint32_t __attribute__((vector_size(16)));
  using F32 = float __attribute__((vector_size(16)));
};
template <>
struct VectorTypes<32> {
  using U32 = uint32_t __attribute__((vector_size(32)));
  using F32 = float __attribute__((vector_size(32)));
};
template <>
struct VectorTypes<64> {
  using U32 = uint32_t __attribute__((vector_size(64)));
  using F32 = float __attribute__((vector_size(64)));
};

template <size_t kVectorBytes>
struct Bfloat16PairPath {
  using U32Vec = typename VectorTypes<kVectorBytes>::U32;
  using F32Vec = typename VectorTypes<kVectorBytes>::F32;
  static_assert(sizeof(U32Vec) == kVectorBytes && sizeof(F32Vec) == kVectorBytes);
  static constexpr size_t kBlock = kVectorBytes / sizeof(uint16_t);

  // Rounds each float to bfloat16, leaving the result in the lane's high half.
  static CIUIC_REDUCE_INLINE U32Vec round_high(F32Vec value) {
    const U32Vec bits = __builtin_bit_cast(U32Vec, value);
    const U32Vec rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
    const U32Vec quiet_nan = bits | 0x400000u;
    return ((bits & 0x7fffffffu) > 0x7f800000u) ? quiet_nan : rounded;
  }

  template <class Op>
  static void reduce(void* dst, const void* a, const void* b, size_t count) {
    auto* d = static_cast<uint16_t*>(dst);
    const auto* x = static_cast<const uint16_t*>(a);
    const auto* y = static_cast<const uint16_t*>(b);
    size_t i = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + kBlock <= count; i += kBlock) {
      U32Vec pa, pb;  // both inputs loaded before the store: dst may alias a or b
      memcpy(&pa, x + i, sizeof pa);
      memcpy(&pb, y + i, sizeof pb);
      const F32Vec even = Op::apply(__builtin_bit_cast(F32Vec, pa << 16),
                                    __builtin_bit_cast(F32Vec, pb << 16));
      const F32Vec odd = Op::apply(__builtin_bit_cast(F32Vec, pa & 0xffff0000u),
                                   __builtin_bit_cast(F32Vec, pb & 0xffff0000u));
      const U32Vec packed = (round_high(even) >> 16) | (round_high(odd) & 0xffff0000u);
      memcpy(d + i, &packed, sizeof packed);
    }
#endif
    for (; i < count; ++i) {
      d[i] = Bfloat16Codec::store(Op::apply(Bfloat16Codec::load(x[i]), Bfloat16Codec::load(y[i])));
    }
  }
};

template <class Codec>
constexpr void fill_row(KernelTable& table, ciuic_datatype_t datatype) {
  table.reduce[datatype][CIUIC_SUM] = &reduce_loop<Codec, SumOp>;
  table.reduce[datatype][CIUIC_PROD] = &reduce_loop<Codec, ProdOp>;
  table.reduce[datatype][CIUIC_MIN] = &reduce_loop<Codec, MinOp>;
  table.reduce[datatype][CIUIC_MAX] = &reduce_loop<Codec, MaxOp>;
  table.reduce[datatype][CIUIC_AVG] = &reduce_loop<Codec, SumOp>;  // divided at the end
  table.average[datatype] = &average_loop<Codec>;
}

template <class Float16Path, size_t kVectorBytes>
constexpr KernelTable make_kernel_table() {
  using Bfloat16Path = Bfloat16PairPath<kVectorBytes>;
  KernelTable table{};
  fill_row<PlainCodec<int8_t>>(table, CIUIC_INT8);
  fill_row<PlainCodec<uint8_t>>(table, CIUIC_UINT8);
  fill_row<PlainCodec<int32_t>>(table, CIUIC_INT32);
  fill_row<PlainCodec<uint32_t>>(table, CIUIC_UINT32);
  fill_row<PlainCodec<int64_t>>(table, CIUIC_INT64);
  fill_row<PlainCodec<uint64_t>>(table, CIUIC_UINT64);
  fill_row<Bfloat16Codec>(table, CIUIC_BFLOAT16);
  table.reduce[CIUIC_BFLOAT16][CIUIC_SUM] = &Bfloat16Path::template reduce<SumOp>;
  table.reduce[CIUIC_BFLOAT16][CIUIC_PROD] = &Bfloat16Path::template reduce<ProdOp>;
  table.reduce[CIUIC_BFLOAT16][CIUIC_MIN] = &Bfloat16Path::template reduce<MinOp>;
  table.reduce[CIUIC_BFLOAT16][CIUIC_MAX] = &Bfloat16Path::template reduce<MaxOp>;
  table.reduce[CIUIC_BFLOAT16][CIUIC_AVG] = &Bfloat16Path::template reduce<SumOp>;
  fill_row<PlainCodec<float>>(table, CIUIC_FLOAT32);
  fill_row<PlainCodec<double>>(table, CIUIC_FLOAT64);
  fill_row<Float8Codec<fp8::E4m3>>(table, CIUIC_FLOAT8_E4M3);
  fill_row<Float8Codec<fp8::E5m2>>(table, CIUIC_FLOAT8_E5M2);
  table.reduce[CIUIC_FLOAT16][CIUIC_SUM] = &Float16Path::template reduce<SumOp>;
  table.reduce[CIUIC_FLOAT16][CIUIC_PROD] = &Float16Path::template reduce<ProdOp>;
  table.reduce[CIUIC_FLOAT16][CIUIC_MIN] = &Float16Path::template reduce<MinOp>;
  table.reduce[CIUIC_FLOAT16][CIUIC_MAX] = &Float16Path::template reduce<MaxOp>;
  table.reduce[CIUIC_FLOAT16][CIUIC_AVG] = &Float16Path::template reduce<SumOp>;
  table.average[CIUIC_FLOAT16] = &Float16Path::average;
  return table;
}

#undef CIUIC_REDUCE_INLINE

}  // namespace
}  // namespace ciuic::reduce
