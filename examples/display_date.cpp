// "Display the current date with call_later()" from the asyncio docs: a callback that prints
// the date every second for 5 seconds, rescheduling itself with call_later().
#include <sys/time.h>

#include <cstdio>
#include <ctime>
#include <loop/loop.hpp>

void print_now() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  std::tm tm{};
  localtime_r(&tv.tv_sec, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  std::printf("%s.%06ld\n", buf, static_cast<long>(tv.tv_usec));
  std::fflush(stdout);
}

void display_date(double end_time, loop::EventLoop& loop) {
  print_now();
  if (loop.time() + 1.0 < end_time)
    loop.call_later(1, display_date, end_time, std::ref(loop));
  else
    loop.stop();
}

int main() {
  loop::EventLoop& loop = loop::get_event_loop();

  // Schedule the first call to display_date()
  double end_time = loop.time() + 5.0;
  loop.call_soon(display_date, end_time, std::ref(loop));

  // Blocking call interrupted by loop.stop()
  loop.run_forever();
  loop.close();
}
