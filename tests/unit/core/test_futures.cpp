// loop::Future (CPython test_futures.py: test_initial_state, test_cancel, test_result,
// test_exception, test_yield_from_twice..., test_callbacks_*, test_tb_logger_*).
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>
#include <vector>

TEST_CASE("test_initial_state") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  CHECK_FALSE(f.cancelled());
  CHECK_FALSE(f.done());
  f.cancel();
  CHECK(f.cancelled());
  CHECK(f.done());
  CHECK(&f.get_loop() == &lp);
}

TEST_CASE("test_cancel") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  CHECK(f.cancel("why"));
  CHECK(f.cancelled());
  CHECK(f.done());
  CHECK_THROWS_AS(f.result(), loop::CancelledError);
  CHECK_THROWS_WITH(f.result(), "why");
  CHECK_THROWS_AS(f.exception(), loop::CancelledError);
  CHECK_THROWS_AS(f.set_result(42), loop::InvalidStateError);
  CHECK_THROWS_AS(f.set_exception(std::runtime_error("x")), loop::InvalidStateError);
  CHECK_FALSE(f.cancel());
}

TEST_CASE("test_result") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  CHECK_THROWS_AS(f.result(), loop::InvalidStateError);
  f.set_result(42);
  CHECK_FALSE(f.cancelled());
  CHECK(f.done());
  CHECK(f.result() == 42);
  CHECK(f.exception() == nullptr);
  CHECK_THROWS_AS(f.set_result(43), loop::InvalidStateError);
  CHECK_THROWS_AS(f.set_exception(std::runtime_error("x")), loop::InvalidStateError);
  CHECK_FALSE(f.cancel());
}

TEST_CASE("test_exception") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  CHECK_THROWS_AS(f.exception(), loop::InvalidStateError);
  f.set_exception(std::runtime_error("boom"));
  CHECK_FALSE(f.cancelled());
  CHECK(f.done());
  CHECK_THROWS_WITH(f.result(), "boom");
  CHECK(f.exception() != nullptr);
  CHECK_THROWS_AS(f.set_result(1), loop::InvalidStateError);
  CHECK_FALSE(f.cancel());
}

// asyncio stores a CancelledError given to set_exception: the future is finished, not
// cancelled, exception() returns it and result() raises it (CPython 3.7 and 3.11 alike).
TEST_CASE("test_set_exception_cancelled_error_finishes_the_future") {
  loop::EventLoop lp;
  auto f = lp.create_future<void>();
  f.set_exception(loop::CancelledError("stop"));
  CHECK(f.done());
  CHECK_FALSE(f.cancelled());
  std::exception_ptr e = f.exception();
  REQUIRE(e);
  CHECK_THROWS_AS(std::rethrow_exception(e), loop::CancelledError);
  CHECK_THROWS_WITH(f.result(), "stop");
  CHECK(f.repr().rfind("<Future finished exception=", 0) == 0);

  // A task awaiting it gets the CancelledError and ends cancelled.
  auto g = lp.create_future<int>();
  auto waiter = [](loop::Future<int> fut) -> loop::Coroutine<int> { co_return co_await fut; };
  auto t = lp.create_task(waiter(g));
  lp.call_soon([g] { g.set_exception(loop::CancelledError("from the future")); });
  CHECK_THROWS_AS(lp.run_until_complete(t), loop::CancelledError);
  CHECK(t.cancelled());
  CHECK_FALSE(g.cancelled());
}

TEST_CASE("test_future_repr") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  CHECK(f.repr() == "<Future pending>");
  f.set_result(7);
  CHECK(f.repr() == "<Future finished result=7>");
  auto s = lp.create_future<std::string>();
  s.set_result("it's");
  CHECK(s.repr() == "<Future finished result='it\\'s'>");
  auto c = lp.create_future<void>();
  c.cancel();
  CHECK(c.repr() == "<Future cancelled>");
  auto e = lp.create_future<void>();
  e.set_exception(std::runtime_error("bad"));
  CHECK(e.repr() == "<Future finished exception=std::runtime_error: bad>");
  (void)e.exception();
}

