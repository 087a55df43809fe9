#include "base/config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>

#include "base/log.h"

namespace ciuic::config {
namespace {

struct Registry {
  std::mutex mutex;
  std::atomic<uint64_t> generation{1};  // 0 means "never read" in a parameter's cache
  std::vector<const Param*> params;
  std::map<std::string, std::string, std::less<>> overrides;
  std::set<std::string, std::less<>> warned;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: params outlive static teardown
  return *r;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void warn_once(const char* name, const std::string& text, const char* what, const std::string& dflt) {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    if (!r.warned.insert(name).second) return;
  }
  CIUIC_LOG_WARN(log::kInit, "%s=%s is not %s; using the default %s", name, text.c_str(), what,
                 dflt.c_str());
}

}  // namespace

Param::Param(const char* name, Type type, std::string default_text, const char* doc)
    : name_(name), type_(type), default_text_(std::move(default_text)), doc_(doc) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.params.push_back(this);
}

std::optional<std::string> Param::raw() const {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.overrides.find(name_);
    if (it != r.overrides.end()) return it->second;
  }
  const char* v = std::getenv(name_);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

bool Param::is_set() const { return raw().has_value(); }

std::string Param::current_text() const {
  auto v = raw();
  return v ? *v : default_text_;
}

bool parse_int(std::string_view text, int64_t* value) {
  std::string s(text);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  if (s.empty()) return false;
  int64_t mult = 1;
  switch (std::toupper(static_cast<unsigned char>(s.back()))) {
    case 'K': mult = int64_t{1} << 10; break;
    case 'M': mult = int64_t{1} << 20; break;
    case 'G': mult = int64_t{1} << 30; break;
    case 'T': mult = int64_t{1} << 40; break;
    default: break;
  }
  if (mult != 1) s.pop_back();
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 0);
  if (errno != 0 || end == s.c_str() || *end != '\0') return false;
  if (v != 0 && (v > INT64_MAX / mult || v < INT64_MIN / mult)) return false;
  *value = static_cast<int64_t>(v) * mult;
  return true;
}

IntParam::IntParam(const char* name, int64_t default_value, const char* doc)
    : Param(name, Type::kInt, std::to_string(default_value), doc), default_value_(default_value) {}

int64_t IntParam::get() const {
  const uint64_t generation = configuration_generation();
  if (cached_generation_.load(std::memory_order_acquire) == generation)
    return cached_value_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(refresh_mutex_);
  const int64_t value = parse();
  cached_value_.store(value, std::memory_order_relaxed);
  cached_generation_.store(generation, std::memory_order_release);
  return value;
}

int64_t IntParam::parse() const {
  auto v = raw();
  if (!v) return default_value_;
  int64_t parsed;
  if (!parse_int(*v, &parsed)) {
    warn_once(name(), *v, "an integer", default_text());
    return default_value_;
  }
  return parsed;
}

BoolParam::BoolParam(const char* name, bool default_value, const char* doc)
    : Param(name, Type::kBool, default_value ? "1" : "0", doc), default_value_(default_value) {}

bool BoolParam::get() const {
  auto v = raw();
  if (!v) return default_value_;
  std::string s = lower(*v);
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  warn_once(name(), *v, "a boolean (1/0, true/false, yes/no, on/off)", default_text());
  return default_value_;
}

StringParam::StringParam(const char* name, const char* default_value, const char* doc)
    : Param(name, Type::kString, default_value, doc) {}

std::string StringParam::get() const { return current_text(); }

std::vector<const Param*> all_params() {
  Registry& r = registry();
  std::vector<const Param*> out;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    out = r.params;
  }
  std::sort(out.begin(), out.end(),
            [](const Param* a, const Param* b) { return std::string_view(a->name()) < b->name(); });
  return out;
}

const Param* find_param(std::string_view name) {
  for (const Param* p : all_params())
    if (name == p->name()) return p;
  return nullptr;
}

uint64_t configuration_generation() {
  return registry().generation.load(std::memory_order_acquire);
}

void reload_environment() { registry().generation.fetch_add(1, std::memory_order_acq_rel); }

void set_override(std::string_view name, std::optional<std::string> value) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.generation.fetch_add(1, std::memory_order_acq_rel);
  r.overrides.erase(std::string(name));
  if (value) r.overrides.emplace(std::string(name), *value);
}

std::optional<std::string> foreign_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

}  // namespace ciuic::config
