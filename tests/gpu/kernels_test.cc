// The GPU reduction kernels (src/cuda/kernels.cu) against the CPU kernels (src/reduce),
// bit for bit: every datatype x op, sizes {0, 1, 7, 1 MiB + 3 elements}, random bit
// patterns (NaNs, infinities and subnormals included), aligned and misaligned pointers,
// in place and not. With more than two sources the GPU accumulates float16/bfloat16 in
// float and rounds once, so there the inputs are small integers, exact either way.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "gpu_test.h"
#include "reduce/reduce.h"

namespace ciuic::gputest {
namespace {

const char* op_text(int op) {
  static const char* const kOps[] = {"sum", "prod", "min", "max", "avg"};
  return kOps[op];
}

std::vector<char> random_bytes(size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<char> v(bytes);
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t x = rng();
    std::memcpy(v.data() + i, &x, std::min<size_t>(8, bytes - i));
  }
  return v;
}

void small_ints(std::vector<char>& v, ciuic_datatype_t t, ciuic_op_t op, size_t count, int source) {
  for (size_t i = 0; i < count; ++i) {
    static const double kFactors[] = {-1, 1, 2};
    const bool float8 = reduce::is_float8(t);
    // 8-bit floats: {-1, 0, 1}, so sums of up to 8 sources are exact in any order.
    double x = op == CIUIC_PROD ? kFactors[(i + 2 * source) % 3]
               : float8     ? static_cast<double>((i * 5 + source * 3) % 3) - 1
                            : static_cast<double>((i * 5 + source * 3) % 9) - 4;
    if (t == CIUIC_UINT8 || t == CIUIC_UINT32 || t == CIUIC_UINT64) x = x < 0 ? -x : x;
    const size_t elem = reduce::datatype_size(t);
    char* p = v.data() + i * elem;
    switch (t) {
      case CIUIC_INT8:
      case CIUIC_UINT8: {
        int8_t y = static_cast<int8_t>(x);
        std::memcpy(p, &y, 1);
        break;
      }
      case CIUIC_INT32:
      case CIUIC_UINT32: {
        int32_t y = static_cast<int32_t>(x);
        std::memcpy(p, &y, 4);
        break;
      }
      case CIUIC_INT64:
      case CIUIC_UINT64: {
        int64_t y = static_cast<int64_t>(x);
        std::memcpy(p, &y, 8);
        break;
      }
      case CIUIC_FLOAT16: {
        uint16_t y = reduce::float_to_half(static_cast<float>(x));
        std::memcpy(p, &y, 2);
        break;
      }
      case CIUIC_BFLOAT16: {
        uint16_t y = reduce::float_to_bfloat16(static_cast<float>(x));
        std::memcpy(p, &y, 2);
        break;
      }
      case CIUIC_FLOAT32: {
        float y = static_cast<float>(x);
        std::memcpy(p, &y, 4);
        break;
      }
      case CIUIC_FLOAT64:
        std::memcpy(p, &x, 8);
        break;
      case CIUIC_FLOAT8_E4M3:
        *reinterpret_cast<uint8_t*>(p) = reduce::float_to_e4m3(static_cast<float>(x));
        break;
      case CIUIC_FLOAT8_E5M2:
        *reinterpret_cast<uint8_t*>(p) = reduce::float_to_e5m2(static_cast<float>(x));
        break;
      default:
        break;
    }
  }
}

// A NaN's payload after arithmetic is the hardware's choice (x86 keeps the first
// operand's, NVIDIA GPUs give the canonical NaN), so any NaN matches any NaN; every other
// value must match bit for bit.
bool is_nan(const char* p, ciuic_datatype_t t) {
  uint64_t v = 0;
  std::memcpy(&v, p, reduce::datatype_size(t));
  switch (t) {
    case CIUIC_FLOAT16:
      return (v & 0x7c00) == 0x7c00 && (v & 0x3ff) != 0;
    case CIUIC_BFLOAT16:
      return (v & 0x7f80) == 0x7f80 && (v & 0x7f) != 0;
    case CIUIC_FLOAT32:
      return (v & 0x7f800000u) == 0x7f800000u && (v & 0x7fffffu) != 0;
    case CIUIC_FLOAT64:
      return (v >> 52 & 0x7ff) == 0x7ff && (v & ((uint64_t{1} << 52) - 1)) != 0;
    case CIUIC_FLOAT8_E4M3:
      return (v & 0x7f) == 0x7f;
    case CIUIC_FLOAT8_E5M2:
      return (v & 0x7c) == 0x7c && (v & 0x3) != 0;
    default:
      return false;
  }
}

size_t differing(const char* a, const char* b, size_t count, ciuic_datatype_t t, size_t* first) {
  const size_t elem = reduce::datatype_size(t);
  size_t bad = 0;
  for (size_t i = 0; i < count; ++i) {
    const char* x = a + i * elem;
    const char* y = b + i * elem;
    if (std::memcmp(x, y, elem) == 0 || (is_nan(x, t) && is_nan(y, t))) continue;
    if (bad++ == 0) *first = i;
  }
  return bad;
}

void check_case(Tally& tally, ciuic_datatype_t t, ciuic_op_t op, size_t count, int nsrc,
                bool random, size_t misalign, bool in_place, char* dev, cudaStream_t stream) {
  const size_t elem = reduce::datatype_size(t);
  const size_t bytes = count * elem;
  std::vector<std::vector<char>> src(static_cast<size_t>(nsrc));
  for (int s = 0; s < nsrc; ++s) {
    src[s] = random ? random_bytes(bytes, 1000003u * static_cast<uint64_t>(t * 8 + op) +
                                              static_cast<uint64_t>(s) + count)
                    : std::vector<char>(bytes);
    if (!random) small_ints(src[s], t, op, count, s);
  }
  // CPU: pairwise through the active ISA's kernels.
  std::vector<char> want = src[0];
  for (int s = 1; s < nsrc; ++s)
    reduce::reduce(want.data(), want.data(), src[s].data(), count, t, op);
  // GPU: sources laid out one after another (each slice misaligned by the same offset).
  const size_t stride = ((bytes + 255) / 256 + 1) * 256;
  std::vector<const void*> ptrs;
  for (int s = 0; s < nsrc; ++s) {
    char* p = dev + static_cast<size_t>(s) * stride + misalign * elem;
    GPU_OK(tally, cudaMemcpyAsync(p, src[s].data(), bytes, cudaMemcpyHostToDevice, stream));
    ptrs.push_back(p);
  }
  char* out = in_place ? const_cast<char*>(static_cast<const char*>(ptrs[0]))
                       : dev + static_cast<size_t>(nsrc) * stride + misalign * elem;
  Status s = cuda::launch_reduce(out, ptrs.data(), nsrc, count, t, op, stream);
  tally.check(s.ok(), "launch_reduce: %s", s.message().c_str());
  std::vector<char> got(bytes);
  if (bytes) GPU_OK(tally, cudaMemcpyAsync(got.data(), out, bytes, cudaMemcpyDeviceToHost, stream));
  GPU_OK(tally, cudaStreamSynchronize(stream));
  size_t first = 0;
  const size_t bad = differing(got.data(), want.data(), count, t, &first);
  uint64_t g = 0, w = 0;
  if (bad) {
    std::memcpy(&g, got.data() + first * elem, elem);
    std::memcpy(&w, want.data() + first * elem, elem);
  }
  tally.check(bad == 0,
              "%s %s, %d sources, count %zu, %s, misaligned by %zu, %s: %zu wrong; element %zu: "
              "got 0x%llx want 0x%llx",
              ciuic_datatype_name(t), op_text(op), nsrc, count,
              random ? "random bits" : "small integers", misalign,
              in_place ? "in place" : "out of place", bad, first,
              static_cast<unsigned long long>(g), static_cast<unsigned long long>(w));
  if (op == CIUIC_AVG && bytes) {  // then the division, on the GPU's sum against the CPU's
    for (int nranks : {3, 7}) {
      std::vector<char> cpu = want;
      reduce::finish_average(cpu.data(), count, t, nranks);
      GPU_OK(tally, cudaMemcpyAsync(out, want.data(), bytes, cudaMemcpyHostToDevice, stream));
      Status a = cuda::launch_average(out, count, t, nranks, stream);
      tally.check(a.ok(), "launch_average: %s", a.message().c_str());
      GPU_OK(tally, cudaMemcpyAsync(got.data(), out, bytes, cudaMemcpyDeviceToHost, stream));
      GPU_OK(tally, cudaStreamSynchronize(stream));
      const size_t bad_avg = differing(got.data(), cpu.data(), count, t, &first);
      tally.check(bad_avg == 0, "%s average over %d: %zu wrong (first at %zu)",
                  ciuic_datatype_name(t), nranks, bad_avg, first);
    }
  }
}

}  // namespace
}  // namespace ciuic::gputest

