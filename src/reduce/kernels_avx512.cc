// Reduction kernels for AVX-512 F/BW/DQ/VL (x86-64-v4): 512-bit loops, float16 through
// 256-bit F16C (see f16c_lanes.h).
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
#include "reduce/f16c_lanes.h"
#include "reduce/kernels_impl.h"

namespace ciuic::reduce {
namespace {
constexpr KernelTable kAvx512Table = make_kernel_table<F16cFloat16Path<F16cLanes>, 64>();
}  // namespace
}  // namespace ciuic::reduce
#pragma GCC pop_options

// Outside the target region: callable on any CPU (reduce.cc checks the CPU first anyway).
namespace ciuic::reduce {
const KernelTable* avx512_kernel_table() { return &kAvx512Table; }
}  // namespace ciuic::reduce

#else
namespace ciuic::reduce {
const KernelTable* avx512_kernel_table() { return nullptr; }
}  // namespace ciuic::reduce
#endif
