// Async generators and shutdown_asyncgens (CPython test_asyncgen.py: test_async_gen_asyncio_*,
// test_asyncgen_nonstarted_hooks_are_cancellable, test_base_events.py
// test_shutdown_asyncgens*). Expected behaviour checked against Python 3.11 here where noted.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <loop/loop.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using loop::AsyncGenerator;
using loop::Coroutine;

namespace {
AsyncGenerator<int> counter(int n, std::vector<std::string>* log) {
  try {
    for (int i = 0; i < n; ++i) {
      co_await loop::sleep(0.5);  // awaiting inside the generator
      co_yield i;
    }
  } catch (const loop::GeneratorExit&) {
    log->push_back("GeneratorExit");
    throw;
  }
  log->push_back("exhausted");
}

// Its cleanup awaits: closing it takes `delay` seconds.
AsyncGenerator<int> slow_to_close(double delay, std::vector<std::string>* log) {
  bool exiting = false;
  try {
    co_yield 1;
  } catch (const loop::GeneratorExit&) {
    exiting = true;
  }
  if (exiting) {
    co_await loop::sleep(delay);
    log->push_back("slow closed");
  }
}

// Logs its cleanup (which awaits `delay` seconds) and, separately, its frame's destruction.
AsyncGenerator<int> guarded(double delay, std::vector<std::string>* log) {
  struct Guard {
    std::vector<std::string>* log;
    ~Guard() { log->push_back("frame destroyed"); }
  } guard{log};
  bool exiting = false;
  try {
    for (int i = 0;; ++i) co_yield i;
  } catch (const loop::GeneratorExit&) {
    exiting = true;
  }
  if (exiting) {
    log->push_back("cleanup starts");
    co_await loop::sleep(delay);
    log->push_back("cleanup ends");
  }
}

// Its cleanup fails at once.
AsyncGenerator<int> fails_to_close() {
  bool exiting = false;
  try {
    co_yield 1;
  } catch (const loop::GeneratorExit&) {
    exiting = true;
  }
  if (exiting) throw std::runtime_error("cleanup failed");
}
}  // namespace

TEST_CASE("test_async_gen_iteration") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<std::string> log;
  auto main = [&]() -> Coroutine<std::vector<int>> {
    std::vector<int> got;
    auto gen = counter(3, &log);
    while (auto v = co_await gen.next()) got.push_back(*v);
    // (co_await is kept out of Catch's macros: GCC 12 mishandles the temporaries there.)
    auto again = co_await gen.next();
    CHECK_FALSE(again);  // stays exhausted
    co_return got;
  };
  CHECK(lp.run_until_complete(main()) == std::vector<int>{0, 1, 2});
  CHECK(lp.time() == Approx(1.5));
  CHECK(log == std::vector<std::string>{"exhausted"});
}

TEST_CASE("test_async_gen_aclose_throws_generator_exit_at_yield") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<std::string> log;
  auto main = [&]() -> Coroutine<int> {
    auto gen = counter(10, &log);
    int first = *co_await gen.next();
    co_await gen.aclose();
    auto after_close = co_await gen.next();
    CHECK_FALSE(after_close);  // closed
    co_await gen.aclose();     // twice: nothing
    co_return first;
  };
  CHECK(lp.run_until_complete(main()) == 0);
  CHECK(log == std::vector<std::string>{"GeneratorExit"});
}

TEST_CASE("test_async_gen_aclose_may_await_in_cleanup") {
  // Python: `finally: await asyncio.sleep(1)` inside an async generator runs on aclose().
  loop::EventLoop lp(loop::make_virtual_clock());
  bool cleaned = false;
  auto gen_fn = [&]() -> AsyncGenerator<std::string> {
    bool exiting = false;
    try {
      co_yield "one";
      co_yield "two";
    } catch (const loop::GeneratorExit&) {
      exiting = true;
    }
    if (exiting) {
      co_await loop::sleep(1);
      cleaned = true;
    }
  };
  auto main = [&]() -> Coroutine<void> {
    auto gen = gen_fn();
    auto one = co_await gen.next();
    CHECK(one == std::optional<std::string>("one"));
    co_await gen.aclose();
  };
  lp.run_until_complete(main());
  CHECK(cleaned);
  CHECK(lp.time() == Approx(1.0));
}

