// The one logging facility. CIUIC_DEBUG=WARN|INFO|TRACE picks the level (default: WARN),
// CIUIC_DEBUG_SUBSYS=INIT,BOOT,NET,COLL,API (or ALL, or ^NET to exclude) the subsystems,
// CIUIC_DEBUG_FILE a file instead of stderr (%h host, %p pid are expanded).
// The NCCL plugin installs a sink that forwards to NCCL's own logger.
#pragma once

#include <cstdint>

namespace ciuic::log {

enum class Level : int { kNone = 0, kWarn = 1, kInfo = 2, kTrace = 3 };

enum Subsys : uint32_t {
  kInit = 1u << 0,
  kBoot = 1u << 1,
  kNet = 1u << 2,
  kColl = 1u << 3,
  kApi = 1u << 4,
  kAll = ~0u,
};

bool enabled(Level level, uint32_t subsys);

void write(Level level, uint32_t subsys, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));

// Replaces the output (stderr or CIUIC_DEBUG_FILE) with `sink`; nullptr restores it. The
// sink receives the formatted message without prefix or newline.
using Sink = void (*)(Level level, uint32_t subsys, const char* file, int line, const char* message);
void set_sink(Sink sink);

// Level and subsystem parsing, exposed for tests.
Level parse_level(const char* text);
uint32_t parse_subsys(const char* text);

}  // namespace ciuic::log

#define CIUIC_LOG(level, subsys, ...)                                        \
  do {                                                                       \
    if (::ciuic::log::enabled(level, subsys))                                \
      ::ciuic::log::write(level, subsys, __FILE__, __LINE__, __VA_ARGS__);   \
  } while (0)
#define CIUIC_LOG_WARN(subsys, ...) CIUIC_LOG(::ciuic::log::Level::kWarn, subsys, __VA_ARGS__)
#define CIUIC_LOG_INFO(subsys, ...) CIUIC_LOG(::ciuic::log::Level::kInfo, subsys, __VA_ARGS__)
#define CIUIC_LOG_TRACE(subsys, ...) CIUIC_LOG(::ciuic::log::Level::kTrace, subsys, __VA_ARGS__)
