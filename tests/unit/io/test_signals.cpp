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
