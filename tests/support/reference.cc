#include "support/reference.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "reduce/reduce.h"

namespace ciuic::testing {
namespace {

bool is_float(ciuic_datatype_t t) {
  return t == CIUIC_FLOAT16 || t == CIUIC_BFLOAT16 || t == CIUIC_FLOAT32 || t == CIUIC_FLOAT64 ||
         reduce::is_float8(t);
}
bool is_unsigned(ciuic_datatype_t t) {
  return t == CIUIC_UINT8 || t == CIUIC_UINT32 || t == CIUIC_UINT64;
}

// Stores the low bits of a wrapped 64-bit integer as datatype t.
void store_int(ciuic_datatype_t t, uint64_t v, void* out) {
  switch (t) {
    case CIUIC_INT8: case CIUIC_UINT8: { uint8_t x = static_cast<uint8_t>(v); std::memcpy(out, &x, 1); break; }
    case CIUIC_INT32: case CIUIC_UINT32: { uint32_t x = static_cast<uint32_t>(v); std::memcpy(out, &x, 4); break; }
    default: std::memcpy(out, &v, 8); break;
  }
}

// Integer average as the library defines it: the wrapped sum in the element type,
// divided by nranks, truncating toward zero.
int64_t int_average(ciuic_datatype_t t, uint64_t wrapped_sum, int n) {
  switch (t) {
    case CIUIC_INT8: return static_cast<int8_t>(wrapped_sum) / n;
    case CIUIC_UINT8: return static_cast<uint8_t>(wrapped_sum) / n;
    case CIUIC_INT32: return static_cast<int32_t>(wrapped_sum) / n;
    case CIUIC_UINT32: return static_cast<uint32_t>(wrapped_sum) / static_cast<uint32_t>(n);
    case CIUIC_INT64: return static_cast<int64_t>(wrapped_sum) / n;
    default: return static_cast<int64_t>(wrapped_sum / static_cast<uint64_t>(n));
  }
}

}  // namespace

double input_value(ciuic_datatype_t t, ciuic_op_t op, int rank, size_t i) {
  const size_t r = static_cast<size_t>(rank);
  if (op == CIUIC_PROD) {
    if (is_unsigned(t)) return static_cast<double>(1 + (i + r) % 2);
    static const double kFactors[] = {-1, 1, 2};
    return kFactors[(i + 2 * r) % 3];
  }
  // 8-bit floats hold integers exactly only up to 8 (e5m2) or 16 (e4m3): inputs in
  // {-1, 0, 1} keep every partial sum of up to 8 ranks exact in any order.
  if (reduce::is_float8(t)) return static_cast<double>((i * 3 + r * 7) % 3) - 1;
  double v = static_cast<double>((i * 3 + r * 7) % 11);
  return is_unsigned(t) ? v : v - 5;
}

void encode(ciuic_datatype_t t, double v, void* out) {
  switch (t) {
    case CIUIC_FLOAT16: { uint16_t h = reduce::float_to_half(static_cast<float>(v)); std::memcpy(out, &h, 2); break; }
    case CIUIC_BFLOAT16: { uint16_t b = reduce::float_to_bfloat16(static_cast<float>(v)); std::memcpy(out, &b, 2); break; }
    case CIUIC_FLOAT32: { float f = static_cast<float>(v); std::memcpy(out, &f, 4); break; }
    case CIUIC_FLOAT64: std::memcpy(out, &v, 8); break;
    case CIUIC_FLOAT8_E4M3: { uint8_t b = reduce::float_to_e4m3(static_cast<float>(v)); std::memcpy(out, &b, 1); break; }
    case CIUIC_FLOAT8_E5M2: { uint8_t b = reduce::float_to_e5m2(static_cast<float>(v)); std::memcpy(out, &b, 1); break; }
    default: store_int(t, static_cast<uint64_t>(static_cast<int64_t>(v)), out); break;
  }
}

void fill_input(void* buf, size_t count, ciuic_datatype_t t, ciuic_op_t op, int rank, size_t first) {
  const size_t elem = reduce::datatype_size(t);
  for (size_t i = 0; i < count; ++i)
    encode(t, input_value(t, op, rank, first + i), static_cast<char*>(buf) + i * elem);
}

void reduced_value(ciuic_datatype_t t, ciuic_op_t op, int nranks, size_t i, void* out) {
  if (is_float(t)) {
    double acc = input_value(t, op, 0, i);
    for (int r = 1; r < nranks; ++r) {
      double v = input_value(t, op, r, i);
      switch (op) {
        case CIUIC_SUM: case CIUIC_AVG: acc += v; break;
        case CIUIC_PROD: acc *= v; break;
        case CIUIC_MIN: acc = v < acc ? v : acc; break;
        case CIUIC_MAX: acc = v > acc ? v : acc; break;
        default: break;
      }
    }
    if (op == CIUIC_AVG) {
      // Exact sum, then one division in the type's compute precision.
      acc = t == CIUIC_FLOAT64 ? acc / nranks
                               : static_cast<double>(static_cast<float>(acc) / static_cast<float>(nranks));
    }
    encode(t, acc, out);
    return;
  }
  uint64_t acc = static_cast<uint64_t>(static_cast<int64_t>(input_value(t, op, 0, i)));
  int64_t lo = static_cast<int64_t>(input_value(t, op, 0, i)), hi = lo;
  for (int r = 1; r < nranks; ++r) {
    int64_t v = static_cast<int64_t>(input_value(t, op, r, i));
    if (op == CIUIC_PROD) acc *= static_cast<uint64_t>(v);
    else acc += static_cast<uint64_t>(v);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  switch (op) {
    case CIUIC_MIN: store_int(t, static_cast<uint64_t>(lo), out); break;
    case CIUIC_MAX: store_int(t, static_cast<uint64_t>(hi), out); break;
    case CIUIC_AVG: store_int(t, static_cast<uint64_t>(int_average(t, acc, nranks)), out); break;
    default: store_int(t, acc, out); break;
  }
}

size_t count_mismatches(const void* got, const void* want, size_t count, ciuic_datatype_t t,
                        std::string* first_error) {
  const size_t elem = reduce::datatype_size(t);
  size_t bad = 0;
  for (size_t i = 0; i < count; ++i) {
    const auto* g = static_cast<const unsigned char*>(got) + i * elem;
    const auto* w = static_cast<const unsigned char*>(want) + i * elem;
    if (std::memcmp(g, w, elem) == 0) continue;
    if (bad++ == 0 && first_error != nullptr) {
      uint64_t gv = 0, wv = 0;
      std::memcpy(&gv, g, elem);
      std::memcpy(&wv, w, elem);
      char buf[160];
      std::snprintf(buf, sizeof(buf), "element %zu: got bits 0x%llx, want 0x%llx", i,
                    static_cast<unsigned long long>(gv), static_cast<unsigned long long>(wv));
      *first_error = buf;
    }
  }
  return bad;
}

}  // namespace ciuic::testing
