// loop_micro: the loop micro-benchmarks, the same work as bench/micro/micro.py does on asyncio
// and uvloop. One JSON line per benchmark on stdout.
//   loop_micro [call_soon|timers|timers_cancel|add_reader|sock_pingpong|executor|all]
//              [--scale F]
// --scale multiplies the counts (0.1 for a smoke run).
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <loop/loop.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace {

double wall() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

// 1,000,000 callbacks scheduled with call_soon, then run (one batch).
void bench_call_soon(long n) {
  loop::EventLoop lp;
  long count = 0;
  double t0 = wall();
  for (long i = 0; i < n; ++i) lp.call_soon([&count] { ++count; });
  double t1 = wall();
  lp.call_soon([&lp] { lp.stop(); });
  lp.run_forever();
  double t2 = wall();
  std::printf(
      "{\"bench\":\"call_soon\",\"impl\":\"libloop\",\"n\":%ld,\"ran\":%ld,"
      "\"schedule_us\":%.4f,\"run_us\":%.4f,\"per_callback_us\":%.4f,\"callbacks_per_s\":%.0f}\n",
      n, count, (t1 - t0) * 1e6 / n, (t2 - t1) * 1e6 / n, (t2 - t0) * 1e6 / n, n / (t2 - t0));
}

// The same schedule again, each time on a new loop in the same process, until a batch takes
// no page fault (at most 4 batches): that batch's figure. By then the memory of the batches
// before (the handles, the timer heap's array, the vector of TimerHandles) is reused, and
// glibc's thresholds have adapted. First-touch page faults cost about 2 µs each on a virtual
// machine, 2.2 per 100 timers; schedule_us is the fresh-process figure.
struct WarmFigure {
  double us = 0;
  long page_faults = 0;
};

long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

WarmFigure timers_schedule_warm(long n) {
  WarmFigure fig;
  for (int batch = 0; batch < 4; ++batch) {
    loop::EventLoop lp;
    std::mt19937 rng(42);
    std::uniform_real_distribution<double> delay(0.0, 1.0);
    long fired = 0;
    auto cb = [&fired](long) { ++fired; };
    std::vector<loop::TimerHandle> handles;
    handles.reserve(n);  // as in bench_timers: reserved before the clock starts
    long faults = minor_faults();
    double t0 = wall();
    for (long i = 0; i < n; ++i) handles.push_back(lp.call_later(delay(rng), std::ref(cb), i));
    double t1 = wall();
    fig = {(t1 - t0) * 1e6 / n, minor_faults() - faults};
    if (fig.page_faults == 0) break;
  }
  return fig;
}

// 100,000 call_later timers with random delays in [0, 1) s; with cancel_half, every other one
// is cancelled right after all are scheduled. Lateness = the loop's time when it ran - when().
// Timers due before the loop starts running (scheduling 100,000 takes milliseconds) are late
// by construction, so the lateness of those due after the start is reported on its own too:
// that part is the loop's doing.
void bench_timers(long n, bool cancel_half) {
  loop::EventLoop lp;
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> delay(0.0, 1.0);
  std::vector<double> late;
  late.reserve(n);
  double late_max_after_start = 0;
  double started = 0;  // the loop's time when run_forever was called
  std::vector<loop::TimerHandle> handles;
  handles.reserve(n);
  long expected = cancel_half ? n - n / 2 : n;
  long fired = 0, fired_cancelled = 0;
  // One callback for all, each timer passing its index, as micro.py's loop.call_later(delay,
  // cb, i) does: a handle holds a reference to cb and the argument, not a copy of cb's state.
  auto cb = [&](long i) {
    double when = handles[i].when();
    double l = lp.time() - when;
    late.push_back(l);
    if (when >= started) late_max_after_start = std::max(late_max_after_start, l);
    if (cancel_half && i % 2 == 1) ++fired_cancelled;
    if (++fired == expected) lp.stop();
  };
  double t0 = wall();
  for (long i = 0; i < n; ++i) handles.push_back(lp.call_later(delay(rng), std::ref(cb), i));
  double t1 = wall();
  if (cancel_half)
    for (long i = 1; i < n; i += 2) handles[i].cancel();
  double t2 = wall();
  started = lp.time();
  lp.run_forever();
  double mx = late.empty() ? 0 : *std::max_element(late.begin(), late.end());
  handles.clear();
  WarmFigure warm = cancel_half ? WarmFigure{} : timers_schedule_warm(n);
  std::printf(
      "{\"bench\":\"%s\",\"impl\":\"libloop\",\"n\":%ld,\"fired\":%ld,\"fired_cancelled\":%ld,"
      "\"schedule_us\":%.4f,\"schedule_warm_us\":%.4f,\"warm_page_faults\":%ld,\"cancel_us\":%.4f,"
      "\"late_p99_ms\":%.3f,"
      "\"late_max_ms\":%.3f,\"late_max_after_start_ms\":%.3f}\n",
      cancel_half ? "timers_cancel" : "timers", n, fired, fired_cancelled, (t1 - t0) * 1e6 / n,
      warm.us, warm.page_faults, cancel_half ? (t2 - t1) * 1e6 / (n / 2) : 0.0,
      quantile(late, 0.99) * 1e3, mx * 1e3, late_max_after_start * 1e3);
}

// The JSON line of a round-trip benchmark.
void print_trips(const char* bench, long n, long trips, double seconds) {
  std::printf(
      "{\"bench\":\"%s\",\"impl\":\"libloop\",\"n\":%ld,\"trips\":%ld,"
      "\"per_trip_us\":%.4f}\n",
      bench, n, trips, seconds * 1e6 / static_cast<double>(n));
}

// add_reader ping-pong over a socketpair: a byte goes a -> b -> a; n round trips.
void bench_add_reader(long n) {
  loop::EventLoop lp;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) std::abort();
  long trips = 0;
  char c = 'x';
  lp.add_reader(sv[1], [&] {  // b: echo the byte back
    char b;
    if (::read(sv[1], &b, 1) == 1 && ::write(sv[1], &b, 1) != 1) std::abort();
  });
  lp.add_reader(sv[0], [&] {  // a: one round trip done; send the next
    char b;
    if (::read(sv[0], &b, 1) != 1) return;
    if (++trips == n) {
      lp.stop();
      return;
    }
    if (::write(sv[0], &c, 1) != 1) std::abort();
  });
  double t0 = wall();
  if (::write(sv[0], &c, 1) != 1) std::abort();
  lp.run_forever();
  double t1 = wall();
  lp.remove_reader(sv[0]);
  lp.remove_reader(sv[1]);
  ::close(sv[0]);
  ::close(sv[1]);
  print_trips("add_reader", n, trips, t1 - t0);
}

