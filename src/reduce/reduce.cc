// Picks the kernel table once per process and runs reduce() / finish_average() through it.
#include "reduce/reduce.h"

#include <string>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "base/config.h"
#include "base/log.h"
#include "reduce/kernels.h"

namespace ciuic::reduce {
namespace {

const config::StringParam kReduceIsa{
    "CIUIC_REDUCE_ISA", "auto",
    "Instruction set of the CPU reduction kernels: auto (best the CPU runs), avx512, avx2 or "
    "baseline. A set the CPU lacks falls back to auto with a warning."};

#if defined(__x86_64__) && defined(__clang__) && __clang_major__ < 16
bool cpuid_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
#endif

bool cpu_runs(Isa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::kBaseline:
      return true;
    case Isa::kAvx2:  // what kernels_avx2.cc is compiled for (x86-64-v3)
#if defined(__clang__) && __clang_major__ < 16  // older clang cannot ask for "f16c": read CPUID
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuid_has_f16c() &&
             __builtin_cpu_supports("bmi2");
#else
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
#endif
    case Isa::kAvx512:  // what kernels_avx512.cc is compiled for (x86-64-v4)
      return cpu_runs(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
  }
  return false;
#else
  return isa == Isa::kBaseline;
#endif
}

Isa best_isa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    if (kernel_table(isa) != nullptr) return isa;
  }
  return Isa::kBaseline;
}

Isa choose_isa() {
  const std::string wanted = kReduceIsa.get();
  const Isa best = best_isa();
  if (wanted == "auto") return best;
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kBaseline}) {
    if (wanted != isa_name(isa)) continue;
    if (kernel_table(isa) != nullptr) return isa;
    CIUIC_LOG_WARN(log::kInit,
                   "CIUIC_REDUCE_ISA=%s: this CPU or build cannot run it; using %s instead",
                   wanted.c_str(), isa_name(best));
    return best;
  }
  CIUIC_LOG_WARN(log::kInit,
                 "CIUIC_REDUCE_ISA=%s is not one of auto, avx512, avx2, baseline; using %s",
                 wanted.c_str(), isa_name(best));
  return best;
}

const KernelTable& active_table() {
  static const KernelTable* table = [] {
    const Isa isa = active_isa();
    CIUIC_LOG_INFO(log::kInit, "CPU reduction kernels: %s", isa_name(isa));
    return kernel_table(isa);
  }();
  return *table;
}

}  // namespace

const KernelTable* kernel_table(Isa isa) {
  if (!cpu_runs(isa)) return nullptr;
  switch (isa) {
    case Isa::kBaseline:
      return baseline_kernel_table();
    case Isa::kAvx2:
      return avx2_kernel_table();
    case Isa::kAvx512:
      return avx512_kernel_table();
  }
  return nullptr;
}

Isa active_isa() {
  static const Isa isa = choose_isa();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kBaseline:
      return "baseline";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

void reduce(void* dst, const void* a, const void* b, size_t count, ciuic_datatype_t datatype,
            ciuic_op_t op) {
  if (count == 0) return;
  if (!valid_datatype(datatype) || !valid_op(op)) {
    // The API layer rejects these with an error; reaching here is a bug in the caller.
    CIUIC_LOG_WARN(log::kColl, "reduce: invalid datatype %d or op %d; nothing was reduced",
                   static_cast<int>(datatype), static_cast<int>(op));
    return;
  }
  active_table().reduce[datatype][op](dst, a, b, count);
}

void finish_average(void* data, size_t count, ciuic_datatype_t datatype, int nranks) {
  if (count == 0 || nranks == 1) return;
  if (!valid_datatype(datatype) || nranks < 1) {
    CIUIC_LOG_WARN(log::kColl, "finish_average: invalid datatype %d or nranks %d; data unchanged",
                   static_cast<int>(datatype), nranks);
    return;
  }
  active_table().average[datatype](data, count, nranks);
}

}  // namespace ciuic::reduce
