// Inputs whose reductions are exact in every datatype, and an independent reference for
// what each collective must produce (double arithmetic for floats, wrapping 64-bit
// arithmetic for integers — not the library's kernels).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"

namespace ciuic::testing {

// The value rank `rank` contributes at element i (small integers, negative ones for
// signed types and floats; {1,2} or {-1,1,2} under CIUIC_PROD so products stay exact).
double input_value(ciuic_datatype_t t, ciuic_op_t op, int rank, size_t i);

// Writes count elements of rank's input, starting at element `first`.
void fill_input(void* buf, size_t count, ciuic_datatype_t t, ciuic_op_t op, int rank, size_t first = 0);

// The reduction over nranks of element i, encoded in datatype t, into out (elem bytes).
void reduced_value(ciuic_datatype_t t, ciuic_op_t op, int nranks, size_t i, void* out);

// Encodes a double (an exact small integer, or an average) as datatype t.
void encode(ciuic_datatype_t t, double v, void* out);

// Compares `got` with `want` element by element; returns the number of mismatches and
// describes the first one in *first_error.
size_t count_mismatches(const void* got, const void* want, size_t count, ciuic_datatype_t t,
                        std::string* first_error);

}  // namespace ciuic::testing
