// Reduction kernels for any x86-64 (SSE2) or other CPU; float16 converts in software.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "reduce/kernels.h"

#pragma GCC push_options
#pragma GCC optimize("O3")
#include "reduce/kernels_impl.h"

namespace ciuic::reduce {
namespace {
constexpr KernelTable kBaselineTable = make_kernel_table<SoftFloat16Path, 16>();
}  // namespace
}  // namespace ciuic::reduce
#pragma GCC pop_options

// Outside the pragma region, like the AVX files, where that keeps the getter baseline code.
namespace ciuic::reduce {
const KernelTable* baseline_kernel_table() { return &kBaselineTable; }
}  // namespace ciuic::reduce
