// Context / ContextVar (PEP 567) and how the loop runs callbacks and tasks in them (CPython
// test_context.py and test_tasks.py test_context_*, test_base_events.py test_call_soon context).
#include <algorithm>
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <string>
#include <thread>
#include <vector>

using loop::Coroutine;

TEST_CASE("test_context_var_get_set_default") {
  loop::ContextVar<int> v("v");
  loop::ContextVar<int> with_default("d", 5);
  loop::Context ctx;
  ctx.run([&] {
    CHECK_THROWS_AS(v.get(), std::out_of_range);
    CHECK(v.get(3) == 3);
    CHECK(with_default.get() == 5);
    v.set(1);
    CHECK(v.get() == 1);
  });
  CHECK(ctx.size() == 1);
  // Another context does not see it.
  loop::Context().run([&] { CHECK(v.get(0) == 0); });
  ctx.run([&] { CHECK(v.get() == 1); });
}

TEST_CASE("test_context_run_reentry_raises") {
  // Python: RuntimeError('cannot enter context: <Context> is already entered').
  loop::Context ctx;
  ctx.run([&] { CHECK_THROWS_AS(ctx.run([] {}), std::runtime_error); });
  CHECK_NOTHROW(ctx.run([] {}));  // entered again after leaving
}

TEST_CASE("test_context_var_token_reset") {
  loop::ContextVar<std::string> v("v");
  loop::Context().run([&] {
    auto t1 = v.set("a");
    CHECK_FALSE(t1.old_value());
    auto t2 = v.set("b");
    CHECK(t2.old_value() == std::optional<std::string>("a"));
    v.reset(t2);
    CHECK(v.get() == "a");
    CHECK_THROWS_AS(v.reset(t2), std::runtime_error);  // used once
    v.reset(t1);
    CHECK_THROWS_AS(v.get(), std::out_of_range);
    loop::ContextVar<std::string> other("other");
    auto t3 = v.set("c");
    CHECK_THROWS_AS(other.reset(t3), std::invalid_argument);
    loop::Context().run([&] { CHECK_THROWS_AS(v.reset(t3), std::invalid_argument); });
  });
}

TEST_CASE("test_copy_context") {
  loop::ContextVar<int> v("v");
  loop::Context outer;
  outer.run([&] {
    v.set(1);
    loop::Context c = loop::copy_context();
    v.set(2);
    c.run([&] { CHECK(v.get() == 1); });
  });
}

TEST_CASE("test_call_soon_captures_current_context") {
  loop::EventLoop lp;
  loop::ContextVar<int> v("v");
  std::vector<int> seen;
  loop::Context ctx;
  ctx.run([&] {
    v.set(10);
    lp.call_soon([&] {
      seen.push_back(v.get(-1));
      v.set(99);  // changes the callback's copy only
    });
    lp.call_soon([&] { seen.push_back(v.get(-1)); });
    v.set(11);  // after scheduling: the copies above keep 10
  });
  lp.call_soon([&] { seen.push_back(v.get(-1)); });  // no context variables here
  lp.stop();
  lp.run_forever();
  CHECK(seen == std::vector<int>{10, 10, -1});
  ctx.run([&] { CHECK(v.get() == 11); });
}

TEST_CASE("test_call_soon_in_explicit_context") {
  loop::EventLoop lp;
  loop::ContextVar<std::string> v("v");
  loop::Context ctx;
  ctx.run([&] { v.set("explicit"); });
  std::string seen;
  loop::Handle h = lp.call_soon_in(ctx, [&] {
    seen = v.get("none");
    v.set("changed");
  });
  CHECK(h.get_context().data() == ctx.data());
  lp.stop();
  lp.run_forever();
  CHECK(seen == "explicit");
  ctx.run([&] { CHECK(v.get() == "changed"); });  // ran in ctx itself, not a copy
}

TEST_CASE("test_call_later_call_at_and_call_soon_threadsafe_in_explicit_context") {
  // asyncio 3.7: call_later, call_at and call_soon_threadsafe take context= as call_soon does.
  loop::EventLoop lp;
  loop::ContextVar<std::string> v("v");
  loop::Context ctx;
  ctx.run([&] { v.set("explicit"); });
  v.set("current");
  std::vector<std::string> seen;
  auto record = [&] { seen.push_back(v.get("none")); };
  loop::TimerHandle later = lp.call_later_in(ctx, 0.001, record);
  loop::TimerHandle at = lp.call_at_in(ctx, lp.time() + 0.002, record);
  loop::Handle safe;
  std::thread other([&] { safe = lp.call_soon_threadsafe_in(ctx, record); });
  other.join();
  CHECK(later.get_context().data() == ctx.data());
  CHECK(at.get_context().data() == ctx.data());
  CHECK(safe.get_context().data() == ctx.data());
  lp.call_later(0.05, [&] { lp.stop(); });
  lp.call_later(0.001, record);  // the caller's context, for contrast
  lp.run_forever();
  std::sort(seen.begin(), seen.end());  // the order is the timers' and the thread's
  CHECK(seen == std::vector<std::string>{"current", "explicit", "explicit", "explicit"});
}

TEST_CASE("test_task_keeps_one_context_across_steps") {
  loop::EventLoop lp;
  loop::ContextVar<int> v("v", 0);
  auto worker = [&](int id) -> Coroutine<std::vector<int>> {
    std::vector<int> seen;
    v.set(id);
    co_await loop::sleep(0);
    seen.push_back(v.get());
    co_await loop::sleep(0.001);
    seen.push_back(v.get());
    v.set(id * 10);
    co_await loop::sleep(0);
    seen.push_back(v.get());
    co_return seen;
  };
  auto a = lp.create_task(worker(1));
  auto b = lp.create_task(worker(2));
  CHECK(lp.run_until_complete(a) == std::vector<int>{1, 1, 10});
  CHECK(lp.run_until_complete(b) == std::vector<int>{2, 2, 20});
  CHECK(v.get() == 0);  // the tasks' copies never leaked out
}

TEST_CASE("test_task_copies_context_at_creation") {
  loop::EventLoop lp;
  loop::ContextVar<int> v("v", 0);
  auto read = [&]() -> Coroutine<int> { co_return v.get(); };
  loop::Context ctx;
  loop::Task<int> t;
  ctx.run([&] {
    v.set(7);
    t = lp.create_task(read());
    v.set(8);
  });
  CHECK(lp.run_until_complete(t) == 7);
}
