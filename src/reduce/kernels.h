// Internal view of the reduction kernels: one table of function pointers per instruction
// set, built by kernels_{baseline,avx2,avx512}.cc. reduce.cc picks a table once; tests and
// benchmarks may ask for a specific one to check that every ISA computes the same bits.
#pragma once

#include <cstddef>

#include "ciuic/ciuic.h"

namespace ciuic::reduce {

enum class Isa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
inline constexpr int kNumIsas = 3;

// dst[i] = a[i] (op) b[i]; dst is a, b, or disjoint from both.
using ReduceFn = void (*)(void* dst, const void* a, const void* b, size_t count);
// data[i] /= nranks (nranks >= 1).
using AverageFn = void (*)(void* data, size_t count, int nranks);

struct KernelTable {
  ReduceFn reduce[CIUIC_NUM_DATATYPES][CIUIC_NUM_OPS];
  AverageFn average[CIUIC_NUM_DATATYPES];
};

// The table for `isa`, or nullptr when this CPU (or this build) cannot run it.
const KernelTable* kernel_table(Isa isa);
// The table reduce() and finish_average() use: the best one this CPU runs, unless
// CIUIC_REDUCE_ISA asks for a lower one. Chosen once per process.
Isa active_isa();
const char* isa_name(Isa isa);

// Per-ISA tables, defined in their own translation units; nullptr where not compiled in.
const KernelTable* baseline_kernel_table();
const KernelTable* avx2_kernel_table();
const KernelTable* avx512_kernel_table();

}  // namespace ciuic::reduce
