// run_in_executor and executors (CPython test_base_events.py: test_run_in_executor*,
// test_set_default_executor).
#include <pthread.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <loop/loop.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {
// Runs each job on a new thread and counts them: proof the loop used it.
class CountingExecutor final : public loop::Executor {
 public:
  ~CountingExecutor() override { shutdown(true); }
  void submit(std::function<void()> work) override {
    if (down) throw std::runtime_error("shut down");
    ++submitted;
    threads.emplace_back(std::move(work));
  }
  void shutdown(bool wait) override {
    down = true;
    if (wait)
      for (auto& t : threads)
        if (t.joinable()) t.join();
  }
  std::atomic<int> submitted{0};
  bool down = false;
  std::vector<std::thread> threads;
};
}  // namespace

TEST_CASE("test_run_in_executor_default_result") {
  loop::EventLoop lp;
  std::thread::id loop_thread = std::this_thread::get_id();
  auto f = lp.run_in_executor(
      nullptr, [](int a, int b) { return std::make_pair(a * b, std::this_thread::get_id()); }, 6,
      7);
  auto [value, worker] = lp.run_until_complete(f);
  CHECK(value == 42);
  CHECK(worker != loop_thread);
}

// The executor's threads take no asynchronous signals (they go to the loop's thread, as
// CPython's go to its main thread): a SIGTERM after the loop gave the signal its default
// action back must not end the process from a worker. Faults stay deliverable.
TEST_CASE("executor threads block SIGINT and SIGTERM, not faults; the loop's thread unchanged") {
  loop::EventLoop lp;
  auto mask_of_worker = lp.run_in_executor(nullptr, [] {
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    return std::vector<int>{sigismember(&mask, SIGINT), sigismember(&mask, SIGTERM),
                            sigismember(&mask, SIGSEGV)};
  });
  CHECK(lp.run_until_complete(mask_of_worker) == std::vector<int>{1, 1, 0});
  sigset_t mine;
  pthread_sigmask(SIG_BLOCK, nullptr, &mine);
  CHECK_FALSE(sigismember(&mine, SIGTERM));  // restored after starting the worker
  lp.close();
}

TEST_CASE("test_run_in_executor_exception") {
  loop::EventLoop lp;
  auto f = lp.run_in_executor(nullptr, []() -> int { throw std::domain_error("in worker"); });
  CHECK_THROWS_AS(lp.run_until_complete(f), std::domain_error);
  auto v = lp.run_in_executor(nullptr, [] {});
  CHECK_NOTHROW(lp.run_until_complete(v));
}

TEST_CASE("test_run_in_executor_custom") {
  loop::EventLoop lp;
  CountingExecutor ex;
  auto f = lp.run_in_executor(&ex, [] { return std::string("custom"); });
  CHECK(lp.run_until_complete(f) == "custom");
  CHECK(ex.submitted == 1);
  auto coro = [&]() -> loop::Coroutine<int> {
    int a = co_await lp.run_in_executor(&ex, [] { return 1; });
    int b = co_await lp.run_in_executor(nullptr, [] { return 2; });
    co_return a + b;
  };
  CHECK(lp.run_until_complete(coro()) == 3);
  CHECK(ex.submitted == 2);
}

TEST_CASE("test_set_default_executor") {
  loop::EventLoop lp;
  auto ex = std::make_unique<CountingExecutor>();
  CountingExecutor* raw = ex.get();
  lp.set_default_executor(std::move(ex));
  auto f = lp.run_in_executor(nullptr, [] { return 5; });
  CHECK(lp.run_until_complete(f) == 5);
  CHECK(raw->submitted == 1);
  CHECK(&lp.default_executor() == raw);
}

TEST_CASE("test_run_in_executor_many_concurrent") {
  loop::EventLoop lp;
  std::vector<loop::Future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(lp.run_in_executor(nullptr, [i] { return i * i; }));
  auto all = loop::gather(fs);
  auto results = lp.run_until_complete(all);
  REQUIRE(results.size() == 50);
  bool ok = true;
  for (int i = 0; i < 50; ++i) ok = ok && results[static_cast<std::size_t>(i)] == i * i;
  CHECK(ok);
}

TEST_CASE("test_run_in_executor_result_after_loop_closed_is_dropped") {
  // The worker finishes after the loop closed: the result has nowhere to go, and nothing
  // crashes (asyncio: call_soon_threadsafe raises in the worker's callback; dropped here).
  std::atomic<bool> release{false};
  std::atomic<bool> finished{false};
  CountingExecutor ex;
  {
    loop::EventLoop lp;
    auto f = lp.run_in_executor(&ex, [&] {
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      finished = true;
      return 1;
    });
    lp.close();
    release = true;
    ex.shutdown(true);
    CHECK_FALSE(f.done());
  }
  CHECK(finished);
}

TEST_CASE("test_thread_pool_default_max_workers") {
  std::size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  CHECK(loop::ThreadPoolExecutor::default_max_workers() == std::min<std::size_t>(32, cpus + 4));
  CHECK_THROWS_AS(loop::ThreadPoolExecutor(0), std::invalid_argument);
  loop::ThreadPoolExecutor pool(2);
  pool.shutdown(true);
  CHECK_THROWS_AS(pool.submit([] {}), std::runtime_error);
}

TEST_CASE("test_cancelled_run_in_executor_work_that_has_not_started_never_runs") {
  // asyncio's wrap_future cancels the concurrent future: a job still queued never runs.
  loop::EventLoop lp;
  lp.set_default_executor(std::make_unique<loop::ThreadPoolExecutor>(1));
  std::atomic<bool> release{false}, second_ran{false};
  auto first = lp.run_in_executor(nullptr, [&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return 1;
  });
  auto second = lp.run_in_executor(nullptr, [&] {
    second_ran = true;
    return 2;
  });
  CHECK(second.cancel());
  lp.call_soon([&] { release = true; });  // the cancellation is seen first (a done-callback)
  CHECK(lp.run_until_complete(first) == 1);
  auto settle = [&]() -> loop::Coroutine<void> { co_await loop::sleep(0.05); };
  lp.run_until_complete(settle());
  CHECK(second.cancelled());
  CHECK_FALSE(second_ran.load());
}

TEST_CASE("test_set_default_executor_does_not_wait_for_the_old_one") {
  // asyncio just replaces it; waiting here would block the loop's thread on the old work.
  loop::EventLoop lp;
  std::atomic<bool> release{false}, finished{false};
  auto slow = lp.run_in_executor(nullptr, [&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    finished = true;
    return 1;
  });
  // A watchdog, so that a set_default_executor that waits returns at all (and fails below).
  std::thread watchdog([&] {
    for (int i = 0; i < 300 && !release.load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    release = true;
  });
  lp.set_default_executor(std::make_unique<loop::ThreadPoolExecutor>(1));
  CHECK_FALSE(finished.load());  // it returned while the old executor's work still ran
  release = true;
  watchdog.join();
  CHECK(lp.run_until_complete(slow) == 1);  // the old executor still delivers its work
  CHECK(lp.run_until_complete(lp.run_in_executor(nullptr, [] { return 2; })) == 2);
}
