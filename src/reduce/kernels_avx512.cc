// Reduction kernels for AVX-512 F/BW/DQ/VL (x86-64-v4); float16 converts with F16C.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "reduce/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2,popcnt")
#pragma GCC optimize("O3")
#include "reduce/kernels_impl.h"

namespace ciuic::reduce {
namespace {

struct Avx512Lanes {
  static constexpr size_t kWidth = 16;
  static inline __attribute__((always_inline)) __m512 load(const uint16_t* p) {
    // The zero-masked forms: GCC 12 warns that the plain ones read an undefined register.
    return _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline __attribute__((always_inline)) void store(uint16_t* p, __m512 v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_maskz_cvtps_ph(0xffff, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static inline __attribute__((always_inline)) __m512 broadcast(float v) {
    return _mm512_set1_ps(v);
  }
};

constexpr KernelTable kAvx512Table = make_kernel_table<F16cFloat16Path<Avx512Lanes>>();

}  // namespace

const KernelTable* avx512_kernel_table() { return &kAvx512Table; }

}  // namespace ciuic::reduce
#pragma GCC pop_options

#else
namespace ciuic::reduce {
const KernelTable* avx512_kernel_table() { return nullptr; }
}  // namespace ciuic::reduce
#endif
