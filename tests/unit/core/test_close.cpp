// close() and the loop after it (CPython test_base_events.py: test_close,
// test_run_forever_closed..., test_events.py test_close_running_event_loop).
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>

TEST_CASE("test_close_while_running_raises") {
  loop::EventLoop lp;
  std::string error;
  lp.call_soon([&] {
    try {
      lp.close();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    lp.stop();
  });
  lp.run_forever();
  CHECK(error == "Cannot close a running event loop");
  CHECK_FALSE(lp.is_closed());
}

TEST_CASE("test_close_is_idempotent_and_drops_callbacks") {
  loop::EventLoop lp;
  int n = 0;
  lp.call_soon([&] { ++n; });
  lp.call_later(0.01, [&] { ++n; });
  CHECK(lp.ready_count() == 1);
  CHECK_FALSE(lp.is_closed());
  lp.close();
  CHECK(lp.is_closed());
  CHECK(lp.ready_count() == 0);
  CHECK(lp.scheduled_timer_count() == 0);
  CHECK_NOTHROW(lp.close());
  CHECK(n == 0);
}

TEST_CASE("test_methods_after_close_raise") {
  // The methods asyncio guards with _check_closed() (Python 3.11 run here: call_soon,
  // call_later, call_at, call_soon_threadsafe, run_forever, run_until_complete, create_task,
  // run_in_executor all raise RuntimeError('Event loop is closed')).
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  lp.close();
  const char* msg = "Event loop is closed";
  CHECK_THROWS_WITH(lp.call_soon([] {}), msg);
  CHECK_THROWS_WITH(lp.call_later(1, [] {}), msg);
  CHECK_THROWS_WITH(lp.call_at(1, [] {}), msg);
  CHECK_THROWS_WITH(lp.call_soon_threadsafe([] {}), msg);
  CHECK_THROWS_WITH(lp.call_soon_in(loop::Context(), [] {}), msg);
  CHECK_THROWS_WITH(lp.call_later_in(loop::Context(), 1, [] {}), msg);
  CHECK_THROWS_WITH(lp.call_at_in(loop::Context(), 1, [] {}), msg);
  CHECK_THROWS_WITH(lp.call_soon_threadsafe_in(loop::Context(), [] {}), msg);
  CHECK_THROWS_WITH(lp.run_forever(), msg);
  CHECK_THROWS_WITH(lp.run_until_complete(fut), msg);
  auto coro = []() -> loop::Coroutine<int> { co_return 1; };
  CHECK_THROWS_WITH(lp.create_task(coro()), msg);
  CHECK_THROWS_WITH(lp.run_in_executor(nullptr, [] { return 1; }), msg);
  // Completing a future with done-callbacks schedules them with call_soon: that raises too.
  fut.add_done_callback([](loop::Future<int>) {});
  CHECK_THROWS_WITH(fut.set_result(1), msg);
}

TEST_CASE("test_close_shuts_the_default_executor_down") {
  loop::EventLoop lp;
  auto f = lp.run_in_executor(nullptr, [] { return 7; });
  CHECK(lp.run_until_complete(f) == 7);
  lp.close();
  CHECK_THROWS_AS(lp.default_executor().submit([] {}), std::runtime_error);
}

TEST_CASE("test_destroying_a_loop_reports_pending_tasks") {
  std::vector<std::string> messages;
  {
    loop::EventLoop lp;
    lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
      messages.push_back(c.message);
      // asyncio's Task.__del__ names the task `task` in the context, not `future`.
      CHECK(c.task);
      CHECK_FALSE(c.future);
      CHECK(c.to_json().contains("task"));
    });
    auto forever = [&]() -> loop::Coroutine<void> { co_await lp.create_future<void>(); };
    auto t = lp.create_task(forever());
    lp.stop();
    lp.run_forever();
    CHECK_FALSE(t.done());
    lp.close();
  }
  CHECK(messages == std::vector<std::string>{"Task was destroyed but it is pending!"});
}

TEST_CASE("test_run_until_complete_task_left_pending_is_not_reported") {
  // asyncio's run_until_complete sets _log_destroy_pending = False on the task it makes: its
  // caller got "Event loop stopped before Future completed." already.
  std::vector<std::string> messages;
  {
    loop::EventLoop lp;
    lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
      messages.push_back(c.message);
      // asyncio's Task.__del__ names the task `task` in the context, not `future`.
      CHECK(c.task);
      CHECK_FALSE(c.future);
      CHECK(c.to_json().contains("task"));
    });
    auto forever = [&]() -> loop::Coroutine<void> {
      lp.stop();
      co_await lp.create_future<void>();
    };
    CHECK_THROWS_WITH(lp.run_until_complete(forever()),
                      "Event loop stopped before Future completed.");
    lp.close();
  }
  CHECK(messages.empty());
}
