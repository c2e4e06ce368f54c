// loop::Task and coroutines (CPython test_tasks.py: test_task_repr, test_cancel*,
// test_current_task, test_all_tasks, test_sleep, test_task_factory...).
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>
#include <vector>

using loop::Coroutine;

TEST_CASE("test_callback_order_matches_asyncio") {
  // The same scenario under CPython 3.11 here (call_soon, done-callbacks added before and after
  // the future is done, a child task with one sleep(0), awaiting it) printed:
  // ['main-before-await', 'soon1', 'child-start', 'f-cb1', 'f-cb2', 'soon2', 'child-end',
  //  't-cb', 'main-after-await', 'soon3', 'main-end']
  loop::EventLoop lp;
  std::vector<std::string> order;
  auto push = [&](const char* s) { return [&order, s](auto&&...) { order.push_back(s); }; };
  auto child = [&]() -> Coroutine<int> {
    order.push_back("child-start");
    co_await loop::sleep(0);
    order.push_back("child-end");
    co_return 1;
  };
  auto main = [&]() -> Coroutine<void> {
    auto f = lp.create_future<void>();
    f.add_done_callback(push("f-cb1"));
    lp.call_soon(push("soon1"));
    auto t = lp.create_task(child());
    t.add_done_callback(push("t-cb"));
    f.set_result();
    f.add_done_callback(push("f-cb2"));
    lp.call_soon(push("soon2"));
    order.push_back("main-before-await");
    int r = co_await t;
    CHECK(r == 1);
    order.push_back("main-after-await");
    lp.call_soon(push("soon3"));
    co_await loop::sleep(0);
    order.push_back("main-end");
  };
  lp.run_until_complete(main());
  CHECK(order == std::vector<std::string>{"main-before-await", "soon1", "child-start", "f-cb1",
                                          "f-cb2", "soon2", "child-end", "t-cb", "main-after-await",
                                          "soon3", "main-end"});
}

TEST_CASE("test_task_wakeups_for_successive_awaits_keep_asyncio_order") {
  // Each task's Task.__wakeup is one handle queued again for every future it awaits; two tasks
  // awaiting in turn, and one cancelled while its wakeup is queued. CPython 3.11 here printed:
  // ['b0', 'a0', 'main1', 'a1', 'b1', 'main2', 'a2', 'main3', 'b-cancelled']
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto waiter = [&](std::string name, std::vector<loop::Future<int>> futs) -> Coroutine<void> {
    for (auto& f : futs) {
      int v = co_await f;
      log.push_back(name + std::to_string(v));
    }
  };
  auto main = [&]() -> Coroutine<void> {
    std::vector<loop::Future<int>> fa, fb;
    for (int i = 0; i < 3; ++i) {
      fa.push_back(lp.create_future<int>());
      fb.push_back(lp.create_future<int>());
    }
    auto ta = lp.create_task(waiter("a", fa));
    auto tb = lp.create_task(waiter("b", fb));
    co_await loop::sleep(0);
    fb[0].set_result(0);
    fa[0].set_result(0);
    co_await loop::sleep(0);
    log.push_back("main1");
    fa[1].set_result(1);
    fb[1].set_result(1);
    co_await loop::sleep(0);
    log.push_back("main2");
    fb[2].set_result(2);
    tb.cancel();
    fa[2].set_result(2);
    co_await loop::sleep(0);
    log.push_back("main3");
    co_await ta;
    bool cancelled = false;
    try {
      co_await tb;
    } catch (const loop::CancelledError&) {
      cancelled = true;
    }
    log.push_back(cancelled ? "b-cancelled" : "b-done");
  };
  lp.run_until_complete(main());
  CHECK(log == std::vector<std::string>{"b0", "a0", "main1", "a1", "b1", "main2", "a2", "main3",
                                        "b-cancelled"});
}

TEST_CASE("test_task_repr") {
  loop::EventLoop lp;
  auto forty_two = []() -> Coroutine<int> { co_return 42; };
  auto t = lp.create_task(forty_two(), "answer");
  CHECK(t.repr() == "<Task pending name='answer'>");
  CHECK(t.get_name() == "answer");
  CHECK(lp.run_until_complete(t) == 42);
  CHECK(t.repr() == "<Task finished name='answer' result=42>");
  auto unnamed = lp.create_task(forty_two());
  CHECK(unnamed.get_name().rfind("Task-", 0) == 0);
  unnamed.set_name("renamed");
  unnamed.cancel();
  CHECK(lp.run_until_complete(forty_two()) == 42);
  CHECK(unnamed.repr() == "<Task cancelled name='renamed'>");
}