TEST_CASE("test_callbacks_scheduled_never_inline") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  std::vector<std::string> order;
  f.add_done_callback(
      [&](loop::Future<int> g) { order.push_back("cb1=" + std::to_string(g.result())); });
  f.add_done_callback([&](loop::Future<int>) { order.push_back("cb2"); });
  lp.call_soon([&] { order.push_back("soon-before"); });
  f.set_result(10);
  CHECK(order.empty());  // not inline
  CHECK(lp.ready_count() == 3);
  // Added after it is done: scheduled at once, after the ones already scheduled.
  f.add_done_callback([&](loop::Future<int>) { order.push_back("cb3"); });
  CHECK(order.empty());
  lp.stop();
  lp.run_forever();
  CHECK(order == std::vector<std::string>{"soon-before", "cb1=10", "cb2", "cb3"});
}

TEST_CASE("test_remove_done_callback") {
  loop::EventLoop lp;
  auto f = lp.create_future<void>();
  std::vector<int> ran;
  auto id1 = f.add_done_callback([&](loop::Future<void>) { ran.push_back(1); });
  auto id2 = f.add_done_callback([&](loop::Future<void>) { ran.push_back(2); });
  f.add_done_callback([&](loop::Future<void>) { ran.push_back(3); });
  CHECK(f.remove_done_callback(id2) == 1);
  CHECK(f.remove_done_callback(id2) == 0);
  (void)id1;
  f.set_result();
  lp.stop();
  lp.run_forever();
  CHECK(ran == std::vector<int>{1, 3});
}

// The first callback is held apart from the rest (loop/future.hpp): removing it, or adding
// after it went, must keep the order in which they were added.
TEST_CASE("test_remove_first_done_callback_keeps_the_order") {
  loop::EventLoop lp;
  auto f = lp.create_future<void>();
  std::vector<int> ran;
  auto id1 = f.add_done_callback([&](loop::Future<void>) { ran.push_back(1); });
  f.add_done_callback([&](loop::Future<void>) { ran.push_back(2); });
  CHECK(f.remove_done_callback(id1) == 1);
  CHECK(f.remove_done_callback(id1) == 0);
  f.add_done_callback([&](loop::Future<void>) { ran.push_back(3); });
  // A task awaiting it joins the list too (its wakeup is not a std::function), last.
  auto waiter =
      lp.create_task([](loop::Future<void> fut, std::vector<int>& out) -> loop::Coroutine<void> {
        co_await fut;
        out.push_back(4);
      }(f, ran));
  lp.call_soon([&] { f.set_result(); });
  lp.run_until_complete(waiter);
  CHECK(ran == std::vector<int>{2, 3, 4});

  // Only one callback, removed: nothing runs, and a new one added after is the first again.
  auto g = lp.create_future<void>();
  auto only = g.add_done_callback([&](loop::Future<void>) { ran.push_back(5); });
  CHECK(g.remove_done_callback(only) == 1);
  g.add_done_callback([&](loop::Future<void>) { ran.push_back(6); });
  g.set_result();
  lp.stop();
  lp.run_forever();
  CHECK(ran == std::vector<int>{2, 3, 4, 6});
}

// The second callback has an inline slot too: a task awaiting a future that has a callback
// already (sock_recv's removal of its reader) takes it; the order stays the order of adding.
TEST_CASE("test_second_done_callback_slot_keeps_the_order") {
  loop::EventLoop lp;
  auto f = lp.create_future<void>();
  std::vector<int> ran;
  f.add_done_callback([&](loop::Future<void>) { ran.push_back(1); });
  auto waiter =
      lp.create_task([](loop::Future<void> fut, std::vector<int>& out) -> loop::Coroutine<void> {
        co_await fut;
        out.push_back(2);
      }(f, ran));
  lp.call_soon([&] {
    // The task awaits f by now (its wakeup is the second callback); this one follows it.
    f.add_done_callback([&](loop::Future<void>) { ran.push_back(3); });
    f.set_result();
  });
  lp.run_until_complete(waiter);
  lp.stop();
  lp.run_forever();
  CHECK(ran == std::vector<int>{1, 2, 3});

  // Removed from the second slot, the next one added takes it; removed from the first, the
  // next one added goes after the second.
  ran.clear();
  auto g = lp.create_future<void>();
  auto id1 = g.add_done_callback([&](loop::Future<void>) { ran.push_back(1); });
  auto id2 = g.add_done_callback([&](loop::Future<void>) { ran.push_back(2); });
  CHECK(g.remove_done_callback(id2) == 1);
  CHECK(g.remove_done_callback(id2) == 0);
  g.add_done_callback([&](loop::Future<void>) { ran.push_back(3); });
  CHECK(g.remove_done_callback(id1) == 1);
  g.add_done_callback([&](loop::Future<void>) { ran.push_back(4); });
  g.add_done_callback([&](loop::Future<void>) { ran.push_back(5); });
  g.set_result();
  lp.stop();
  lp.run_forever();
  CHECK(ran == std::vector<int>{3, 4, 5});
}