TEST_CASE("test_async_gen_exception_propagates_from_next") {
  loop::EventLoop lp;
  auto gen_fn = []() -> AsyncGenerator<int> {
    co_yield 1;
    throw std::invalid_argument("gen failed");
  };
  auto main = [&]() -> Coroutine<std::string> {
    auto gen = gen_fn();
    auto first = co_await gen.next();
    CHECK(first == std::optional<int>(1));
    std::string what = "none";
    try {
      co_await gen.next();
    } catch (const std::invalid_argument& e) {
      what = e.what();
    }
    auto after_error = co_await gen.next();
    CHECK_FALSE(after_error);  // finished by its exception
    co_return what;
  };
  CHECK(lp.run_until_complete(main()) == "gen failed");
}

TEST_CASE("test_async_gen_ignoring_generator_exit_raises") {
  // Python: RuntimeError('async generator ignored GeneratorExit').
  loop::EventLoop lp;
  auto stubborn = []() -> AsyncGenerator<int> {
    for (int i = 0;; ++i) {
      try {
        co_yield i;
      } catch (const loop::GeneratorExit&) {
      }
    }
  };
  auto main = [&]() -> Coroutine<void> {
    auto gen = stubborn();
    co_await gen.next();
    co_await gen.aclose();
  };
  CHECK_THROWS_WITH(lp.run_until_complete(main()), "async generator ignored GeneratorExit");
}

TEST_CASE("test_shutdown_asyncgens_closes_open_generators") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<std::string> log;
  AsyncGenerator<int> kept_open = counter(10, &log);
  AsyncGenerator<int> never_started = counter(10, &log);
  auto main = [&]() -> Coroutine<void> {
    co_await kept_open.next();  // first iteration: registered with the loop
  };
  lp.run_until_complete(main());
  CHECK(log.empty());
  lp.run_until_complete(lp.shutdown_asyncgens());
  CHECK(log == std::vector<std::string>{"GeneratorExit"});
  auto after = [&]() -> Coroutine<bool> { co_return !(co_await kept_open.next()); };
  CHECK(lp.run_until_complete(after()));
  // A second call has nothing left to close.
  lp.run_until_complete(lp.shutdown_asyncgens());
  CHECK(log.size() == 1);
}

TEST_CASE("test_shutdown_asyncgens_reports_errors") {
  // Python 3.11 here: the handler gets message 'an error occurred during closing of
  // asynchronous generator <async_generator object ...>', the exception and 'asyncgen'.
  loop::EventLoop lp;
  std::vector<nlohmann::json> seen;
  lp.set_exception_handler(
      [&](loop::EventLoop&, const loop::ExceptionContext& c) { seen.push_back(c.to_json()); });
  auto gen = fails_to_close();
  auto main = [&]() -> Coroutine<void> { co_await gen.next(); };
  lp.run_until_complete(main());
  lp.run_until_complete(lp.shutdown_asyncgens());
  REQUIRE(seen.size() == 1);
  std::string msg = seen[0]["message"];
  CHECK(msg == "an error occurred during closing of asynchronous generator " + gen.repr());
  CHECK(seen[0]["exception"]["what"] == "cleanup failed");
  CHECK(seen[0]["asyncgen"] == gen.repr());
}

TEST_CASE("shutdown_asyncgens reports errors once every generator is closed, in order") {
  // Python 3.11 (gather(..., return_exceptions=True), then the reports):
  // ['slow closed', 'reported cleanup failed']; cancelled: the closers are cancelled too.
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<std::string> log;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    try {
      std::rethrow_exception(c.exception);
    } catch (const std::exception& e) {
      log.push_back(std::string("reported ") + e.what());
    }
  });
  auto bad = fails_to_close();
  auto slow = slow_to_close(0.2, &log);
  auto start = [&]() -> Coroutine<void> {
    co_await bad.next();
    co_await slow.next();
  };
  lp.run_until_complete(start());
  lp.run_until_complete(lp.shutdown_asyncgens());
  CHECK(log == std::vector<std::string>{"slow closed", "reported cleanup failed"});

  loop::EventLoop lp2(loop::make_virtual_clock());
  log.clear();
  auto slow2 = slow_to_close(0.2, &log);
  auto cancelled = [&]() -> Coroutine<void> {
    co_await slow2.next();
    auto shutdown = lp2.create_task(lp2.shutdown_asyncgens());
    co_await loop::sleep(0.05);
    shutdown.cancel();
    try {
      co_await shutdown;
    } catch (const loop::CancelledError&) {
      log.push_back("shutdown cancelled");
    }
    co_await loop::sleep(0.3);
  };
  lp2.run_until_complete(cancelled());
  CHECK(log == std::vector<std::string>{"shutdown cancelled"});
}

