// Running and stopping the loop: run_forever/stop/run_until_complete (CPython
// test_base_events.py: test_run_once, test_run_until_complete*, test_run_forever_*).
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>
#include <vector>

TEST_CASE("test_stop_before_run_forever_runs_one_batch") {
  // asyncio: stop() before run_forever() polls once with a zero timeout, runs the callbacks
  // ready at that time, and returns; what they schedule waits for the next run.
  loop::EventLoop lp;
  std::vector<int> ran;
  lp.call_soon([&] {
    ran.push_back(1);
    lp.call_soon([&] { ran.push_back(3); });
  });
  lp.call_soon([&] { ran.push_back(2); });
  lp.call_later(3600, [&] { ran.push_back(99); });  // must not make the poll wait
  lp.stop();
  double t0 = lp.time();
  lp.run_forever();
  CHECK(lp.time() - t0 < 5.0);
  CHECK(ran == std::vector<int>{1, 2});
  CHECK(lp.ready_count() == 1);
  lp.stop();
  lp.run_forever();
  CHECK(ran == std::vector<int>{1, 2, 3});
  CHECK_FALSE(lp.is_running());
}

TEST_CASE("test_stop_during_batch_lets_the_batch_finish") {
  loop::EventLoop lp;
  std::vector<int> ran;
  lp.call_soon([&] { ran.push_back(1); });
  lp.call_soon([&] {
    ran.push_back(2);
    lp.stop();
    lp.call_soon([&] { ran.push_back(5); });  // scheduled by the batch: next iteration
  });
  lp.call_soon([&] { ran.push_back(3); });
  lp.call_soon([&] { ran.push_back(4); });
  lp.run_forever();
  CHECK(ran == std::vector<int>{1, 2, 3, 4});
  // The loop can be run again; the leftover callback runs then.
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  CHECK(ran == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("test_callbacks_scheduled_by_a_batch_run_next_iteration") {
  loop::EventLoop lp;
  std::vector<std::string> ran;
  int iteration = 0;
  // A self-rescheduling callback must not starve the loop: each run is one iteration.
  std::function<void()> again = [&] {
    ran.push_back("again" + std::to_string(iteration++));
    if (iteration < 3) lp.call_soon(again);
  };
  lp.call_soon(again);
  lp.call_soon([&] { ran.push_back("other"); });
  lp.stop();
  lp.run_forever();
  CHECK(ran == std::vector<std::string>{"again0", "other"});
  lp.stop();
  lp.run_forever();
  CHECK(ran == std::vector<std::string>{"again0", "other", "again1"});
}

TEST_CASE("test_run_forever_while_running_raises") {
  loop::EventLoop lp;
  std::string error;
  lp.call_soon([&] {
    try {
      lp.run_forever();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    lp.stop();
  });
  lp.run_forever();
  CHECK(error == "This event loop is already running");
}

TEST_CASE("test_run_until_complete_while_running_raises") {
  loop::EventLoop lp;
  bool raised = false;
  auto f = lp.create_future<int>();
  lp.call_soon([&] {
    try {
      lp.run_until_complete(f);
    } catch (const std::runtime_error&) {
      raised = true;
    }
    f.set_result(1);
  });
  CHECK(lp.run_until_complete(f) == 1);
  CHECK(raised);
}

TEST_CASE("test_run_until_complete_while_running_never_starts_the_coroutine") {
  // asyncio (3.8 on) checks that the loop is not running before it wraps the coroutine in a
  // task: the refused coroutine must not run later on the loop that is running.
  loop::EventLoop lp;
  int started = 0;
  auto side_effect = [&]() -> loop::Coroutine<int> {
    ++started;
    co_return 1;
  };
  std::string error;
  lp.call_soon([&] {
    try {
      lp.run_until_complete(side_effect());
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
  });
  lp.call_later(0.01, [&] { lp.stop(); });
  lp.run_forever();
  CHECK(error == "This event loop is already running");
  CHECK(started == 0);
  CHECK(loop::all_tasks(lp).empty());
}

TEST_CASE("test_run_until_complete_returns_result") {
  loop::EventLoop lp;
  auto f = lp.create_future<std::string>();
  lp.call_later(0.01, [f] { f.set_result("done"); });
  CHECK(lp.run_until_complete(f) == "done");
  CHECK_FALSE(lp.is_running());
}

TEST_CASE("test_run_until_complete_rethrows") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  lp.call_soon([f] { f.set_exception(std::invalid_argument("bad value")); });
  CHECK_THROWS_WITH(lp.run_until_complete(f), "bad value");
  CHECK_THROWS_AS(lp.run_until_complete(f), std::invalid_argument);

  auto coro = []() -> loop::Coroutine<int> {
    throw std::out_of_range("from coroutine");
    co_return 1;
  };
  CHECK_THROWS_AS(lp.run_until_complete(coro()), std::out_of_range);
}

TEST_CASE("test_run_until_complete_cancelled_raises_cancelled_error") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  lp.call_soon([f] { f.cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(f), loop::CancelledError);
}

TEST_CASE("test_run_until_complete_stopped") {
  // CPython test_run_until_complete_stopped: stop() before the future is done.
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  lp.call_soon([&] { lp.stop(); });
  CHECK_THROWS_WITH(lp.run_until_complete(f), "Event loop stopped before Future completed.");
  // The done-callback that stops the loop was removed: completing f later is harmless.
  f.set_result(3);
  CHECK(lp.run_until_complete(f) == 3);
}

TEST_CASE("test_run_until_complete_loop_orphan_future") {
  // A future of another loop is refused (asyncio raises ValueError).
  loop::EventLoop a;
  loop::EventLoop b;
  auto f = a.create_future<int>();
  CHECK_THROWS_AS(b.run_until_complete(f), std::invalid_argument);
}

TEST_CASE("test_run_until_complete_coroutine") {
  loop::EventLoop lp;
  auto add = [](int x, int y) -> loop::Coroutine<int> {
    co_await loop::sleep(0.001);
    co_return x + y;
  };
  CHECK(lp.run_until_complete(add(2, 3)) == 5);
  CHECK(lp.pending_task_count() == 0);
}

TEST_CASE("test_run_forever_exception_in_callback_does_not_stop") {
  // A callback that throws is reported and the loop keeps going.
  loop::EventLoop lp;
  lp.set_exception_handler([](loop::EventLoop&, const loop::ExceptionContext&) {});
  int after = 0;
  lp.call_soon([] { throw std::runtime_error("boom"); });
  lp.call_soon([&] { ++after; });
  lp.call_later(0.001, [&] {
    ++after;
    lp.stop();
  });
  lp.run_forever();
  CHECK(after == 2);
}
