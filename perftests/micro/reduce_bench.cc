// Throughput of the CPU reduction kernels: sum for float32 / bfloat16 / float16 / int32 at
// 64 KiB (L2), 1 MiB (L2/L3) and 16 MiB (memory) per buffer, for every ISA this CPU runs,
// next to memcpy of the same size.
//
// bytes_per_second counts one buffer (the user's message size, like nccl-tests' algbw);
// `traffic` counts what the loop moves: two reads and one write for reduce, one read and
// one write for memcpy.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "reduce/kernels.h"
#include "reduce/reduce.h"

namespace ciuic::reduce {
namespace {

constexpr int64_t kSizes[] = {64 << 10, 1 << 20, 16 << 20};
constexpr ciuic_datatype_t kDatatypes[] = {CIUIC_FLOAT32, CIUIC_BFLOAT16, CIUIC_FLOAT16,
                                           CIUIC_INT32};
constexpr int kInPlace = 1;

// Inputs filled with small values so float16 sums stay finite (no inf/NaN slow paths).
std::vector<uint8_t> make_buffer(ciuic_datatype_t datatype, size_t bytes, int seed) {
  std::vector<uint8_t> buffer(bytes);
  const size_t count = bytes / datatype_size(datatype);
  for (size_t i = 0; i < count; ++i) {
    const float value = static_cast<float>((i * 7 + static_cast<size_t>(seed)) % 101) / 16.0f;
    switch (datatype) {
      case CIUIC_FLOAT32: std::memcpy(&buffer[i * 4], &value, 4); break;
      case CIUIC_INT32: {
        const int32_t v = static_cast<int32_t>(i) * seed;
        std::memcpy(&buffer[i * 4], &v, 4);
        break;
      }
      case CIUIC_FLOAT16: {
        const uint16_t h = float_to_half(value);
        std::memcpy(&buffer[i * 2], &h, 2);
        break;
      }
      case CIUIC_BFLOAT16: {
        const uint16_t b = float_to_bfloat16(value);
        std::memcpy(&buffer[i * 2], &b, 2);
        break;
      }
      default: break;
    }
  }
  return buffer;
}

void BM_ReduceSum(benchmark::State& state) {
  const auto datatype = static_cast<ciuic_datatype_t>(state.range(0));
  const size_t bytes = static_cast<size_t>(state.range(1));
  const auto isa = static_cast<Isa>(state.range(2));
  const bool in_place = state.range(3) == kInPlace;
  const KernelTable* table = kernel_table(isa);
  if (table == nullptr) {
    state.SkipWithError("this CPU cannot run this ISA");
    return;
  }
  const ReduceFn kernel = table->reduce[datatype][CIUIC_SUM];
  const size_t count = bytes / datatype_size(datatype);
  auto a = make_buffer(datatype, bytes, 3);
  const auto b = make_buffer(datatype, bytes, 5);
  std::vector<uint8_t> out(bytes);
  void* dst = in_place ? a.data() : out.data();
  for (auto _ : state) {
    kernel(dst, a.data(), b.data(), count);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.counters["traffic"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 3.0 * static_cast<double>(bytes),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1024);
  state.SetLabel(std::string(datatype_name(datatype)) + " " + isa_name(isa) +
                 (in_place ? " in-place" : ""));
}

void reduce_args(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"dtype", "bytes", "isa", "inplace"});
  for (ciuic_datatype_t datatype : kDatatypes) {
    for (int64_t bytes : kSizes) {
      for (int isa = 0; isa < kNumIsas; ++isa) {
        bench->Args({datatype, bytes, isa, 0});
        if (datatype == CIUIC_FLOAT32) bench->Args({datatype, bytes, isa, kInPlace});
      }
    }
  }
}
BENCHMARK(BM_ReduceSum)->Apply(reduce_args);

void BM_Memcpy(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> src(bytes, 1), dst(bytes);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.counters["traffic"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(bytes),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1024);
}
BENCHMARK(BM_Memcpy)->ArgName("bytes")->Arg(kSizes[0])->Arg(kSizes[1])->Arg(kSizes[2]);

}  // namespace
}  // namespace ciuic::reduce
