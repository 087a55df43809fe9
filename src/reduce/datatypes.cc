// Datatype and op names and sizes, the scalar conversions, and the C API's datatype calls.
#include <cstddef>
#include <cstdint>

#include "base/enum_bits.h"
#include "reduce/convert_bits.h"
#include "reduce/fp8_bits.h"
#include "reduce/reduce.h"

namespace ciuic::reduce {
namespace {

// Names as nccl-tests prints them, indexed by ciuic_datatype_t / ciuic_op_t.
constexpr const char* kDatatypeNames[CIUIC_NUM_DATATYPES] = {
    "int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32",
    "float64", "f8e4m3", "f8e5m2"};
constexpr size_t kDatatypeSizes[CIUIC_NUM_DATATYPES] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1};
constexpr const char* kOpNames[CIUIC_NUM_OPS] = {"sum", "prod", "min", "max", "avg"};

}  // namespace

bool valid_datatype(int datatype) { return datatype >= 0 && datatype < CIUIC_NUM_DATATYPES; }
bool valid_op(int op) { return op >= 0 && op < CIUIC_NUM_OPS; }

size_t datatype_size(ciuic_datatype_t datatype) {
  return valid_datatype(datatype) ? kDatatypeSizes[datatype] : 0;
}

const char* datatype_name(ciuic_datatype_t datatype) {
  return valid_datatype(datatype) ? kDatatypeNames[datatype] : "";
}

const char* op_name(ciuic_op_t op) { return valid_op(op) ? kOpNames[op] : ""; }

float half_to_float(uint16_t h) { return soft_half_to_float(h); }
uint16_t float_to_half(float f) { return soft_float_to_half(f); }
float bfloat16_to_float(uint16_t b) { return soft_bfloat16_to_float(b); }
uint16_t float_to_bfloat16(float f) { return soft_float_to_bfloat16(f); }
float e4m3_to_float(uint8_t v) { return fp8::E4m3::to_float(v); }
uint8_t float_to_e4m3(float f) { return fp8::E4m3::from_float(f); }
float e5m2_to_float(uint8_t v) { return fp8::E5m2::to_float(v); }
uint8_t float_to_e5m2(float f) { return fp8::E5m2::from_float(f); }

}  // namespace ciuic::reduce

extern "C" {

CIUIC_API const char* ciuic_datatype_name(ciuic_datatype_t datatype) {
  const int bits = ciuic::enum_bits(&datatype);
  if (bits < 0 || bits >= CIUIC_NUM_DATATYPES) return "";
  return ciuic::reduce::datatype_name(static_cast<ciuic_datatype_t>(bits));
}

CIUIC_API size_t ciuic_datatype_size(ciuic_datatype_t datatype) {
  const int bits = ciuic::enum_bits(&datatype);
  if (bits < 0 || bits >= CIUIC_NUM_DATATYPES) return 0;
  return ciuic::reduce::datatype_size(static_cast<ciuic_datatype_t>(bits));
}

}  // extern "C"
