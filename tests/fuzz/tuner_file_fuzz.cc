// The tuner file's parser (CIUIC_TUNER_FILE): whatever the bytes, it returns an error or a
// file whose every value is a known key within its range, and what it accepts formats and
// parses back to the same.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "coll/tuner.h"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ciuic::coll::TunerFile;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  TunerFile file;
  if (!ciuic::coll::parse_tuner_file(text, "fuzz", &file).ok()) return 0;
  for (const auto& [key, value] : file.values) {
    const bool rate = key == "net_mbps" || key == "local_mbps" || key == "reduce_mbps";
    check(rate ? value >= 1 && value <= 100000000 : value >= 0 && value <= 1000000000);
  }
  TunerFile again;
  check(
      ciuic::coll::parse_tuner_file(ciuic::coll::format_tuner_file(file, {"again"}), "fuzz", &again)
          .ok());
  check(again.values == file.values && again.net_transport == file.net_transport &&
        again.local_transport == file.local_transport);
  return 0;
}