int main() {
  using namespace ciuic::gputest;
  using namespace ciuic;
  if (int s = skip_without_gpu("gpu_kernels_test")) return s;
  Tally tally;
  cudaStream_t stream;
  GPU_OK(tally, cudaStreamCreate(&stream));
  char* dev = nullptr;
  const size_t max_bytes = ((size_t{1} << 20) + 3 * 8 + 512) * (cuda::kMaxReduceSources + 1) + 4096;
  GPU_OK(tally, cudaMalloc(reinterpret_cast<void**>(&dev), max_bytes));
  for (int ti = 0; ti < CIUIC_NUM_DATATYPES; ++ti) {
    const auto t = static_cast<ciuic_datatype_t>(ti);
    const size_t elem = reduce::datatype_size(t);
    for (int oi = 0; oi < CIUIC_NUM_OPS; ++oi) {
      const auto op = static_cast<ciuic_op_t>(oi);
      for (size_t count : {size_t{0}, size_t{1}, size_t{7}, (size_t{1} << 20) / elem + 3}) {
        check_case(tally, t, op, count, 2, true, 0, false, dev, stream);
        check_case(tally, t, op, count, 2, true, 1, true, dev, stream);
        for (int nsrc : {3, 8})
          check_case(tally, t, op, count, nsrc, false, nsrc == 3 ? 0 : 1, false, dev, stream);
      }
    }
  }
  Status bad = cuda::launch_reduce(dev, nullptr, 0, 4, CIUIC_FLOAT32, CIUIC_SUM, stream);
  tally.check(bad.code() == CIUIC_ERR_INVALID_ARGUMENT, "0 sources refused: %s",
              bad.message().c_str());
  cudaFree(dev);
  cudaStreamDestroy(stream);
  return tally.finish("gpu_kernels_test");
}
