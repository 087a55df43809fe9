// Eight float16 values <-> one __m256 with F16C, round to nearest even. Included by the
// AVX2 and AVX-512 kernel files after their `#pragma GCC target`, like kernels_impl.h.
// The AVX-512 table uses these 256-bit lanes too: on the AMD EPYC (Zen 4) we measured,
// the 512-bit conversions ran 20% slower (docs/reductions.md).
#pragma once

#include <immintrin.h>

namespace ciuic::reduce {
namespace {

struct F16cLanes {
  static constexpr size_t kWidth = 8;
  static inline __attribute__((always_inline)) __m256 load(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static inline __attribute__((always_inline)) void store(uint16_t* p, __m256 v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static inline __attribute__((always_inline)) __m256 broadcast(float v) {
    return _mm256_set1_ps(v);
  }
};

}  // namespace
}  // namespace ciuic::reduce