TEST_CASE("test_asyncgen_unregistered_when_destroyed") {
  // Dropped open, it leaves the registry and its loop closes it (once, by its own task).
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto main = [&]() -> Coroutine<void> {
    auto gen = counter(3, &log);
    co_await gen.next();
  };  // gen dropped here, suspended at its co_yield
  lp.run_until_complete(main());
  CHECK_NOTHROW(lp.run_until_complete(lp.shutdown_asyncgens()));
  CHECK(log == std::vector<std::string>{"GeneratorExit"});
}

TEST_CASE("test_asyncgen_already_running") {
  // Python: RuntimeError('anext(): asynchronous generator is already running').
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<std::string> log;
  auto gen = counter(3, &log);
  auto first = [&]() -> Coroutine<std::optional<int>> { co_return co_await gen.next(); };
  auto t1 = lp.create_task(first());
  auto second = [&]() -> Coroutine<void> {
    co_await loop::sleep(0.1);  // t1 is inside the generator's sleep(0.5) now
    co_await gen.next();
  };
  CHECK_THROWS_WITH(lp.run_until_complete(second()),
                    "anext(): asynchronous generator is already running");
  CHECK(*lp.run_until_complete(t1) == 0);
}

// ---- An open generator dropped: asyncio's finalizer hook ---------------------------------------
// base_events._asyncgen_finalizer_hook: _asyncgens.discard(agen); unless the loop is closed,
// call_soon_threadsafe(create_task, agen.aclose()). Checked against Python 3.11 and 3.7.

TEST_CASE("a dropped open generator is closed by a task on its loop") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<std::string> log;
  std::vector<std::size_t> tasks;
  auto main = [&]() -> Coroutine<void> {
    {
      auto gen = guarded(1.0, &log);
      co_await gen.next();
    }
    log.push_back("dropped");
    tasks.push_back(loop::all_tasks(lp).size());  // the task is made by a callback
    co_await loop::sleep(0);
    tasks.push_back(loop::all_tasks(lp).size());
    co_await loop::sleep(5);
    log.push_back("main ends");
  };
  lp.run_until_complete(main());
  CHECK(log == std::vector<std::string>{"dropped", "cleanup starts", "cleanup ends",
                                        "frame destroyed", "main ends"});
  CHECK(tasks == std::vector<std::size_t>{1, 2});
}

TEST_CASE("a generator dropped between runs is closed by the next run") {
  loop::EventLoop lp(loop::make_virtual_clock());
  std::vector<std::string> log;
  auto gen = guarded(0, &log);
  auto first = [&]() -> Coroutine<void> { co_await gen.next(); };
  lp.run_until_complete(first());
  gen = {};
  CHECK(log.empty());
  lp.run_until_complete(loop::sleep(0.1));
  CHECK(log == std::vector<std::string>{"cleanup starts", "cleanup ends", "frame destroyed"});
}

TEST_CASE("a generator dropped after its loop is closed is destroyed without its cleanup") {
  // asyncio: the finalizer only discards it; the frame is cleared, no except/finally runs.
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto gen = guarded(0, &log);
  auto first = [&]() -> Coroutine<void> { co_await gen.next(); };
  lp.run_until_complete(first());
  lp.close();
  gen = {};
  CHECK(log == std::vector<std::string>{"frame destroyed"});
}

TEST_CASE("a dropped generator whose loop closes before the closing task is made") {
  loop::EventLoop lp;
  std::vector<std::string> log;
  auto gen = guarded(0, &log);
  auto first = [&]() -> Coroutine<void> { co_await gen.next(); };
  lp.run_until_complete(first());
  gen = {};  // scheduled: close() drops the callback, and the frame with it
  lp.close();
  CHECK(log == std::vector<std::string>{"frame destroyed"});
}

