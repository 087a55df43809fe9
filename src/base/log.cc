#include "base/log.h"

#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "base/config.h"

namespace ciuic::log {
namespace {

const config::StringParam kDebug{"CIUIC_DEBUG", "WARN",
                                 "Log level: NONE, WARN, INFO or TRACE"};
const config::StringParam kDebugSubsys{
    "CIUIC_DEBUG_SUBSYS", "ALL",
    "Subsystems to log, comma separated: INIT,BOOT,NET,COLL,API or ALL; ^X excludes X"};
const config::StringParam kDebugFile{
    "CIUIC_DEBUG_FILE", "", "Write the log to this file instead of stderr (%h host, %p pid)"};

struct State {
  std::once_flag once;
  Level level = Level::kWarn;
  uint32_t subsys = kAll;
  FILE* out = stderr;
  char host[64] = {0};
  std::atomic<Sink> sink{nullptr};
  std::mutex write_mutex;
};

State& state() {
  static State* s = new State();  // never destroyed: logging works during static teardown
  return *s;
}

const char* subsys_name(uint32_t subsys) {
  switch (subsys) {
    case kInit: return "INIT";
    case kBoot: return "BOOT";
    case kNet: return "NET";
    case kColl: return "COLL";
    case kApi: return "API";
    default: return "ALL";
  }
}

const char* level_name(Level level) {
  switch (level) {
    case Level::kWarn: return "WARN";
    case Level::kInfo: return "INFO";
    case Level::kTrace: return "TRACE";
    default: return "NONE";
  }
}

void init_state() {
  State& s = state();
  s.level = parse_level(kDebug.get().c_str());
  s.subsys = parse_subsys(kDebugSubsys.get().c_str());
  gethostname(s.host, sizeof(s.host) - 1);
  std::string path = kDebugFile.get();
  if (!path.empty()) {
    std::string expanded;
    for (size_t i = 0; i < path.size(); ++i) {
      if (path[i] == '%' && i + 1 < path.size() && path[i + 1] == 'h') {
        expanded += s.host;
        ++i;
      } else if (path[i] == '%' && i + 1 < path.size() && path[i + 1] == 'p') {
        expanded += std::to_string(getpid());
        ++i;
      } else {
        expanded += path[i];
      }
    }
    FILE* f = std::fopen(expanded.c_str(), "a");
    if (f != nullptr) {
      setvbuf(f, nullptr, _IOLBF, 0);
      s.out = f;
    } else {
      std::fprintf(stderr, "ciuic WARN cannot open CIUIC_DEBUG_FILE %s: %s; logging to stderr\n",
                   expanded.c_str(), std::strerror(errno));
    }
  }
}

}  // namespace

Level parse_level(const char* text) {
  if (strcasecmp(text, "NONE") == 0 || strcasecmp(text, "OFF") == 0) return Level::kNone;
  if (strcasecmp(text, "INFO") == 0) return Level::kInfo;
  if (strcasecmp(text, "TRACE") == 0) return Level::kTrace;
  return Level::kWarn;  // WARN, and anything unknown: warnings are never silenced by a typo
}

uint32_t parse_subsys(const char* text) {
  std::string s(text);
  bool exclude = !s.empty() && s[0] == '^';
  if (exclude) s.erase(0, 1);
  uint32_t mask = 0;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string tok = s.substr(start, end - start);
    static const struct {
      const char* name;
      uint32_t bit;
    } kNames[] = {{"INIT", kInit}, {"BOOT", kBoot}, {"NET", kNet},
                  {"COLL", kColl}, {"API", kApi},   {"ALL", kAll}};
    for (const auto& n : kNames)
      if (strcasecmp(tok.c_str(), n.name) == 0) mask |= n.bit;
    start = end + 1;
  }
  if (mask == 0 && !exclude) return kAll;
  return exclude ? ~mask : mask;
}

bool enabled(Level level, uint32_t subsys) {
  State& s = state();
  std::call_once(s.once, init_state);
  if (level == Level::kWarn) return true;  // warnings always pass the subsystem filter
  return level <= s.level && (subsys & s.subsys) != 0;
}

void set_sink(Sink sink) { state().sink.store(sink); }

void write(Level level, uint32_t subsys, const char* file, int line, const char* fmt, ...) {
  State& s = state();
  char message[2048];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(message, sizeof(message), fmt, args);
  va_end(args);
  if (Sink sink = s.sink.load()) {
    sink(level, subsys, file, line, message);
    return;
  }
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  std::lock_guard<std::mutex> lock(s.write_mutex);
  std::fprintf(s.out, "%s:%d:%ld ciuic %s %s %s:%d %s\n", s.host, getpid(),
               static_cast<long>(syscall(SYS_gettid)), level_name(level), subsys_name(subsys), base,
               line, message);
}

}  // namespace ciuic::log
