// An enum argument of the C API read as the int the caller passed. A C caller may pass any
// int where the header says ciuic_datatype_t; loading a value that is not an enumerator
// through the enum type is undefined behaviour in C++, so entry points copy the bits out
// and range-check the int.
#pragma once

#include <cstring>

namespace ciuic {

template <typename Enum>
int enum_bits(const Enum* value) {
  static_assert(sizeof(Enum) == sizeof(int), "C enums are passed as int");
  int bits;
  std::memcpy(&bits, value, sizeof(bits));
  return bits;
}

}  // namespace ciuic
