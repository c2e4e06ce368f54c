// add_signal_handler / remove_signal_handler: callbacks run as ordinary loop callbacks.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <loop/loop.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collecting_tracer.hpp"

namespace {

void (*disposition(int sig))(int) {
  struct sigaction sa;
  sigaction(sig, nullptr, &sa);
  return sa.sa_handler;
}

void run_bounded(loop::EventLoop& lp, double seconds = 5) {
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

TEST_CASE("raise(SIGUSR1) runs the handler later, as a loop callback with its arguments") {
  loop::EventLoop lp;
  std::vector<std::string> events;
  lp.add_signal_handler(
      SIGUSR1,
      [&](const std::string& what, int n) {
        events.push_back(what + std::to_string(n));
        CHECK(lp.is_running());
        lp.stop();
      },
      std::string("usr1-"), 7);
  lp.call_soon([&] {
    ::raise(SIGUSR1);
    events.push_back("raised");  // the handler never runs inside raise()
  });
  run_bounded(lp);
  REQUIRE(events.size() == 2);
  CHECK(events[0] == "raised");
  CHECK(events[1] == "usr1-7");
  CHECK(lp.remove_signal_handler(SIGUSR1));
  lp.close();
}

TEST_CASE("a signal sent by another thread wakes a sleeping loop, and is traced") {
  loop::EventLoop lp;
  auto rec = std::make_shared<test::CollectingTracer>();
  lp.set_tracer(rec);
  std::thread::id handler_thread;
  lp.add_signal_handler(SIGUSR2, [&] {
    handler_thread = std::this_thread::get_id();
    lp.stop();
  });
  std::thread killer([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::kill(::getpid(), SIGUSR2);
  });
  run_bounded(lp);
  killer.join();
  CHECK(handler_thread == std::this_thread::get_id());
  bool traced = false;
  for (auto& r : rec->records)
    if (r["ev"] == "signal" && r["signal"] == SIGUSR2 && r["name"] == "SIGUSR2") traced = true;
  CHECK(traced);
  lp.remove_signal_handler(SIGUSR2);
  lp.close();
}

TEST_CASE("SIGKILL, SIGSTOP and invalid numbers are refused with std::invalid_argument") {
  loop::EventLoop lp;
  CHECK_THROWS_AS(lp.add_signal_handler(SIGKILL, [] {}), std::invalid_argument);
  CHECK_THROWS_AS(lp.add_signal_handler(SIGSTOP, [] {}), std::invalid_argument);
  CHECK_THROWS_AS(lp.add_signal_handler(0, [] {}), std::invalid_argument);
  CHECK_THROWS_AS(lp.add_signal_handler(NSIG, [] {}), std::invalid_argument);
  CHECK_THROWS_AS(lp.add_signal_handler(-3, [] {}), std::invalid_argument);
  CHECK_THROWS_AS(lp.remove_signal_handler(NSIG + 5), std::invalid_argument);
  CHECK_FALSE(lp.remove_signal_handler(SIGKILL));  // valid, just never registered (asyncio)
  lp.close();
}

TEST_CASE("remove_signal_handler returns whether one was removed and restores SIG_DFL") {
  loop::EventLoop lp;
  CHECK_FALSE(lp.remove_signal_handler(SIGUSR1));
  REQUIRE(disposition(SIGUSR1) == SIG_DFL);
  lp.add_signal_handler(SIGUSR1, [] {});
  CHECK(disposition(SIGUSR1) != SIG_DFL);
  CHECK(lp.remove_signal_handler(SIGUSR1));
  CHECK(disposition(SIGUSR1) == SIG_DFL);
  CHECK_FALSE(lp.remove_signal_handler(SIGUSR1));
  lp.close();
}

TEST_CASE("re-adding a signal handler replaces it") {
  loop::EventLoop lp;
  int first = 0, second = 0;
  lp.add_signal_handler(SIGUSR1, [&] { ++first; });
  lp.add_signal_handler(SIGUSR1, [&] {
    ++second;
    lp.stop();
  });
  lp.call_soon([] { ::raise(SIGUSR1); });
  run_bounded(lp);
  CHECK(first == 0);
  CHECK(second == 1);
  lp.remove_signal_handler(SIGUSR1);
  lp.close();
}

TEST_CASE("each delivery runs the handler, and close() removes every handler") {
  loop::EventLoop lp;
  int count = 0;
  lp.add_signal_handler(SIGUSR1, [&] { ++count; });
  lp.add_signal_handler(SIGUSR2, [&] { lp.stop(); });
  lp.call_soon([] { ::raise(SIGUSR1); });
  lp.call_later(0.02, [] { ::raise(SIGUSR1); });
  lp.call_later(0.04, [] { ::raise(SIGUSR2); });
  run_bounded(lp);
  CHECK(count == 2);
  lp.close();
  CHECK(disposition(SIGUSR1) == SIG_DFL);
  CHECK(disposition(SIGUSR2) == SIG_DFL);
  CHECK_THROWS_AS(lp.add_signal_handler(SIGUSR1, [] {}), std::runtime_error);  // closed
}

TEST_CASE("signals run in the order they were raised, not sorted by number") {
  // asio's signal_set replayed signals counted per number, lowest first: USR1 (10) before
  // USR2 (12) whatever the order. The wakeup pipe keeps the order, as asyncio's self-pipe.
  loop::EventLoop lp;
  std::vector<int> order;
  for (int sig : {SIGUSR1, SIGUSR2, SIGHUP})
    lp.add_signal_handler(sig, [&, sig] { order.push_back(sig); });
  const std::vector<int> raised{SIGUSR2, SIGHUP, SIGUSR1, SIGUSR2, SIGUSR1, SIGHUP};
  lp.call_soon([&] {
    for (int sig : raised) ::raise(sig);
  });
  lp.call_later(0.05, [&] { lp.stop(); });
  run_bounded(lp);
  CHECK(order == raised);
  lp.close();
}

TEST_CASE("a signal runs its handler two iterations later, the one current then") {
  loop::EventLoop lp;
  std::vector<std::string> events;
  lp.add_signal_handler(SIGUSR1, [&] { events.push_back("first handler"); });
  lp.call_soon([&] {
    ::raise(SIGUSR1);
    // Next iteration: the poll queues the pipe's reader after this callback...
    lp.call_soon([&] {
      events.push_back("next");
      // ...which then queues the handler current when it runs: this one.
      lp.add_signal_handler(SIGUSR1, [&] { events.push_back("second handler"); });
      lp.call_soon([&] { events.push_back("after next"); });
    });
  });
  lp.call_later(0.05, [&] { lp.stop(); });
  run_bounded(lp);
  CHECK(events == std::vector<std::string>{"next", "after next", "second handler"});
  lp.remove_signal_handler(SIGUSR1);
  lp.close();
}

TEST_CASE("a full wakeup pipe drops bytes, not signals, and never blocks the signal handler") {
  loop::EventLoop lp;
  int usr1 = 0, usr2 = 0;
  lp.add_signal_handler(SIGUSR1, [&] { ++usr1; });
  lp.add_signal_handler(SIGUSR2, [&] { ++usr2; });
  // The loop does not run: each raise() writes a byte, far more than a pipe holds (64 KiB).
  for (int i = 0; i < 100000; ++i) ::raise(SIGUSR1);
  ::raise(SIGUSR2);  // its byte finds the pipe full
  lp.call_later(0.05, [&] { lp.stop(); });
  run_bounded(lp, 30);
  CHECK(usr2 == 1);
  CHECK(usr1 > 1);
  CHECK(usr1 < 100000);
  // The pipe works as before: one more signal, one more run.
  int before = usr2;
  lp.call_soon([] { ::raise(SIGUSR2); });
  lp.call_later(0.05, [&] { lp.stop(); });
  run_bounded(lp);
  CHECK(usr2 == before + 1);
  lp.close();
}

TEST_CASE("two loops handling the same signal both run their handler") {
  auto a = std::make_unique<loop::EventLoop>();
  loop::EventLoop b;
  int ran_a = 0, ran_b = 0;
  a->add_signal_handler(SIGUSR1, [&] { ++ran_a; });
  b.add_signal_handler(SIGUSR1, [&] { ++ran_b; });
  ::raise(SIGUSR1);
  for (loop::EventLoop* lp : {a.get(), &b}) {
    lp->call_later(0.02, [lp] { lp->stop(); });
    run_bounded(*lp);
  }
  CHECK(ran_a == 1);
  CHECK(ran_b == 1);
  // The disposition is the loops' until the last of them lets go (here: a destroyed unclosed).
  CHECK(a->remove_signal_handler(SIGUSR1));
  CHECK(disposition(SIGUSR1) != SIG_DFL);
  a->add_signal_handler(SIGUSR1, [] {});
  b.close();
  CHECK(disposition(SIGUSR1) != SIG_DFL);
  a.reset();
  CHECK(disposition(SIGUSR1) == SIG_DFL);
}
