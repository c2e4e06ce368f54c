// Signals arriving in a burst: 1,000 SIGUSR1 sent from other threads while the loop runs (and
// is busy). Standard signals coalesce in the kernel while pending, so the handler runs between
// once and 1,000 times; what must hold is that it runs as a loop callback (on the loop's
// thread), the loop survives, and it still answers the next signal and its timers.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <thread>
#include <vector>

namespace {

void run_bounded(loop::EventLoop& lp, double seconds = 20) {
  bool timed_out = false;
  auto guard = lp.call_later(seconds, [&] {
    timed_out = true;
    lp.stop();
  });
  lp.run_forever();
  guard.cancel();
  REQUIRE_FALSE(timed_out);
}

}  // namespace

TEST_CASE("signal burst: 1,000 SIGUSR1 from another thread, the loop survives and answers") {
  loop::EventLoop lp;
  const auto loop_thread = std::this_thread::get_id();
  int runs = 0;
  bool off_thread = false;
  lp.add_signal_handler(SIGUSR1, [&] {
    ++runs;
    if (std::this_thread::get_id() != loop_thread) off_thread = true;
  });
  std::atomic<bool> sent{false};
  std::thread sender;
  lp.call_soon([&] {
    sender = std::thread([&] {
      for (int i = 0; i < 1000; ++i) ::kill(::getpid(), SIGUSR1);
      sent = true;
    });
  });
  // Keep the loop busy with callbacks meanwhile: signals land between them.
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    if (sent && runs > 0)
      lp.stop();
    else
      lp.call_soon(tick);
  };
  lp.call_soon(tick);
  run_bounded(lp);
  sender.join();
  CHECK(runs >= 1);
  CHECK(runs <= 1000);
  CHECK_FALSE(off_thread);
  CHECK(ticks > 0);

  // Whatever was still pending drains; then one more signal is one more run, and timers fire.
  lp.call_later(0.1, [&] { lp.stop(); });
  run_bounded(lp);
  int before = runs;
  lp.call_soon([] { ::kill(::getpid(), SIGUSR1); });
  bool timer = false;
  lp.call_later(0.05, [&] { timer = true; });
  std::function<void()> wait = [&] {
    if (runs > before && timer)
      lp.stop();
    else
      lp.call_later(0.005, wait);
  };
  lp.call_soon(wait);
  run_bounded(lp);
  CHECK(runs == before + 1);
  CHECK(timer);
  lp.remove_signal_handler(SIGUSR1);
  lp.close();
}

TEST_CASE("signal burst: two signals from four threads at once, both handlers keep working") {
  loop::EventLoop lp;
  std::atomic<int> usr1{0}, usr2{0};  // atomics only so a wrong-thread run is not also a race
  lp.add_signal_handler(SIGUSR1, [&] { ++usr1; });
  lp.add_signal_handler(SIGUSR2, [&] { ++usr2; });
  std::vector<std::thread> senders;
  std::atomic<int> done{0};
  lp.call_soon([&] {
    for (int t = 0; t < 4; ++t)
      senders.emplace_back([&, t] {
        for (int i = 0; i < 250; ++i) ::kill(::getpid(), t % 2 ? SIGUSR2 : SIGUSR1);
        ++done;
      });
  });
  std::function<void()> check = [&] {
    if (done == 4 && usr1 > 0 && usr2 > 0)
      lp.stop();
    else
      lp.call_later(0.001, check);
  };
  lp.call_soon(check);
  run_bounded(lp);
  for (auto& s : senders) s.join();
  // Let a delivery still pending land while the handlers are there (after close() it would be
  // SIG_DFL again, which terminates).
  lp.call_later(0.1, [&] { lp.stop(); });
  run_bounded(lp);
  CHECK(usr1 >= 1);
  CHECK(usr1 <= 500);
  CHECK(usr2 >= 1);
  CHECK(usr2 <= 500);
  lp.close();  // removes both handlers: SIG_DFL again
  struct sigaction sa {};
  ::sigaction(SIGUSR1, nullptr, &sa);
  CHECK(sa.sa_handler == SIG_DFL);
}
