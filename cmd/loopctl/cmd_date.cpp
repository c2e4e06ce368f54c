// loopctl date: the spec's "Display the current date with call_later()" example.
#include <sys/time.h>

#include <cstdio>
#include <ctime>

#include "command.hpp"

namespace loopctl {
namespace {

// "YYYY-MM-DD HH:MM:SS.ffffff" in local time, always six digits of microseconds.
void print_date(double unix_seconds) {
  std::time_t secs = static_cast<std::time_t>(unix_seconds);
  long micros = static_cast<long>((unix_seconds - static_cast<double>(secs)) * 1e6 + 0.5);
  if (micros >= 1000000) {
    ++secs;
    micros -= 1000000;
  }
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  std::printf("%s.%06ld\n", buf, micros);
  std::fflush(stdout);
}

double wall_now() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

}  // namespace

struct Ticker {
  loop::EventLoop& lp;
  double interval;
  double end_time;
  // The date shown: the wall clock, advanced by loop time (so it also runs on a virtual clock).
  double wall_start;
  double loop_start;
};

// External linkage: traces and debug reports name callbacks by their exported symbol.
void display_date(Ticker* t) {
  print_date(t->wall_start + (t->lp.time() - t->loop_start));
  if (t->lp.time() + t->interval < t->end_time)
    t->lp.call_later(t->interval, display_date, t);
  else
    t->lp.stop();
}

namespace {

class Date final : public Command {
 public:
  const char* name() const override { return "date"; }
  const char* description() const override {
    return "Print the local date every --interval seconds with call_later() for --duration "
           "seconds";
  }
  void setup(CLI::App& app) override {
    app.add_option("--interval", interval_, "Seconds between two lines")->check(positive_number());
    app.add_option("--duration", duration_, "Seconds to run")->check(non_negative_number());
  }
  int run(loop::EventLoop& lp) override {
    Ticker t{lp, interval_, lp.time() + duration_, wall_now(), lp.time()};
    // Schedule the first call to display_date(); it reschedules itself while time remains.
    lp.call_soon(display_date, &t);
    int caught = 0;
    stop_on_interrupt(lp, caught);
    lp.run_forever();
    lp.close();
    return caught ? 128 + caught : 0;
  }

 private:
  double interval_ = 1.0;
  double duration_ = 5.0;
};

}  // namespace

std::unique_ptr<Command> make_date() {
  return std::make_unique<Date>();
}

}  // namespace loopctl