TEST_CASE("test_callbacks_on_cancel_and_exception") {
  loop::EventLoop lp;
  auto a = lp.create_future<int>();
  auto b = lp.create_future<int>();
  bool a_cancelled = false;
  std::string b_error;
  a.add_done_callback([&](loop::Future<int> f) { a_cancelled = f.cancelled(); });
  b.add_done_callback([&](loop::Future<int> f) {
    try {
      std::rethrow_exception(f.exception());
    } catch (const std::exception& e) {
      b_error = e.what();
    }
  });
  a.cancel();
  b.set_exception(std::runtime_error("b failed"));
  lp.stop();
  lp.run_forever();
  CHECK(a_cancelled);
  CHECK(b_error == "b failed");
}

TEST_CASE("test_tb_logger_exception_unretrieved") {
  loop::EventLoop lp;
  std::vector<nlohmann::json> seen;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext& c) { seen.push_back(c.to_json()); });
  {
    auto f = lp.create_future<int>();
    f.set_exception(std::runtime_error("lost"));
  }
  REQUIRE(seen.size() == 1);
  CHECK(seen[0]["message"] == "Future exception was never retrieved");
  CHECK(seen[0]["exception"]["what"] == "lost");
  CHECK(seen[0]["future"] == "<Future finished exception=std::runtime_error: lost>");
  {
    // Retrieved (by result() or exception()): not reported.
    auto f = lp.create_future<int>();
    f.set_exception(std::runtime_error("seen"));
    (void)f.exception();
    auto g = lp.create_future<int>();
    g.set_exception(std::runtime_error("seen"));
    CHECK_THROWS(g.result());
  }
  CHECK(seen.size() == 1);
}

TEST_CASE("test_future_outliving_its_loop_does_not_report_to_it") {
  loop::Future<int> survivor;
  {
    loop::EventLoop lp;
    survivor = lp.create_future<int>();
    survivor.set_exception(std::runtime_error("late"));
  }
  survivor = loop::Future<int>();  // destroyed after the loop: must not touch it
  SUCCEED();
}

// Completing, or adding a callback to, a future whose loop is gone: asyncio's call_soon on a
// closed loop raises RuntimeError; here the loop's memory is gone too (ASan checks that it is
// not touched).
TEST_CASE("test_future_outliving_its_loop_refuses_to_schedule_callbacks") {
  loop::Future<int> pending, done;
  int ran = 0;
  {
    loop::EventLoop lp;
    pending = lp.create_future<int>();
    pending.add_done_callback([&](loop::Future<int>) { ++ran; });
    done = lp.create_future<int>();
    done.set_result(1);
  }
  CHECK_THROWS_WITH(pending.set_result(2), "Event loop is closed");
  CHECK(pending.done());  // the state changed first, as in asyncio
  CHECK_THROWS_WITH(done.add_done_callback([&](loop::Future<int>) { ++ran; }),
                    "Event loop is closed");
  CHECK(ran == 0);
}

TEST_CASE("test_await_future_outside_task_raises") {
  loop::EventLoop lp;
  auto f = lp.create_future<int>();
  f.set_result(1);
  // Awaiting a future from a coroutine run by a Task works...
  auto ok = [&]() -> loop::Coroutine<int> { co_return co_await f; };
  CHECK(lp.run_until_complete(ok()) == 1);
}