// sock_recv/sock_sendall ping-pong over a socketpair, one task at each end: a byte goes
// a -> b -> a; n round trips. Every sock_recv finds nothing at first and waits for its fd
// (add_reader, a future, the done-callback that removes the reader), the path the sock_*
// echo server takes, without the loopback's cost.
void bench_sock_pingpong(long n) {
  loop::EventLoop lp;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) std::abort();
  long trips = 0;
  auto ping = [&]() -> loop::Coroutine<void> {
    char b;
    for (long i = 0; i < n; ++i) {
      co_await lp.sock_sendall(sv[0], "x");
      if (co_await lp.sock_recv_into(sv[0], std::span<char>(&b, 1)) != 1) break;
      ++trips;
    }
    ::shutdown(sv[0], SHUT_WR);
  };
  auto pong = [&]() -> loop::Coroutine<void> {
    char b;
    while (co_await lp.sock_recv_into(sv[1], std::span<char>(&b, 1)) == 1)
      co_await lp.sock_sendall(sv[1], std::string_view(&b, 1));
  };
  double t0 = wall();
  auto echo = lp.create_task(pong());
  lp.run_until_complete(ping());
  lp.run_until_complete(std::move(echo));
  double t1 = wall();
  ::close(sv[0]);
  ::close(sv[1]);
  print_trips("sock_pingpong", n, trips, t1 - t0);
}

// n sequential run_in_executor round trips on the default pool.
void bench_executor(long n) {
  loop::EventLoop lp;
  long sum = 0;
  auto body = [&]() -> loop::Coroutine<void> {
    for (long i = 0; i < n; ++i) sum += co_await lp.run_in_executor(nullptr, [i] { return i; });
  };
  double t0 = wall();
  lp.run_until_complete(body());
  double t1 = wall();
  std::printf(
      "{\"bench\":\"executor\",\"impl\":\"libloop\",\"n\":%ld,\"ok\":%s,\"per_trip_us\":%.4f}\n", n,
      sum == n * (n - 1) / 2 ? "true" : "false", (t1 - t0) * 1e6 / n);
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = "all";
  double scale = 1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--scale") && i + 1 < argc) {
      scale = std::atof(argv[++i]);
    } else {
      which = argv[i];
    }
  }
  auto count = [&](long n) { return std::max(1L, static_cast<long>(n * scale)); };
  bool all = which == "all";
  if (all || which == "call_soon") bench_call_soon(count(1000000));
  if (all || which == "timers") bench_timers(count(100000), false);
  if (all || which == "timers_cancel") bench_timers(count(100000), true);
  if (all || which == "add_reader") bench_add_reader(count(100000));
  if (all || which == "sock_pingpong") bench_sock_pingpong(count(100000));
  if (all || which == "executor") bench_executor(count(10000));
  return 0;
}
