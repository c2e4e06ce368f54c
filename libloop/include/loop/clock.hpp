// The loop's clock. loop.time() reads it; timers are measured against it; the trace stamps with it.
#pragma once

#include <memory>

namespace loop {

class Clock {
 public:
  virtual ~Clock() = default;
  /// Seconds, monotonic (asyncio's time.monotonic()).
  virtual double now() const = 0;
  /// The granularity timers are compared with (asyncio's _clock_resolution).
  virtual double resolution() const = 0;
  /// A virtual clock does not wait: when the loop would sleep until the next timer it moves
  /// the clock there instead.
  virtual bool is_virtual() const { return false; }
  virtual void advance_to(double /*when*/) {}
};

/// std::chrono::steady_clock in seconds: the default.
std::unique_ptr<Clock> make_steady_clock();

/// Simulated time starting at `start`: timers fire in order without real waiting, for
/// deterministic tests and loopctl --virtual-clock. I/O is still polled (without blocking while
/// a timer is pending).
std::unique_ptr<Clock> make_virtual_clock(double start = 0.0);

}  // namespace loop
