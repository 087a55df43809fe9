// Reduction kernels for AVX2 + FMA + F16C (x86-64-v3); float16 converts with F16C.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "reduce/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,popcnt")
#pragma GCC optimize("O3")
#include "reduce/kernels_impl.h"

namespace ciuic::reduce {
namespace {

struct Avx2Lanes {
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

constexpr KernelTable kAvx2Table = make_kernel_table<F16cFloat16Path<Avx2Lanes>>();

}  // namespace

const KernelTable* avx2_kernel_table() { return &kAvx2Table; }

}  // namespace ciuic::reduce
#pragma GCC pop_options

#else
namespace ciuic::reduce {
const KernelTable* avx2_kernel_table() { return nullptr; }
}  // namespace ciuic::reduce
#endif