TEST_CASE("a dropped generator's failing cleanup is its task's unretrieved exception") {
  // Python 3.11 and 3.7: {'message': 'Task exception was never retrieved', 'exception':
  // ValueError('cleanup failed'), 'future': <Task finished ...>}, as soon as the task is done.
  loop::EventLoop lp;
  std::vector<std::string> log;
  lp.set_exception_handler([&](loop::EventLoop&, const loop::ExceptionContext& c) {
    try {
      std::rethrow_exception(c.exception);
    } catch (const std::exception& e) {
      log.push_back(c.message + ": " + e.what() + (c.future_repr ? " (task)" : ""));
    }
  });
  auto main = [&]() -> Coroutine<void> {
    {
      auto gen = fails_to_close();
      co_await gen.next();
    }
    co_await loop::sleep(0);
    log.push_back("closing task made");
    co_await loop::sleep(0);
    log.push_back("main ends");
  };
  lp.run_until_complete(main());
  CHECK(log == std::vector<std::string>{"closing task made",
                                        "Task exception was never retrieved: cleanup failed (task)",
                                        "main ends"});
}

TEST_CASE("the loop destroyed while a dropped generator closes destroys its frame") {
  std::vector<std::string> log;
  {
    loop::EventLoop lp(loop::make_virtual_clock());
    lp.set_exception_handler(
        [&](loop::EventLoop&, const loop::ExceptionContext& c) { log.push_back(c.message); });
    auto main = [&]() -> Coroutine<void> {
      {
        auto gen = guarded(10, &log);
        co_await gen.next();
      }
      co_await loop::sleep(1);  // the cleanup is in its sleep(10)
    };
    lp.run_until_complete(main());
    lp.close();
  }
  CHECK(log == std::vector<std::string>{"cleanup starts", "Task was destroyed but it is pending!",
                                        "frame destroyed"});
}

TEST_CASE("a generator dropped on another thread is closed on the loop's thread") {
  loop::EventLoop lp;
  std::vector<std::string> log;
  std::thread::id cleanup_thread;
  auto gen_fn = [&]() -> AsyncGenerator<int> {
    bool exiting = false;
    try {
      co_yield 1;
    } catch (const loop::GeneratorExit&) {
      exiting = true;
    }
    if (exiting) {
      cleanup_thread = std::this_thread::get_id();
      co_await loop::sleep(0);
      log.push_back("closed");
    }
  };
  auto main = [&]() -> Coroutine<void> {
    auto holder = std::make_shared<AsyncGenerator<int>>(gen_fn());
    co_await holder->next();
    auto dropped = lp.run_in_executor(nullptr, [holder] { *holder = {}; });
    holder.reset();
    co_await dropped;
    co_await loop::sleep(0.05);
  };
  lp.run_until_complete(main());
  CHECK(log == std::vector<std::string>{"closed"});
  CHECK(cleanup_thread == std::this_thread::get_id());
}

TEST_CASE("shutdown_asyncgens racing with drops on another thread closes each generator once") {
  // Each one is closed either by shutdown_asyncgens (still registered when it looked) or by
  // its own task (dropped first): never both, never neither.
  loop::EventLoop lp;
  constexpr int n = 200;
  std::vector<int> closed(n, 0);
  auto gen_fn = [&](int i) -> AsyncGenerator<int> {
    bool exiting = false;
    try {
      co_yield i;
    } catch (const loop::GeneratorExit&) {
      exiting = true;
    }
    if (exiting) {
      co_await loop::sleep(0);
      ++closed[i];
    }
  };
  auto main = [&]() -> Coroutine<void> {
    auto gens = std::make_shared<std::vector<AsyncGenerator<int>>>();
    for (int i = 0; i < n; ++i) {
      gens->push_back(gen_fn(i));
      co_await gens->back().next();
    }
    std::atomic<int> dropped{0};
    std::thread dropper([gens, &dropped] {
      for (auto& g : *gens) {
        g = {};
        ++dropped;
      }
    });
    gens.reset();
    while (dropped.load() < n / 2) co_await loop::sleep(0);  // half dropped, half racing
    co_await lp.shutdown_asyncgens();
    dropper.join();
    for (int spin = 0; spin < 100 && std::count(closed.begin(), closed.end(), 1) < n; ++spin)
      co_await loop::sleep(0.001);
  };
  lp.run_until_complete(main());
  CHECK(std::count(closed.begin(), closed.end(), 1) == n);
}