TEST_CASE("test_cancel_at_await_point") {
  // CancelledError is thrown at the co_await the task is suspended in.
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  std::vector<std::string> log;
  auto body = [&]() -> Coroutine<int> {
    try {
      co_await fut;
      log.push_back("not reached");
    } catch (const loop::CancelledError&) {
      log.push_back("cancelled at await");
      throw;
    }
    co_return 0;
  };
  auto t = lp.create_task(body());
  lp.call_later(0.01, [&] { CHECK(t.cancel()); });
  CHECK_THROWS_AS(lp.run_until_complete(t), loop::CancelledError);
  CHECK(t.cancelled());
  CHECK(fut.cancelled());  // the future it waited on is cancelled too (asyncio's _fut_waiter)
  CHECK(log == std::vector<std::string>{"cancelled at await"});
  CHECK(lp.pending_task_count() == 0);
}

TEST_CASE("test_cancel_before_start") {
  loop::EventLoop lp;
  bool ran = false;
  auto body = [&]() -> Coroutine<void> {
    ran = true;
    co_return;
  };
  auto t = lp.create_task(body());
  CHECK(t.cancel());
  CHECK_FALSE(t.done());  // cancelled at the next step, as asyncio
  CHECK_THROWS_AS(lp.run_until_complete(t), loop::CancelledError);
  CHECK(t.cancelled());
  CHECK_FALSE(ran);
  CHECK_FALSE(t.cancel());
}

TEST_CASE("test_cancel_task_catching") {
  // The coroutine swallows the CancelledError and returns: the task finishes with a result.
  loop::EventLoop lp;
  auto body = [&]() -> Coroutine<int> {
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      co_return 42;
    }
    co_return 0;
  };
  auto t = lp.create_task(body());
  lp.call_soon([&] { t.cancel(); });
  CHECK(lp.run_until_complete(t) == 42);
  CHECK_FALSE(t.cancelled());
}

TEST_CASE("test_cancel_yield") {
  // Cancelled while suspended in sleep(0): the next step throws CancelledError.
  loop::EventLoop lp;
  int steps = 0;
  auto body = [&]() -> Coroutine<void> {
    ++steps;
    co_await loop::sleep(0);
    ++steps;
  };
  auto t = lp.create_task(body());
  lp.stop();
  lp.run_forever();  // first step: suspended in sleep(0)
  CHECK(t.cancel());
  CHECK_THROWS_AS(lp.run_until_complete(t), loop::CancelledError);
  CHECK(steps == 1);
}

