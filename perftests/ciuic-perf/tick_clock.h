// A cheap per-iteration timer for latency loops, as perftest uses get_cycles(): the CPU's
// counter where one can be read without the kernel, converted to time with the steady
// clock read only at the start and the end of the loop. Where the clock source is not in
// the vDSO (an emulated HPET in the Soft-RoCE guest) every steady_clock read is a system
// call and a device access, which would otherwise sit inside every sample.
#pragma once

#include <chrono>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace ciuic::perf {

class TickClock {
 public:
  TickClock() : start_time_(std::chrono::steady_clock::now()), start_ticks_(ticks()) {}

  // The counter's value now (steady_clock nanoseconds where there is no cheap counter).
  static uint64_t ticks() {
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#elif defined(__aarch64__)
    uint64_t v;
    asm volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
#else
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
#endif
  }

  // Microseconds per tick, from the steady clock over the span since construction (at
  // least 1 ms, waited out here if the loop was shorter, so the two clock reads' own cost
  // stays small beside it). Call once, after the loop; 0 if the counter did not move.
  double microseconds_per_tick() const {
    uint64_t end_ticks;
    double us;
    do {
      end_ticks = ticks();
      us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start_time_).count();
    } while (us < 1000);
    if (end_ticks <= start_ticks_) return 0;
    return us / static_cast<double>(end_ticks - start_ticks_);
  }

 private:
  std::chrono::steady_clock::time_point start_time_;
  uint64_t start_ticks_;
};

}  // namespace ciuic::perf
