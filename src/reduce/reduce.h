// CPU reductions for every datatype x op. Integer arithmetic wraps (two's complement,
// never undefined behaviour); float16, bfloat16 and the 8-bit floats compute in float and
// round to nearest even at each step (8-bit floats saturate instead of overflowing). Kernels are plain loops the compiler vectorises, cloned per ISA (AVX-512, AVX2,
// baseline) and picked at run time, so one binary runs everywhere.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ciuic/ciuic.h"

namespace ciuic::reduce {

bool valid_datatype(int datatype);
bool valid_op(int op);
size_t datatype_size(ciuic_datatype_t datatype);  // 0 if invalid
const char* datatype_name(ciuic_datatype_t datatype);
const char* op_name(ciuic_op_t op);
// The OCP 8-bit floats, which compute in float and saturate instead of overflowing.
constexpr bool is_float8(ciuic_datatype_t datatype) {
  return datatype == CIUIC_FLOAT8_E4M3 || datatype == CIUIC_FLOAT8_E5M2;
}

// dst[i] = a[i] (op) b[i], i < count. dst may alias a or b (in place). CIUIC_AVG
// accumulates as CIUIC_SUM here; finish_average() divides at the end.
void reduce(void* dst, const void* a, const void* b, size_t count, ciuic_datatype_t datatype,
            ciuic_op_t op);

// data[i] = data[i] / nranks: the last step of CIUIC_AVG (integer division for integers).
void finish_average(void* data, size_t count, ciuic_datatype_t datatype, int nranks);

// Conversions used by the kernels, exposed for tests and references.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);       // round to nearest even; overflow -> inf
float bfloat16_to_float(uint16_t b);
uint16_t float_to_bfloat16(float f);   // round to nearest even; NaN stays NaN
// 8-bit floats (reduce/fp8_bits.h): round to nearest even, finite overflow saturates.
float e4m3_to_float(uint8_t v);
uint8_t float_to_e4m3(float f);
float e5m2_to_float(uint8_t v);
uint8_t float_to_e5m2(float f);

}  // namespace ciuic::reduce
