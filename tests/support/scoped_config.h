// Test helpers shared by every suite.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/config.h"

namespace ciuic::testing {

// Sets a CIUIC_* parameter for the lifetime of the object, restoring the previous
// override afterwards.
class ScopedConfig {
 public:
  ScopedConfig(std::string name, std::string value) : name_(std::move(name)) {
    config::set_override(name_, std::move(value));
  }
  ~ScopedConfig() { config::set_override(name_, std::nullopt); }
  ScopedConfig(const ScopedConfig&) = delete;
  ScopedConfig& operator=(const ScopedConfig&) = delete;

 private:
  std::string name_;
};

// Runs fn(rank) on n threads and joins them all; a thread per rank is how tests put
// several ranks in one process.
void run_threads(int n, const std::function<void(int)>& fn);

}  // namespace ciuic::testing
