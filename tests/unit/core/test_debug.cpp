// Debug mode (CPython test_base_events.py: test_set_debug, test_slow_callback_duration /
// test_log_slow_callbacks, test_call_soon_non_threadsafe / test_thread_safety checks).
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <loop/loop.hpp>
#include <sstream>
#include <string>
#include <thread>

namespace {
std::string capture_stderr_of(const std::function<void()>& fn) {
  std::fflush(stderr);
  int saved = dup(2);
  char path[] = "/tmp/loop_debug_XXXXXX";
  int fd = mkstemp(path);
  dup2(fd, 2);
  close(fd);
  fn();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(path);
  return ss.str();
}
}  // namespace

// Not static nor inlined: the report names where the handle was created by its symbol.
[[gnu::noinline]] loop::Handle schedule_slow_callback_for_test(loop::EventLoop& lp) {
  return lp.call_soon(
      loop::named("slow_cb", [] { std::this_thread::sleep_for(std::chrono::milliseconds(120)); }));
}

TEST_CASE("test_set_debug") {
  loop::EventLoop lp;
  lp.set_debug(true);
  CHECK(lp.get_debug());
  lp.set_debug(false);
  CHECK_FALSE(lp.get_debug());
}

TEST_CASE("test_loop_debug_env_honoured_by_new_event_loop") {
  ::setenv("LOOP_DEBUG", "1", 1);
  auto on = loop::new_event_loop();
  ::setenv("LOOP_DEBUG", "", 1);  // empty: off, as PYTHONASYNCIODEBUG
  auto off = loop::new_event_loop();
  ::unsetenv("LOOP_DEBUG");
  auto unset = loop::new_event_loop();
  CHECK(on->get_debug());
  CHECK_FALSE(off->get_debug());
  CHECK_FALSE(unset->get_debug());
}

TEST_CASE("test_log_slow_callbacks") {
  loop::EventLoop lp;
  lp.set_debug(true);
  lp.slow_callback_duration = 0.05;
  std::string err = capture_stderr_of([&] {
    schedule_slow_callback_for_test(lp);
    lp.call_soon(loop::named("fast_cb", [] {}));
    lp.stop();
    lp.run_forever();
  });
  INFO(err);
  // asyncio: "Executing <Handle slow_cb() created at file:line> took 0.120 seconds"
  CHECK(err.find("Executing <Handle slow_cb() created at schedule_slow_callback_for_test") !=
        std::string::npos);
  CHECK(err.find(" took 0.1") != std::string::npos);
  CHECK(err.find("fast_cb") == std::string::npos);

  // Not in debug mode: no report.
  lp.set_debug(false);
  std::string quiet = capture_stderr_of([&] {
    schedule_slow_callback_for_test(lp);
    lp.stop();
    lp.run_forever();
  });
  CHECK(quiet.find("Executing") == std::string::npos);
}

TEST_CASE("test_debug_handle_repr_names_origin") {
  loop::EventLoop lp;
  loop::Handle plain = schedule_slow_callback_for_test(lp);
  CHECK(plain.repr() == "<Handle slow_cb()>");
  lp.set_debug(true);
  loop::Handle h = schedule_slow_callback_for_test(lp);
  INFO(h.repr());
  CHECK(h.repr().rfind("<Handle slow_cb() created at schedule_slow_callback_for_test", 0) == 0);
  lp.close();
}

TEST_CASE("test_call_soon_from_other_thread_in_debug_mode_raises") {
  loop::EventLoop lp;
  lp.set_debug(true);
  std::atomic<bool> running{false};
  std::string error;
  bool timer_error = false;
  lp.call_soon([&] { running = true; });
  std::thread other([&] {
    while (!running) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    try {
      lp.call_soon([] {});
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    try {
      lp.call_later(1, [] {});
    } catch (const std::runtime_error&) {
      timer_error = true;
    }
    lp.call_soon_threadsafe([&] { lp.stop(); });  // the threadsafe one is fine
  });
  lp.run_forever();
  other.join();
  CHECK(error == "Non-thread-safe operation invoked on an event loop other than the current one");
  CHECK(timer_error);
}
