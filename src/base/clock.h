// Monotonic time and deadlines. Every wait in ciuic takes a Deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>

namespace ciuic {

using Clock = std::chrono::steady_clock;

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

class Deadline {
 public:
  static Deadline after_ms(int64_t ms) {
    if (ms < 0) return never();
    return Deadline(Clock::now() + std::chrono::milliseconds(ms));
  }
  static Deadline never() { return Deadline(Clock::time_point::max()); }

  bool is_never() const { return at_ == Clock::time_point::max(); }
  bool expired() const { return !is_never() && Clock::now() >= at_; }
  int64_t remaining_ms() const {
    if (is_never()) return std::numeric_limits<int64_t>::max();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - Clock::now()).count();
    return left < 0 ? 0 : left;
  }
  // A poll() timeout: the time left, capped so that callers re-check abort flags.
  int poll_timeout_ms(int cap_ms) const {
    int64_t left = remaining_ms();
    return static_cast<int>(left < cap_ms ? left : cap_ms);
  }
  Clock::time_point at() const { return at_; }

 private:
  explicit Deadline(Clock::time_point at) : at_(at) {}
  Clock::time_point at_;
};

}  // namespace ciuic
