// gather, wait_for, shield (CPython test_tasks.py: test_gather*, test_wait_for*, test_shield*).
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>
#include <vector>

using loop::Coroutine;

namespace {
Coroutine<int> after(double delay, int value) {
  co_await loop::sleep(delay);
  co_return value;
}
Coroutine<int> fail_after(double delay, const char* what) {
  co_await loop::sleep(delay);
  throw std::runtime_error(what);
}
}  // namespace

TEST_CASE("test_gather_tuple") {
  loop::EventLoop lp(loop::make_virtual_clock());
  auto fut = lp.create_future<std::string>();
  lp.call_later(0.5, [fut] { fut.set_result("fut"); });
  auto main = [&]() -> Coroutine<std::tuple<int, std::string, int, std::monostate>> {
    auto t = lp.create_task(after(0.2, 2));
    co_return co_await loop::gather(after(0.3, 1), fut, t, loop::sleep(0.1));
  };
  auto [a, b, c, d] = lp.run_until_complete(main());
  CHECK(a == 1);
  CHECK(b == "fut");
  CHECK(c == 2);
  (void)d;
  CHECK(lp.time() == Approx(0.5));
}

TEST_CASE("test_gather_vector") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<loop::Future<int>> children;
  for (int i = 0; i < 5; ++i) children.push_back(lp.create_task(after(5 - i, i)));
  auto results = lp.run_until_complete(loop::gather(children));
  CHECK(results == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(lp.run_until_complete(loop::gather(std::vector<loop::Future<int>>{}, &lp)).empty());
}

TEST_CASE("test_gather_first_exception") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<loop::Future<int>> children{lp.create_task(after(3, 1)),
                                          lp.create_task(fail_after(1, "first")),
                                          lp.create_task(fail_after(2, "second"))};
  auto g = loop::gather(children);
  CHECK_THROWS_WITH(lp.run_until_complete(g), "first");
  CHECK(lp.time() == Approx(1.0));
  // The others keep running (asyncio does not cancel them).
  CHECK_FALSE(children[0].done());
  CHECK(lp.run_until_complete(children[0]) == 1);
  CHECK(children[2].done());

  auto tup = [&]() -> Coroutine<void> {
    co_await loop::gather(after(1, 1), fail_after(0.5, "tuple-first"));
  };
  CHECK_THROWS_WITH(lp.run_until_complete(tup()), "tuple-first");
}

TEST_CASE("test_gather_cancel_cancels_children") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<loop::Future<int>> children{lp.create_task(after(10, 1)),
                                          lp.create_task(after(20, 2))};
  auto g = loop::gather(children);
  lp.call_later(1, [g] { g.cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(g), loop::CancelledError);
  // As asyncio's: the outer future finishes with the CancelledError of its first cancelled
  // child (set_exception), it is not cancelled itself (CPython 3.11: False, CancelledError()).
  CHECK(g.done());
  CHECK_FALSE(g.cancelled());
  CHECK_THROWS_AS(std::rethrow_exception(g.exception()), loop::CancelledError);
  CHECK(children[0].cancelled());
  CHECK(children[1].cancelled());

  // Cancelling the task awaiting the tuple form cancels every child at once.
  auto c1 = lp.create_task(after(10, 1));
  auto c2 = lp.create_task(after(20, 2));
  auto waiter = [&]() -> Coroutine<void> { co_await loop::gather(c1, c2); };
  auto w = lp.create_task(waiter());
  lp.call_later(1, [&] {
    w.cancel();
    // asyncio's _GatheringFuture.cancel cancels the children synchronously: both are
    // cancelling now, before any callback ran (they finish at their next step).
    CHECK_FALSE(c1.done());
  });
  CHECK_THROWS_AS(lp.run_until_complete(w), loop::CancelledError);
  CHECK(c1.cancelled());
  CHECK(c2.cancelled());
  CHECK(lp.time() < 10);
}

TEST_CASE("test_gather_child_cancelled") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<loop::Future<int>> children{lp.create_task(after(10, 1)),
                                          lp.create_task(after(1, 2))};
  auto g = loop::gather(children);
  lp.call_later(0.5, [&] { children[0].cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(g), loop::CancelledError);
}

