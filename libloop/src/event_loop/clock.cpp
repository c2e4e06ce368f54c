// The steady clock and the virtual clock behind loop.time().
#include "loop/clock.hpp"

#include <chrono>

namespace loop {

namespace {

class SteadyClock final : public Clock {
 public:
  double now() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // time.get_clock_info('monotonic').resolution, as asyncio uses. The poll rounds its timeout
  // up to whole milliseconds (as asyncio's epoll selector does), so timers never fire early.
  double resolution() const override { return 1e-9; }
};

class VirtualClock final : public Clock {
 public:
  explicit VirtualClock(double start) : now_(start) {}
  double now() const override { return now_; }
  double resolution() const override { return 1e-9; }
  bool is_virtual() const override { return true; }
  void advance_to(double when) override {
    if (when > now_) now_ = when;
  }

 private:
  double now_;
};

}  // namespace

std::unique_ptr<Clock> make_steady_clock() {
  return std::make_unique<SteadyClock>();
}
std::unique_ptr<Clock> make_virtual_clock(double start) {
  return std::make_unique<VirtualClock>(start);
}

}  // namespace loop
