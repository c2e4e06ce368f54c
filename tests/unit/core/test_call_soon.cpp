// call_soon, call_soon_threadsafe and the Handle they return (CPython test_base_events.py:
// test_call_soon, test__run_once, test_call_soon_threadsafe; test_events.py HandleTests).
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <loop/loop.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

void print_hello_for_test(int* n) {
  ++*n;
}

TEST_CASE("test_call_soon_fifo_10000") {
  loop::EventLoop lp;
  std::vector<int> order;
  order.reserve(10000);
  for (int i = 0; i < 10000; ++i) lp.call_soon([&order, i] { order.push_back(i); });
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  REQUIRE(order.size() == 10000);
  bool in_order = true;
  for (int i = 0; i < 10000; ++i) in_order = in_order && order[static_cast<std::size_t>(i)] == i;
  CHECK(in_order);
}

TEST_CASE("test_call_soon_passes_arguments_and_runs_once") {
  loop::EventLoop lp;
  int sum = 0, calls = 0;
  lp.call_soon([&](int a, int b) { sum += a + b, ++calls; }, 2, 40);
  lp.stop();
  lp.run_forever();
  lp.stop();
  lp.run_forever();
  CHECK(sum == 42);
  CHECK(calls == 1);
}

TEST_CASE("test_handle_cancel") {
  loop::EventLoop lp;
  int n = 0;
  loop::Handle h = lp.call_soon([&] { ++n; });
  CHECK_FALSE(h.cancelled());
  h.cancel();
  CHECK(h.cancelled());
  h.cancel();  // twice: no effect
  lp.stop();
  lp.run_forever();
  CHECK(n == 0);
  // Cancelling after it ran has no effect on what happened.
  loop::Handle h2 = lp.call_soon([&] { ++n; });
  lp.stop();
  lp.run_forever();
  h2.cancel();
  CHECK(n == 1);
}

TEST_CASE("test_handle_names") {
  loop::EventLoop lp;
  int n = 0;
  loop::Handle named = lp.call_soon(loop::named("print_hello", [&] { ++n; }));
  CHECK(named.name() == "print_hello");
  CHECK(named.repr() == "<Handle print_hello()>");
  loop::Handle fnptr = lp.call_soon(&print_hello_for_test, &n);
  CHECK(fnptr.name() == "print_hello_for_test");
  loop::Handle lambda = lp.call_soon([&] { ++n; });
  CHECK(lambda.name().find("lambda") != std::string::npos);
  loop::TimerHandle timer = lp.call_later(10, loop::named("later", [] {}));
  CHECK(timer.repr().rfind("<TimerHandle when=", 0) == 0);
  CHECK(timer.repr().find("later()") != std::string::npos);
  timer.cancel();
  CHECK(timer.repr().find("cancelled") != std::string::npos);
  lp.stop();
  lp.run_forever();
  CHECK(n == 3);
  CHECK(loop::Handle().repr() == "<Handle none>");
}

TEST_CASE("test_call_soon_threadsafe_wakes_a_sleeping_loop") {
  // The loop sleeps in its poll until a timer 10 s away; another thread's call_soon_threadsafe
  // must run at once, not when the timer is due.
  loop::EventLoop lp;
  bool timer_ran = false;
  lp.call_later(10.0, [&] { timer_ran = true; });
  std::atomic<bool> started{false};
  std::thread::id ran_on;
  lp.call_soon([&] { started = true; });
  std::thread other([&] {
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the loop is asleep by now
    lp.call_soon_threadsafe([&] {
      ran_on = std::this_thread::get_id();
      lp.stop();
    });
  });
  auto t0 = std::chrono::steady_clock::now();
  lp.run_forever();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  other.join();
  CHECK(elapsed < 5.0);
  CHECK_FALSE(timer_ran);
  CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("test_call_soon_threadsafe_from_many_threads") {
  loop::EventLoop lp;
  std::atomic<int> posted{0};
  int ran = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i) {
        lp.call_soon_threadsafe([&] {
          if (++ran == 1000) lp.stop();
        });
        ++posted;
      }
    });
  lp.run_forever();
  for (auto& t : threads) t.join();
  CHECK(ran == 1000);
  CHECK(posted == 1000);
}

TEST_CASE("test_call_soon_threadsafe_on_loop_thread_keeps_fifo") {
  // Python: call_soon_threadsafe appends to the same ready queue as call_soon, so from the
  // loop's own thread the order is the order of the calls.
  loop::EventLoop lp;
  std::vector<int> order;
  lp.call_soon([&] {
    lp.call_soon([&] { order.push_back(1); });
    lp.call_soon_threadsafe([&] { order.push_back(2); });
    lp.call_soon([&] { order.push_back(3); });
    lp.call_soon([&] { lp.stop(); });
  });
  lp.run_forever();
  CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("test_call_soon_threadsafe_before_run_forever_keeps_fifo") {
  // The same before the loop runs (no loop thread yet), and with a handle another thread
  // queued before a call_soon that happens after it: the order is the order of the calls.
  loop::EventLoop lp;
  std::vector<int> order;
  lp.call_soon([&] { order.push_back(1); });
  lp.call_soon_threadsafe([&] { order.push_back(2); });
  lp.call_soon([&] { order.push_back(3); });
  std::thread([&] { lp.call_soon_threadsafe([&] { order.push_back(4); }); }).join();
  lp.call_soon([&] { order.push_back(5); });
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  CHECK(order == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("test_handles_held_and_dropped_on_another_thread_are_freed_once") {
  // A handle's count is changed without a locked instruction while one holder is left
  // (handle.hpp); here a second holder on another thread lets go while the loop runs and
  // drops its own reference. Every callback runs once and every callable is destroyed once
  // (ASan and TSan check the rest).
  struct Counted {
    std::atomic<int>* destroyed;
    int* ran;
    bool live = true;
    Counted(std::atomic<int>* d, int* r) : destroyed(d), ran(r) {}
    Counted(Counted&& o) noexcept
        : destroyed(o.destroyed), ran(o.ran), live(std::exchange(o.live, false)) {}
    ~Counted() {
      if (live) ++*destroyed;
    }
    void operator()() { ++*ran; }
  };
  constexpr int kHandles = 5000;
  loop::EventLoop lp;
  std::atomic<int> destroyed{0};
  int ran = 0;
  std::thread poster([&] {
    std::vector<loop::Handle> held;
    for (int i = 0; i < kHandles; ++i) {
      held.push_back(lp.call_soon_threadsafe(Counted(&destroyed, &ran)));
      if (i % 7 == 0) held.clear();  // dropped while the loop may be running them
    }
    held.clear();
    lp.call_soon_threadsafe([&] { lp.stop(); });
  });
  lp.run_forever();
  poster.join();
  CHECK(ran == kHandles);
  CHECK(destroyed == kHandles);
}