TEST_CASE("test_wait_for_result_in_time") {
  loop::EventLoop lp(loop::make_virtual_clock());
  auto main = [&]() -> Coroutine<int> { co_return co_await loop::wait_for(after(1, 7), 5); };
  CHECK(lp.run_until_complete(main()) == 7);
  CHECK(lp.time() == Approx(1.0));
  lp.run_until_complete(loop::sleep(10));  // the cancelled timeout timer left nothing behind
  CHECK(loop::all_tasks(lp).empty());
}

TEST_CASE("test_wait_for_timeout_cancels_inner") {
  loop::EventLoop lp(loop::make_virtual_clock());
  bool inner_cancelled = false;
  auto slow = [&]() -> Coroutine<int> {
    try {
      co_await loop::sleep(100);
    } catch (const loop::CancelledError&) {
      inner_cancelled = true;
      throw;
    }
    co_return 1;
  };
  auto inner = lp.create_task(slow());
  auto main = [&]() -> Coroutine<int> { co_return co_await loop::wait_for(inner, 2); };
  CHECK_THROWS_AS(lp.run_until_complete(main()), loop::TimeoutError);
  CHECK(lp.time() == Approx(2.0));
  CHECK(inner.cancelled());
  CHECK(inner_cancelled);

  // timeout <= 0: an unfinished awaitable is cancelled and TimeoutError raised at once.
  auto inner2 = lp.create_task(after(1, 1));
  auto zero = [&]() -> Coroutine<int> { co_return co_await loop::wait_for(inner2, 0); };
  CHECK_THROWS_AS(lp.run_until_complete(zero()), loop::TimeoutError);
  CHECK(inner2.cancelled());
}

TEST_CASE("test_wait_for_cancelled_from_outside_cancels_inner") {
  loop::EventLoop lp(loop::make_virtual_clock());
  auto inner = lp.create_task(after(100, 1));
  auto main = [&]() -> Coroutine<int> { co_return co_await loop::wait_for(inner, 50); };
  auto t = lp.create_task(main());
  lp.call_later(1, [&] { t.cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(t), loop::CancelledError);
  lp.run_until_complete(loop::sleep(0));
  CHECK(inner.cancelled());
}

TEST_CASE("test_shield") {
  loop::EventLoop lp(loop::make_virtual_clock());
  auto inner = lp.create_task(after(2, 9));
  auto outer = loop::shield(loop::Future<int>(inner));
  lp.call_later(1, [outer] { outer.cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(outer), loop::CancelledError);
  CHECK_FALSE(inner.done());
  CHECK(lp.run_until_complete(inner) == 9);

  // Not cancelled: the shield passes the result (or exception) through.
  auto inner2 = lp.create_task(fail_after(1, "through"));
  auto outer2 = loop::shield(loop::Future<int>(inner2));
  CHECK_THROWS_WITH(lp.run_until_complete(outer2), "through");

  // A task awaiting a shielded future: cancelling the task leaves the inner running.
  auto inner3 = lp.create_task(after(2, 3));
  auto waiter = [&]() -> Coroutine<int> {
    co_return co_await loop::shield(loop::Future<int>(inner3));
  };
  auto w = lp.create_task(waiter());
  lp.call_later(1, [&] { w.cancel(); });
  CHECK_THROWS_AS(lp.run_until_complete(w), loop::CancelledError);
  CHECK(lp.run_until_complete(inner3) == 3);
}

// Task.cancel(msg): the CancelledError that sleep() and wait_for() raise is the one with the
// message (3.9+; 3.7 had no message), in the coroutine and for whoever awaits the task.
TEST_CASE("test_sleep_and_wait_for_keep_the_cancel_message") {
  loop::EventLoop lp;
  std::vector<std::string> seen;
  auto sleeper = [&](bool via_wait_for) -> loop::Coroutine<void> {
    try {
      if (via_wait_for)
        co_await loop::wait_for(loop::sleep(10), 5);
      else
        co_await loop::sleep(10);
    } catch (const loop::CancelledError& e) {
      seen.push_back(std::string("inside: ") + e.what());
      throw;
    }
  };
  auto main = [&]() -> loop::Coroutine<void> {
    for (bool via_wait_for : {false, true}) {
      auto t = lp.create_task(sleeper(via_wait_for));
      co_await loop::sleep(0.01);
      t.cancel("bye");
      try {
        co_await t;
      } catch (const loop::CancelledError& e) {
        seen.push_back(std::string("awaiter: ") + e.what());
      }
    }
  };
  lp.run_until_complete(main());
  CHECK(seen ==
        std::vector<std::string>{"inside: bye", "awaiter: bye", "inside: bye", "awaiter: bye"});
}