TEST_CASE("test_cancel_inner_task_propagates") {
  // Cancelling a task awaiting another task cancels the inner one (CPython
  // test_cancel_both_task_and_inner_future / test_cancel_wait_for).
  loop::EventLoop lp;
  bool inner_saw_cancel = false;
  auto inner_body = [&]() -> Coroutine<int> {
    try {
      co_await loop::sleep(3600);
    } catch (const loop::CancelledError&) {
      inner_saw_cancel = true;
      throw;
    }
    co_return 1;
  };
  auto inner = lp.create_task(inner_body());
  auto outer_body = [&]() -> Coroutine<int> { co_return co_await inner; };
  auto outer = lp.create_task(outer_body());
  lp.call_later(0.01, [&] { outer.cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(outer), loop::CancelledError);
  CHECK(inner.cancelled());
  CHECK(outer.cancelled());
  CHECK(inner_saw_cancel);
}

TEST_CASE("test_cancel_during_own_step") {
  // A task cancelling itself and then awaiting: the await is cancelled.
  loop::EventLoop lp;
  auto body = [&]() -> Coroutine<void> {
    loop::current_task().cancel();
    co_await loop::sleep(1);
  };
  auto t = lp.create_task(body());
  CHECK_THROWS_AS(lp.run_until_complete(t), loop::CancelledError);
  CHECK(t.cancelled());

  // Cancelled during its last step: it ends cancelled, not with its result.
  auto last = [&]() -> Coroutine<int> {
    loop::current_task().cancel();
    co_return 5;
  };
  auto t2 = lp.create_task(last());
  CHECK_THROWS_AS(lp.run_until_complete(t2), loop::CancelledError);
}

TEST_CASE("test_nested_coroutines_and_exceptions") {
  loop::EventLoop lp;
  auto leaf = [](int x) -> Coroutine<int> {
    co_await loop::sleep(0);
    if (x < 0) throw std::invalid_argument("negative");
    co_return x * 2;
  };
  auto mid = [&](int x) -> Coroutine<int> {
    int a = co_await leaf(x);
    int b = co_await leaf(a);
    co_return a + b;
  };
  CHECK(lp.run_until_complete(mid(1)) == 6);
  auto catcher = [&]() -> Coroutine<std::string> {
    try {
      co_await mid(-1);
    } catch (const std::invalid_argument& e) {
      co_return e.what();
    }
    co_return "none";
  };
  CHECK(lp.run_until_complete(catcher()) == "negative");
}

TEST_CASE("test_task_factory") {
  loop::EventLoop lp;
  CHECK_FALSE(lp.get_task_factory());
  int made = 0;
  lp.set_task_factory([&](loop::EventLoop& l, loop::AnyCoroutine coro) {
    ++made;
    CHECK(coro.result_type() == typeid(int));
    auto t = loop::make_task(l, std::move(coro));
    t.set_name("from-factory-" + std::to_string(made));
    return t;
  });
  CHECK(lp.get_task_factory());
  auto seven = []() -> Coroutine<int> { co_return 7; };
  auto t = lp.create_task(seven());
  CHECK(t.get_name() == "from-factory-1");
  CHECK(lp.run_until_complete(t) == 7);
  CHECK(lp.run_until_complete(seven()) == 7);  // run_until_complete uses create_task too
  CHECK(made == 2);
  lp.set_task_factory(nullptr);
  CHECK(lp.run_until_complete(seven()) == 7);
  CHECK(made == 2);
}

TEST_CASE("test_current_task_and_all_tasks") {
  loop::EventLoop lp;
  CHECK_FALSE(loop::current_task());
  loop::TaskBase seen;
  auto sleeper = []() -> Coroutine<void> { co_await loop::sleep(3600); };
  auto a = lp.create_task(sleeper(), "a");
  auto b = lp.create_task(sleeper(), "b");
  auto main = [&]() -> Coroutine<std::size_t> {
    seen = loop::current_task();
    co_await loop::sleep(0);
    CHECK(loop::current_task() == seen);
    co_return loop::all_tasks(lp).size();
  };
  auto m = lp.create_task(main(), "main");
  CHECK(lp.run_until_complete(m) == 3);  // a, b and main itself
  CHECK(seen.get_name() == "main");
  CHECK_FALSE(loop::current_task());
  CHECK(loop::all_tasks(lp).size() == 2);
  a.cancel();
  b.cancel();
  lp.stop();
  lp.run_forever();
  CHECK(loop::all_tasks(lp).empty());
}

TEST_CASE("test_sleep_zero_yields_exactly_one_iteration") {
  // CPython 3.11 run here: call_soon(A) then `await sleep(0)` in a task: A runs, then the task,
  // then what A scheduled.
  loop::EventLoop lp;
  std::vector<std::string> order;
  auto main = [&]() -> Coroutine<void> {
    lp.call_soon([&] {
      order.push_back("A");
      lp.call_soon([&] { order.push_back("B"); });
    });
    co_await loop::sleep(0);
    order.push_back("after sleep(0)");
    co_await loop::sleep(0);
    order.push_back("after 2nd sleep(0)");
  };
  lp.run_until_complete(main());
  CHECK(order == std::vector<std::string>{"A", "after sleep(0)", "B", "after 2nd sleep(0)"});
}

TEST_CASE("test_sleep_result") {
  loop::EventLoop lp(loop::make_virtual_clock());
  CHECK(lp.run_until_complete(loop::sleep(2.0, std::string("slept"))) == "slept");
  CHECK(lp.time() == Approx(2.0));
}

TEST_CASE("test_task_await_on_itself_raises") {
  loop::EventLoop lp;
  loop::Task<void> self;
  auto body = [&]() -> Coroutine<void> { co_await self; };
  self = lp.create_task(body());
  CHECK_THROWS_AS(lp.run_until_complete(self), std::runtime_error);
}

TEST_CASE("test_task_keeps_running_without_references") {
  // The loop keeps a pending task alive: dropping every handle does not destroy its frame.
  loop::EventLoop lp(loop::make_virtual_clock());
  bool finished = false;
  auto body = [&]() -> Coroutine<void> {
    co_await loop::sleep(1);
    co_await loop::sleep(1);
    finished = true;
  };
  (void)lp.create_task(body());
  lp.run_until_complete(loop::sleep(5));
  CHECK(finished);
  CHECK(lp.pending_task_count() == 0);
}
