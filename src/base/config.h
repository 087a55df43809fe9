// The one registry of CIUIC_* parameters. Each parameter is declared once, next to the
// code that uses it, as a typed object with a default and one line of documentation:
//
//   static const ciuic::config::IntParam kSockets{"CIUIC_TCP_SOCKETS", 4, "Sockets per channel"};
//   int n = kSockets.get();
//
// Declaring registers it; `ciuic-perf --print-config` and CIUIC_DEBUG=INFO list them all.
// Values come from the environment (read once, lazily) unless a test overrides them.
// This file is the only place in ciuic that reads the environment: launcher variables
// (RANK, OMPI_COMM_WORLD_RANK, SLURM_PROCID ...) are read through foreign_env().
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ciuic::config {

enum class Type { kInt, kBool, kString };

class Param {
 public:
  Param(const char* name, Type type, std::string default_text, const char* doc);
  Param(const Param&) = delete;
  Param& operator=(const Param&) = delete;

  const char* name() const { return name_; }
  Type type() const { return type_; }
  const char* doc() const { return doc_; }
  const std::string& default_text() const { return default_text_; }
  // The value in force as text, and whether it came from the environment or an override.
  std::string current_text() const;
  bool is_set() const;

 protected:
  std::optional<std::string> raw() const;  // env value or override, if any

 private:
  const char* name_;
  Type type_;
  std::string default_text_;
  const char* doc_;
};

class IntParam : public Param {
 public:
  IntParam(const char* name, int64_t default_value, const char* doc);
  // Accepts decimal, 0x-hex, and K/M/G/T suffixes (powers of 1024). A value that does
  // not parse logs one warning and the default is used.
  int64_t get() const;

 private:
  int64_t parse() const;
  int64_t default_value_;
  // The parsed value, kept until an override changes the configuration: get() sits on
  // every operation's path and must not scan the environment each time.
  mutable std::atomic<int64_t> cached_value_{0};
  mutable std::atomic<uint64_t> cached_generation_{0};
  mutable std::mutex refresh_mutex_;
};

class BoolParam : public Param {
 public:
  BoolParam(const char* name, bool default_value, const char* doc);
  bool get() const;  // 1/0, true/false, yes/no, on/off

 private:
  bool default_value_;
};

class StringParam : public Param {
 public:
  StringParam(const char* name, const char* default_value, const char* doc);
  std::string get() const;
};

// Every registered parameter, sorted by name.
std::vector<const Param*> all_params();
const Param* find_param(std::string_view name);

// Bumped by every set_override(); a parameter's cached value is good while it matches.
uint64_t configuration_generation();

// Forgets every cached value: for tests (or tools) that change the process environment
// with setenv() after parameters were first read.
void reload_environment();

// Test and tool hook: makes `name` read as `value` (nullopt removes the override).
void set_override(std::string_view name, std::optional<std::string> value);

// A variable of another tool (launcher, MPI, Slurm, torchrun). Not a CIUIC_* parameter.
std::optional<std::string> foreign_env(const char* name);

// Parses "4", "64K", "1M", "0x10" -> value. False if it does not parse.
bool parse_int(std::string_view text, int64_t* value);

}  // namespace ciuic::config
