// Differential scenarios of futures and tasks: done-callback order, future states, task steps
// and cancellation, gather, wait_for, shield, current_task and all_tasks (the asyncio half:
// diff_futures_tasks.py).
#include <algorithm>
#include <chrono>
#include <loop/loop.hpp>
#include <string>
#include <thread>
#include <vector>

#include "scenario.hpp"

using diff::say;
using loop::Coroutine;
using loop::Future;
using loop::Task;

namespace {

// "Type message" of an exception, as the Python half prints type(e).__name__ and e.
void say_exc(const std::string& label, std::exception_ptr e) {
  if (!e) {
    say(label, nullptr);
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    say(label, diff::exception_name(ex), ex.what());
  }
}

// Runs f and prints what it raised ("raised" and its type), or "ok".
template <class F>
void say_raises(const std::string& label, F&& f) {
  try {
    f();
    say(label, "ok");
  } catch (const std::exception& ex) {
    say(label, "raised", diff::exception_name(ex));
  }
}

std::string current_name() {
  loop::TaskBase t = loop::current_task();
  return t ? t.get_name() : std::string("None");
}

std::string sorted_task_names(loop::EventLoop& lp) {
  std::vector<std::string> names;
  for (auto& t : loop::all_tasks(lp)) names.push_back(t.get_name());
  std::sort(names.begin(), names.end());
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? ", '" : "'") + names[i] + "'";
  return out + "]";
}

std::string bools(const std::vector<bool>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i)
    out += (i ? ", " : "") + std::string(v[i] ? "True" : "False");
  return out + "]";
}

// A second run that only drains what the first one left queued.
void drain(loop::EventLoop& lp) {
  lp.call_soon([&lp] { lp.stop(); });
  lp.run_forever();
}

Coroutine<int> return_after(double delay, int value) {
  co_await loop::sleep(delay);
  co_return value;
}

}  // namespace

// ---- Futures ----------------------------------------------------------------------------------

// set_result() runs no callback inline: they are queued, in the order they were added, after
// what was already queued and before what is queued after set_result returns.
SCENARIO(future_done_callbacks_are_scheduled_in_order) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  fut.add_done_callback([](Future<int> f) { say("cb1", f.result()); });
  fut.add_done_callback([](Future<int> f) { say("cb2", f.result()); });
  lp.call_soon([&] {
    say("setter");
    lp.call_soon([] { say("queued before set_result"); });
    fut.set_result(3);
    say("set_result returned, done:", fut.done());
    lp.call_soon([] { say("queued after set_result"); });
  });
  lp.call_soon([] { say("same iteration"); });
  say("result", lp.run_until_complete(fut));
  drain(lp);
  lp.close();
}

// A callback added to a done future is queued at once (behind what is queued), not run inline.
SCENARIO(future_callback_added_when_done_is_queued) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  fut.set_result(1);
  lp.call_soon([&] {
    say("a");
    fut.add_done_callback([](Future<int> f) { say("late callback", f.result()); });
    say("added");
    lp.call_soon([&] {
      say("queued after the add");
      lp.stop();
    });
  });
  lp.call_soon([] { say("b"); });
  lp.run_forever();
  lp.close();
}

// remove_done_callback returns how many it removed; once the future is done the callbacks are
// queued already: removing one then returns 0 and it still runs. Removing and adding keeps the
// order of the callbacks left.
SCENARIO(future_remove_done_callback) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  auto one = fut.add_done_callback([](Future<int>) { say("one"); });
  auto two = fut.add_done_callback([](Future<int>) { say("two"); });
  auto three = fut.add_done_callback([](Future<int>) { say("three"); });
  fut.add_done_callback([](Future<int>) { say("four"); });
  say("remove two:", fut.remove_done_callback(two));
  say("remove two again:", fut.remove_done_callback(two));
  fut.add_done_callback([](Future<int>) { say("five"); });
  say("remove one:", fut.remove_done_callback(one));
  fut.add_done_callback([](Future<int>) { say("six"); });
  fut.set_result(0);
  say("remove three after set_result:", fut.remove_done_callback(three));
  lp.run_until_complete(fut);

  // All removed, then new ones: they run, in order.
  auto fut2 = lp.create_future<int>();
  auto a = fut2.add_done_callback([](Future<int>) { say("a (removed)"); });
  auto b = fut2.add_done_callback([](Future<int>) { say("b (removed)"); });
  std::size_t removed_a = fut2.remove_done_callback(a);
  std::size_t removed_b = fut2.remove_done_callback(b);
  say("remove a, b:", removed_a, removed_b);
  fut2.add_done_callback([](Future<int>) { say("c"); });
  fut2.add_done_callback([](Future<int>) { say("d"); });
  fut2.add_done_callback([](Future<int>) { say("e"); });
  fut2.set_result(0);
  lp.run_until_complete(fut2);
  lp.close();
}

SCENARIO(future_states_and_invalid_state_errors) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  say("pending: done", fut.done(), "cancelled", fut.cancelled());
  say_raises("result() while pending", [&] { (void)fut.result(); });
  try {
    (void)fut.exception();
  } catch (const std::exception& e) {
    say("exception() while pending:", diff::exception_name(e), e.what());
  }
  fut.set_result(1);
  say("finished: done", fut.done(), "cancelled", fut.cancelled(), "result", fut.result());
  say_exc("exception() of a result:", fut.exception());
  say_raises("set_result twice", [&] { fut.set_result(2); });
  say_raises("set_exception when done", [&] { fut.set_exception(std::runtime_error("x")); });
  say("result still", fut.result());
  bool cancel_done = fut.cancel();
  say("cancel() when done:", cancel_done, "cancelled", fut.cancelled());

  auto c = lp.create_future<int>();
  say("cancel():", c.cancel());
  say("cancel() again:", c.cancel());
  say("cancelled: done", c.done(), "cancelled", c.cancelled());
  try {
    (void)c.result();
  } catch (const std::exception& e) {
    say("result() when cancelled:", diff::exception_name(e), e.what());
  }
  try {
    (void)c.exception();
  } catch (const std::exception& e) {
    say("exception() when cancelled:", diff::exception_name(e), e.what());
  }
  say_raises("set_result when cancelled", [&] { c.set_result(3); });
  lp.close();
}

// The message of result() on a pending future: asyncio's C Future says "Result is not set."
SCENARIO(future_result_while_pending_message) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  try {
    (void)fut.result();
  } catch (const std::exception& e) {
    say("result() while pending:", diff::exception_name(e), e.what());
  }
  lp.close();
}

// A future with an exception: exception() returns it, result() raises it, callbacks see it. A
// CancelledError set as an exception finishes the future, it does not cancel it.
SCENARIO(future_exception_and_cancel_callbacks) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  fut.add_done_callback([](Future<int> f) { say_exc("callback sees", f.exception()); });
  fut.set_exception(std::runtime_error("boom"));
  say("done", fut.done(), "cancelled", fut.cancelled());
  say_exc("exception():", fut.exception());
  try {
    (void)fut.result();
  } catch (const std::exception& e) {
    say("result() raises", diff::exception_name(e), e.what());
  }
  try {
    lp.run_until_complete(fut);
  } catch (const std::exception& e) {
    say("run_until_complete raises", diff::exception_name(e), e.what());
  }

  auto c = lp.create_future<int>();
  c.add_done_callback([](Future<int> f) { say("cancel callback: cancelled", f.cancelled()); });
  bool cancelled_now = c.cancel();
  say("cancel():", cancelled_now, "done", c.done());
  drain(lp);

  auto x = lp.create_future<int>();
  x.set_exception(loop::CancelledError());
  say("CancelledError as exception: done", x.done(), "cancelled", x.cancelled());
  try {
    (void)x.result();
  } catch (const std::exception& e) {
    say("result() raises", diff::exception_name(e));
  }
  lp.close();
}

// ---- Tasks --------------------------------------------------------------------------------------

// Each sleep(0) yields for one iteration: the steps of several tasks interleave round robin.
SCENARIO(task_steps_interleave_round_robin) {
  loop::EventLoop lp;
  auto worker = [](std::string name, int n) -> Coroutine<int> {
    for (int i = 0; i < n; ++i) {
      say(name, "step", i);
      co_await loop::sleep(0);
    }
    say(name, "done");
    co_return n * 10;
  };
  std::vector<Future<int>> tasks{lp.create_task(worker("a", 3)), lp.create_task(worker("b", 1)),
                                 lp.create_task(worker("c", 2))};
  lp.call_soon([] { say("callback queued after the tasks"); });
  auto results = lp.run_until_complete(loop::gather(tasks));
  say("results", results[0], results[1], results[2]);
  lp.close();
}

// A task awaiting another resumes through the inner task's done-callbacks, in the order they
// were added, after what the inner task queued before returning.
SCENARIO(task_awaiting_task_resumes_among_done_callbacks) {
  loop::EventLoop lp;
  auto inner = [&]() -> Coroutine<int> {
    say("inner starts");
    co_await loop::sleep(0);
    lp.call_soon([] { say("queued by inner before returning"); });
    say("inner returns");
    co_return 5;
  };
  auto outer = [](Task<int> t) -> Coroutine<void> {
    say("outer awaits inner");
    int r = co_await t;
    say("outer got", r);
  };
  auto t_in = lp.create_task(inner(), "inner");
  t_in.add_done_callback([](Future<int> f) { say("callback added before the await", f.result()); });
  auto t_out = lp.create_task(outer(t_in), "outer");
  lp.call_soon([&] {
    t_in.add_done_callback(
        [](Future<int> f) { say("callback added after the await", f.result()); });
  });
  lp.run_until_complete(t_out);
  say("outer done", t_out.done());
  lp.close();
}

SCENARIO(task_cancel_while_waiting_on_future) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  auto body = [&]() -> Coroutine<int> {
    try {
      co_return co_await fut;
    } catch (const loop::CancelledError&) {
      say("body caught CancelledError");
      throw;
    }
  };
  auto t = lp.create_task(body());
  lp.call_soon([&] {
    say("cancel:", t.cancel());
    say("future cancelled", fut.cancelled(), "task done", t.done(), "task cancelled",
        t.cancelled());
  });
  try {
    lp.run_until_complete(t);
  } catch (const loop::CancelledError&) {
    say("run_until_complete raised CancelledError");
  }
  say("task cancelled", t.cancelled(), "future cancelled", fut.cancelled());
  lp.close();
}

SCENARIO(task_cancel_while_sleeping) {
  loop::EventLoop lp;
  auto body = [&]() -> Coroutine<void> {
    say("sleeper starts");
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      say("sleeper caught CancelledError");
      throw;
    }
    say("not reached");
  };
  double t0 = lp.time();
  auto t = lp.create_task(body());
  lp.call_later(0.01, [&] { say("cancel:", t.cancel()); });
  try {
    lp.run_until_complete(t);
  } catch (const loop::CancelledError&) {
    say("run_until_complete raised CancelledError");
  }
  say("cancelled", t.cancelled(), "well before 10 s", lp.time() - t0 < 5);
  lp.close();
}

// The future is done and the task's wakeup queued when cancel() comes: cancel() returns True and
// the task gets CancelledError instead of the result.
SCENARIO(task_cancel_with_wakeup_already_queued) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  auto body = [&]() -> Coroutine<void> {
    try {
      int r = co_await fut;
      say("got", r);
    } catch (const loop::CancelledError&) {
      say("CancelledError instead of the result");
      throw;
    }
  };
  auto t = lp.create_task(body());
  lp.call_soon([&] {
    fut.set_result(1);
    say("cancel:", t.cancel());
    say("future cancelled", fut.cancelled(), "task done", t.done());
  });
  try {
    lp.run_until_complete(t);
  } catch (const loop::CancelledError&) {
    say("run_until_complete raised CancelledError");
  }
  say("task cancelled", t.cancelled(), "future result", fut.result());
  lp.close();
}

SCENARIO(task_swallows_cancellation_and_goes_on) {
  loop::EventLoop lp;
  auto body = [&]() -> Coroutine<int> {
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      say("swallowed CancelledError");
    }
    co_await loop::sleep(0);
    say("still running");
    co_return 7;
  };
  auto t = lp.create_task(body());
  lp.call_soon([&] { say("cancel:", t.cancel()); });
  say("result", lp.run_until_complete(t));
  say("cancelled", t.cancelled(), "done", t.done());
  lp.close();
}

// cancel() of a done task is False; twice on a waiting task is True twice, and throws once.
SCENARIO(task_cancel_done_and_cancel_twice) {
  loop::EventLoop lp;
  auto one = []() -> Coroutine<int> { co_return 1; };
  auto t1 = lp.create_task(one());
  say("result", lp.run_until_complete(t1));
  bool cancel_t1 = t1.cancel();
  say("cancel a done task:", cancel_t1, "cancelled", t1.cancelled(), "result", t1.result());

  auto fut = lp.create_future<int>();
  auto body = [&]() -> Coroutine<int> {
    try {
      co_await fut;
    } catch (const loop::CancelledError&) {
      say("caught CancelledError");
    }
    co_await loop::sleep(0);
    say("no second CancelledError");
    co_return 2;
  };
  auto t2 = lp.create_task(body());
  lp.call_soon([&] {
    say("first cancel:", t2.cancel());
    say("second cancel:", t2.cancel());
  });
  say("result", lp.run_until_complete(t2));
  say("cancelled", t2.cancelled());
  lp.close();
}

// Cancelled before its first step: the body never runs, the task ends cancelled at that step.
SCENARIO(task_cancelled_before_first_step) {
  loop::EventLoop lp;
  auto body = []() -> Coroutine<void> {
    try {
      say("body ran");
      co_await loop::sleep(0);
    } catch (const loop::CancelledError&) {
      say("body caught CancelledError");
      throw;
    }
  };
  auto t = lp.create_task(body());
  t.add_done_callback([](Future<void> f) { say("done callback: cancelled", f.cancelled()); });
  lp.call_soon([] { say("callback queued after the task"); });
  say("cancel:", t.cancel());
  say("done right after cancel()", t.done(), "cancelled", t.cancelled());
  try {
    lp.run_until_complete(t);
  } catch (const loop::CancelledError&) {
    say("run_until_complete raised CancelledError");
  }
  lp.close();
}

// A task that cancels itself: the request is passed to the future it awaits next (cancelled at
// once), or thrown in at its next step after sleep(0).
SCENARIO(task_cancels_itself_then_awaits) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  auto body = [&]() -> Coroutine<void> {
    say("cancel self:", loop::current_task().cancel());
    say("still running after cancel()");
    try {
      co_await fut;
    } catch (const loop::CancelledError&) {
      say("await raised CancelledError; future cancelled", fut.cancelled());
      throw;
    }
  };
  auto t = lp.create_task(body());
  try {
    lp.run_until_complete(t);
  } catch (const loop::CancelledError&) {
    say("task cancelled", t.cancelled());
  }

  auto body2 = [&]() -> Coroutine<int> {
    say("cancel self:", loop::current_task().cancel());
    try {
      co_await loop::sleep(0);
    } catch (const loop::CancelledError&) {
      say("sleep(0) raised CancelledError");
    }
    co_return 3;
  };
  auto t2 = lp.create_task(body2());
  int r2 = lp.run_until_complete(t2);
  say("result", r2, "cancelled", t2.cancelled());
  lp.close();
}

// Cancelling a task that awaits another task cancels the inner one; if the inner one swallows it
// and returns, the outer task gets the result and is not cancelled.
SCENARIO(task_cancel_reaches_awaited_task_that_swallows_it) {
  loop::EventLoop lp;
  auto inner = []() -> Coroutine<int> {
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      say("inner swallowed CancelledError");
    }
    co_return 5;
  };
  auto outer = [](Task<int> t) -> Coroutine<int> {
    int r = co_await t;
    say("outer got", r);
    co_return r + 1;
  };
  auto t_in = lp.create_task(inner());
  auto t_out = lp.create_task(outer(t_in));
  lp.call_soon([&] {
    say("cancel outer:", t_out.cancel());
    say("inner done", t_in.done(), "outer done", t_out.done());
  });
  say("result", lp.run_until_complete(t_out));
  say("outer cancelled", t_out.cancelled(), "inner cancelled", t_in.cancelled());
  lp.close();
}

SCENARIO(exceptions_propagate_through_awaits) {
  loop::EventLoop lp;
  auto level3 = []() -> Coroutine<int> {
    co_await loop::sleep(0);
    throw std::invalid_argument("deep");
  };
  auto level2 = [&]() -> Coroutine<int> {
    try {
      co_return co_await level3();
    } catch (const std::invalid_argument& e) {
      say("level2 caught", diff::exception_name(e), e.what());
      throw std::runtime_error(std::string("wrapped: ") + e.what());
    }
  };
  auto level1 = [&]() -> Coroutine<int> { co_return co_await level2(); };
  auto t1 = lp.create_task(level1());
  auto top = [&]() -> Coroutine<void> {
    try {
      co_await t1;
    } catch (const std::exception& e) {
      say("top caught", diff::exception_name(e), e.what());
    }
  };
  lp.run_until_complete(top());
  say("task done", t1.done(), "cancelled", t1.cancelled());
  say_exc("task exception():", t1.exception());
  lp.close();
}

SCENARIO(run_until_complete_task_raises) {
  loop::EventLoop lp;
  auto fails = []() -> Coroutine<int> {
    co_await loop::sleep(0);
    throw std::runtime_error("boom");
  };
  auto t = lp.create_task(fails());
  try {
    lp.run_until_complete(t);
  } catch (const std::exception& e) {
    say("run_until_complete raised", diff::exception_name(e), e.what());
  }
  say("done", t.done(), "cancelled", t.cancelled());
  say_exc("exception():", t.exception());
  auto raises_at_once = []() -> Coroutine<int> {
    throw std::invalid_argument("at once");
    co_return 0;
  };
  try {
    lp.run_until_complete(raises_at_once());
  } catch (const std::exception& e) {
    say("coroutine: run_until_complete raised", diff::exception_name(e), e.what());
  }
  say("the loop goes on:", lp.run_until_complete(return_after(0, 4)));
  lp.close();
}

// Awaiting a done future, or a coroutine that does not suspend, does not yield to the loop.
SCENARIO(await_done_future_does_not_yield) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  fut.set_result(1);
  auto immediate = []() -> Coroutine<int> { co_return 2; };
  auto main_body = [&]() -> Coroutine<void> {
    say("main starts");
    int r = co_await fut;
    say("main got", r, "from the done future");
    int r2 = co_await immediate();
    say("main got", r2, "from the coroutine");
    co_await loop::sleep(0);
    say("main after sleep(0)");
  };
  auto other = []() -> Coroutine<void> {
    say("other step");
    co_return;
  };
  auto m = lp.create_task(main_body());
  auto o = lp.create_task(other());
  lp.run_until_complete(m);
  say("other done", o.done());
  lp.close();
}

// sleep(0) lets what the task queued run first; sleep(0, result) returns the result.
SCENARIO(sleep0_lets_queued_callbacks_run) {
  loop::EventLoop lp;
  auto main_body = [&]() -> Coroutine<void> {
    lp.call_soon([] { say("callback queued before sleep(0)"); });
    co_await loop::sleep(0);
    say("main resumed");
    lp.call_soon([] { say("second callback"); });
    std::string x = "x";
    std::string r = co_await loop::sleep(0, x);
    say("sleep(0, 'x') returned", r);
  };
  auto other = []() -> Coroutine<void> {
    say("other step 1");
    co_await loop::sleep(0);
    say("other step 2");
    co_await loop::sleep(0);
    say("other step 3");
  };
  auto m = lp.create_task(main_body());
  auto o = lp.create_task(other());
  lp.run_until_complete(m);
  drain(lp);
  lp.close();
}

// run_until_complete on a done future still runs one iteration: what is queued runs, not what
// that queues.
SCENARIO(run_until_complete_on_done_future_runs_one_iteration) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  fut.set_result(9);
  lp.call_soon([&] {
    say("a");
    lp.call_soon([] { say("queued by a (next run)"); });
  });
  lp.call_soon([] { say("b"); });
  say("result", lp.run_until_complete(fut));
  drain(lp);
  lp.close();
}

SCENARIO(current_task_and_all_tasks) {
  loop::EventLoop lp;
  say("outside the loop:", current_name());
  auto gate = lp.create_future<void>();
  auto inline_coro = []() -> Coroutine<void> {
    say("in a coroutine awaited by alpha:", current_name());
    co_return;
  };
  auto alpha = [&]() -> Coroutine<void> {
    say("in alpha:", current_name());
    say("all_tasks in alpha:", sorted_task_names(lp));
    co_await loop::sleep(0);
    co_await inline_coro();
  };
  auto beta = [&]() -> Coroutine<void> {
    say("in beta:", current_name());
    co_await gate;
    say("beta resumed:", current_name());
  };
  lp.call_soon([] { say("in a callback:", current_name()); });
  auto ta = lp.create_task(alpha(), "alpha");
  auto tb = lp.create_task(beta(), "beta");
  ta.add_done_callback([&](Future<void>) {
    say("in alpha's done callback:", current_name());
    say("all_tasks there:", sorted_task_names(lp));
    gate.set_result();
  });
  lp.run_until_complete(tb);
  say("all_tasks at the end:", sorted_task_names(lp));
  lp.close();
}

SCENARIO(ensure_future_identity_and_scheduling) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  say("future as is:", loop::ensure_future(fut) == fut);
  auto t = lp.create_task(return_after(0, 1));
  say("task as is:", loop::ensure_future(t) == t);
  lp.call_soon([] { say("callback queued before ensure_future"); });
  auto body = []() -> Coroutine<int> {
    say("coroutine wrapped by ensure_future runs");
    co_return 2;
  };
  auto f2 = loop::ensure_future(body(), &lp);
  say("wrapped in a task:", f2.state()->is_task(), "done", f2.done());
  say("result", lp.run_until_complete(f2));
  lp.run_until_complete(t);
  fut.cancel();
  lp.close();
}

// Several tasks awaiting one future resume in the order they started to wait, among the
// future's other callbacks.
SCENARIO(tasks_awaiting_one_future_resume_in_await_order) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  auto waiter = [&](std::string name) -> Coroutine<void> {
    say(name, "waits");
    int r = co_await fut;
    say(name, "resumed with", r);
  };
  auto t1 = lp.create_task(waiter("first"));
  fut.add_done_callback([](Future<int>) { say("callback added before any await"); });
  auto t2 = lp.create_task(waiter("second"));
  auto t3 = lp.create_task(waiter("third"));
  lp.call_soon([&] {
    fut.add_done_callback([](Future<int>) { say("callback added after the awaits"); });
    fut.set_result(4);
  });
  lp.run_until_complete(t3);
  say("done", t1.done(), t2.done(), t3.done());
  lp.close();
}

// A future of another loop, or the task itself, cannot be awaited: asyncio throws the
// RuntimeError into the task at its next step, queued behind the steps already queued.
SCENARIO(await_foreign_future_or_itself_raises_at_next_step) {
  loop::EventLoop lp;
  loop::EventLoop other_loop;
  auto foreign = other_loop.create_future<int>();
  auto a = [&]() -> Coroutine<void> {
    say("a awaits a future of another loop");
    try {
      co_await foreign;
    } catch (const std::exception& e) {
      say("a caught", diff::exception_name(e));
    }
  };
  auto b = []() -> Coroutine<void> {
    say("b step");
    co_return;
  };
  auto ta = lp.create_task(a());
  auto tb = lp.create_task(b());
  lp.run_until_complete(ta);
  lp.run_until_complete(tb);

  Task<void>* self = nullptr;
  auto c = [&]() -> Coroutine<void> {
    say("c awaits itself");
    try {
      co_await *self;
    } catch (const std::exception& e) {
      say("c caught", diff::exception_name(e));
    }
  };
  auto tc = lp.create_task(c());
  self = &tc;
  auto td = lp.create_task(b());
  lp.run_until_complete(tc);
  lp.run_until_complete(td);
  other_loop.close();
  lp.close();
}

SCENARIO(run_until_complete_future_of_another_loop) {
  loop::EventLoop lp;
  loop::EventLoop other_loop;
  auto foreign = other_loop.create_future<int>();
  try {
    lp.run_until_complete(foreign);
  } catch (const std::exception& e) {
    say("run_until_complete raised", diff::exception_name(e), e.what());
  }
  foreign.cancel();
  other_loop.close();
  lp.close();
}

// ---- gather -------------------------------------------------------------------------------------

SCENARIO(gather_results_in_argument_order) {
  loop::EventLoop lp;
  auto child = [](double delay, std::string v) -> Coroutine<std::string> {
    co_await loop::sleep(delay);
    say("child", v, "finishes");
    co_return v;
  };
  auto fut = lp.create_future<std::string>();
  std::vector<Future<std::string>> children{lp.create_task(child(0.03, "a")),
                                            lp.create_task(child(0.01, "b")), fut,
                                            lp.create_task(child(0, "d"))};
  auto g = loop::gather(children);
  children[0].add_done_callback([](Future<std::string>) { say("a's own done callback"); });
  g.add_done_callback([](Future<std::vector<std::string>>) { say("gather done callback"); });
  lp.call_soon([fut] {
    say("set c");
    fut.set_result("c");
  });
  auto r = lp.run_until_complete(g);
  say("results", r[0], r[1], r[2], r[3]);
  lp.close();
}

// The first exception finishes the gathering future; the other children go on, a later failure
// is not reported.
SCENARIO(gather_child_fails_first_exception_wins) {
  loop::EventLoop lp;
  auto fail = [](double delay, bool value_error) -> Coroutine<int> {
    co_await loop::sleep(delay);
    say("failing after", delay);
    if (value_error) throw std::invalid_argument("first");
    throw std::runtime_error("second");
  };
  std::vector<Future<int>> children{lp.create_task(return_after(0.04, 1)),
                                    lp.create_task(fail(0.01, true)),
                                    lp.create_task(fail(0.02, false))};
  auto g = loop::gather(children);
  g.add_done_callback([&](Future<std::vector<int>>) {
    say("gather done; children done",
        bools({children[0].done(), children[1].done(), children[2].done()}));
  });
  try {
    lp.run_until_complete(g);
  } catch (const std::exception& e) {
    say("gather raised", diff::exception_name(e), e.what());
  }
  say("first child result", lp.run_until_complete(children[0]));
  say("third child done", children[2].done(), "cancelled", children[0].cancelled());
  say_exc("third child exception:", children[2].exception());
  lp.close();
}

// The same future twice: one child in asyncio (deduplicated), its result in both places.
SCENARIO(gather_same_future_twice) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  auto other = lp.create_future<int>();
  auto g = loop::gather(std::vector<Future<int>>{fut, other, fut});
  g.add_done_callback([](Future<std::vector<int>>) { say("gather done callback"); });
  lp.call_soon([&] {
    fut.set_result(1);
    other.set_result(2);
  });
  auto r = lp.run_until_complete(g);
  say("results", r[0], r[1], r[2]);

  auto f2 = lp.create_future<int>();
  auto g2 = loop::gather(std::vector<Future<int>>{f2, f2});
  bool cancel_g2 = g2.cancel();
  say("cancel:", cancel_g2, "child cancelled", f2.cancelled());
  try {
    lp.run_until_complete(g2);
  } catch (const loop::CancelledError&) {
    say("gather raised CancelledError");
  }
  lp.close();
}

// Cancelling the gathering future cancels every child at once; it ends with the CancelledError
// of a child as its exception, not cancelled itself.
SCENARIO(gather_cancel_cancels_children) {
  loop::EventLoop lp;
  auto slow = [](int i) -> Coroutine<int> {
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      say("child", i, "cancelled");
      throw;
    }
    co_return i;
  };
  auto fut = lp.create_future<int>();
  std::vector<Future<int>> children{lp.create_task(slow(0)), lp.create_task(slow(1)), fut};
  auto g = loop::gather(children);
  lp.call_soon([&] {
    say("gather cancel:", g.cancel());
    say("children cancelled now",
        bools({children[0].cancelled(), children[1].cancelled(), children[2].cancelled()}),
        "gather done", g.done());
    say("gather cancel again:", g.cancel());
  });
  try {
    lp.run_until_complete(g);
  } catch (const loop::CancelledError&) {
    say("gather raised CancelledError");
  }
  say("gather done", g.done(), "cancelled", g.cancelled());
  say_exc("gather exception():", g.exception());
  drain(lp);
  say("children cancelled",
      bools({children[0].cancelled(), children[1].cancelled(), children[2].cancelled()}));
  lp.close();
}

// Children done but their callbacks not run yet: the gathering future is pending, and cancel()
// finds nothing to cancel.
SCENARIO(gather_cancel_when_children_done_returns_false) {
  loop::EventLoop lp;
  auto f1 = lp.create_future<int>();
  auto f2 = lp.create_future<int>();
  auto g = loop::gather(std::vector<Future<int>>{f1, f2});
  lp.call_soon([&] {
    f1.set_result(1);
    f2.set_result(2);
    bool cancel_g = g.cancel();
    say("gather cancel:", cancel_g, "gather done", g.done());
  });
  auto r = lp.run_until_complete(g);
  say("results", r[0], r[1], "cancelled", g.cancelled());
  lp.close();
}

// A child swallows the cancellation and returns: the gathering future still ends with a
// CancelledError (bpo-32684).
SCENARIO(gather_cancel_requested_but_child_swallows) {
  loop::EventLoop lp;
  auto stubborn = []() -> Coroutine<int> {
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      say("child swallowed CancelledError");
    }
    co_return 10;
  };
  auto done_child = lp.create_future<int>();
  done_child.set_result(2);
  auto t = lp.create_task(stubborn());
  auto g = loop::gather(std::vector<Future<int>>{t, done_child});
  lp.call_soon([&] { say("gather cancel:", g.cancel()); });
  try {
    lp.run_until_complete(g);
  } catch (const loop::CancelledError&) {
    say("gather raised CancelledError");
  }
  say("child result", t.result(), "child cancelled", t.cancelled(), "gather cancelled",
      g.cancelled());
  lp.close();
}

// asyncio.gather() wraps its coroutines in tasks when it is called, not when it is awaited.
SCENARIO(gather_schedules_children_when_called) {
  loop::EventLoop lp;
  auto child = [](std::string x) -> Coroutine<std::string> {
    say("child", x, "runs");
    co_return x;
  };
  auto other = []() -> Coroutine<void> {
    say("other task runs");
    co_return;
  };
  auto main_body = [&]() -> Coroutine<void> {
    auto g = loop::gather(child("a"), child("b"));
    say("gather called");
    auto o = lp.create_task(other());
    co_await loop::sleep(0);
    say("main after sleep(0)");
    auto [a, b] = co_await std::move(g);
    say("results", a, b);
    co_await o;
  };
  lp.run_until_complete(main_body());
  lp.close();
}

// The children of gather(...) are wrapped in tasks in the order of the arguments: their first
// steps run in that order.
SCENARIO(gather_runs_children_in_argument_order) {
  loop::EventLoop lp;
  auto child = [](std::string x) -> Coroutine<std::string> {
    say("child", x, "step 1");
    co_await loop::sleep(0);
    say("child", x, "step 2");
    co_return x;
  };
  auto main_body = [&]() -> Coroutine<void> {
    auto [a, b, c] = co_await loop::gather(child("a"), child("b"), child("c"));
    say("results", a, b, c);
  };
  lp.run_until_complete(main_body());
  lp.close();
}

// Cancelling the task that awaits gather(...) cancels the children; the task ends cancelled.
SCENARIO(gather_awaiting_task_cancelled) {
  loop::EventLoop lp;
  auto slow = [](std::string x) -> Coroutine<int> {
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      say("child", x, "cancelled");
      throw;
    }
    co_return 0;
  };
  auto main_body = [&]() -> Coroutine<void> {
    try {
      co_await loop::gather(slow("a"), slow("b"));
    } catch (const loop::CancelledError&) {
      say("main got CancelledError");
      throw;
    }
  };
  auto t = lp.create_task(main_body());
  lp.call_later(0.01, [&] { say("cancel main:", t.cancel()); });
  try {
    lp.run_until_complete(t);
  } catch (const loop::CancelledError&) {
    say("run_until_complete raised CancelledError");
  }
  say("main cancelled", t.cancelled());
  lp.close();
}

// ---- wait_for -----------------------------------------------------------------------------------

// On timeout the inner task is cancelled, and its cancellation finished, before TimeoutError.
SCENARIO(wait_for_timeout_cancels_inner_first) {
  loop::EventLoop lp;
  auto slow = [](std::string name) -> Coroutine<int> {
    say(name, "starts");
    try {
      co_await loop::sleep(10);
    } catch (const loop::CancelledError&) {
      say(name, "cancelled");
      throw;
    }
    co_return 0;
  };
  auto main_body = [&]() -> Coroutine<void> {
    try {
      co_await loop::wait_for(slow("coroutine"), 0.02);
    } catch (const loop::TimeoutError& e) {
      say("main:", diff::exception_name(e));
    }
    auto t = lp.create_task(slow("task"));
    try {
      co_await loop::wait_for(t, 0.02);
    } catch (const loop::TimeoutError& e) {
      say("main:", diff::exception_name(e), "task cancelled", t.cancelled());
    }
  };
  lp.run_until_complete(main_body());
  lp.close();
}

SCENARIO(wait_for_result_in_time) {
  loop::EventLoop lp;
  auto fails = []() -> Coroutine<int> {
    co_await loop::sleep(0.01);
    throw std::invalid_argument("inner failed");
  };
  auto main_body = [&]() -> Coroutine<void> {
    int r = co_await loop::wait_for(return_after(0.01, 5), 1.0);
    say("in time:", r);
    auto done = lp.create_future<int>();
    done.set_result(6);
    int r2 = co_await loop::wait_for(done, 0);
    say("done future, timeout 0:", r2);
    try {
      co_await loop::wait_for(fails(), 1.0);
    } catch (const std::exception& e) {
      say("inner exception:", diff::exception_name(e), e.what());
    }
  };
  lp.run_until_complete(main_body());
  say("tasks left", sorted_task_names(lp));
  lp.close();
}

// The timeout and the inner future complete in the same iteration (the loop was blocked past
// both deadlines): the timeout's callback runs first, but wait_for sees the future done and
// returns its result (or raises its exception) instead of TimeoutError.
SCENARIO(wait_for_inner_done_in_same_iteration_as_timeout) {
  loop::EventLoop lp;
  auto main_body = [&]() -> Coroutine<void> {
    auto fut = lp.create_future<int>();
    lp.call_later(0.02, [fut] {
      say("inner future set");
      fut.set_result(7);
    });
    lp.call_soon([] { std::this_thread::sleep_for(std::chrono::milliseconds(80)); });
    int r = co_await loop::wait_for(fut, 0.01);
    say("wait_for returned", r);

    auto fut2 = lp.create_future<int>();
    lp.call_later(0.02, [fut2] {
      say("inner future fails");
      fut2.set_exception(std::invalid_argument("late"));
    });
    lp.call_soon([] { std::this_thread::sleep_for(std::chrono::milliseconds(80)); });
    try {
      co_await loop::wait_for(fut2, 0.01);
    } catch (const std::exception& e) {
      say("wait_for raised", diff::exception_name(e), e.what());
    }
  };
  lp.run_until_complete(main_body());
  lp.close();
}

// Cancelling the task in wait_for cancels the awaited future too.
SCENARIO(wait_for_outer_cancelled_cancels_inner) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  auto main_body = [&]() -> Coroutine<void> {
    try {
      co_await loop::wait_for(fut, 10);
    } catch (const loop::CancelledError&) {
      say("main got CancelledError");
      throw;
    }
  };
  auto t = lp.create_task(main_body());
  lp.call_soon([&] { say("cancel main:", t.cancel()); });
  try {
    lp.run_until_complete(t);
  } catch (const loop::CancelledError&) {
    say("run_until_complete raised CancelledError");
  }
  say("main cancelled", t.cancelled(), "future cancelled", fut.cancelled());
  lp.close();
}

// ---- shield -------------------------------------------------------------------------------------

SCENARIO(shield_outer_cancel_leaves_inner_running) {
  loop::EventLoop lp;
  auto inner = []() -> Coroutine<int> {
    say("inner starts");
    co_await loop::sleep(0.02);
    say("inner finishes");
    co_return 7;
  };
  auto main_body = [](Task<int> t) -> Coroutine<int> {
    try {
      Future<int> shielded = loop::shield(Future<int>(t));
      co_return co_await shielded;
    } catch (const loop::CancelledError&) {
      say("main got CancelledError; inner done", t.done());
      throw;
    }
  };
  auto t_in = lp.create_task(inner());
  auto t_main = lp.create_task(main_body(t_in));
  lp.call_soon([&] { say("cancel main:", t_main.cancel()); });
  try {
    lp.run_until_complete(t_main);
  } catch (const loop::CancelledError&) {
    say("run_until_complete raised CancelledError");
  }
  int r_in = lp.run_until_complete(t_in);
  say("inner result", r_in, "inner cancelled", t_in.cancelled());
  lp.close();
}

SCENARIO(shield_shortcut_and_propagation) {
  loop::EventLoop lp;
  auto done = lp.create_future<int>();
  done.set_result(1);
  say("shield of a done future is the future:", loop::shield(done) == done);

  auto f2 = lp.create_future<int>();
  auto s2 = loop::shield(f2);
  say("shield of a pending future is another:", s2 == f2);
  f2.set_exception(std::runtime_error("inner failed"));
  try {
    lp.run_until_complete(s2);
  } catch (const std::exception& e) {
    say("outer raised", diff::exception_name(e), e.what());
  }

  auto f3 = lp.create_future<int>();
  auto s3 = loop::shield(f3);
  say("cancel inner:", f3.cancel());
  try {
    lp.run_until_complete(s3);
  } catch (const loop::CancelledError&) {
    say("outer raised CancelledError; outer cancelled", s3.cancelled());
  }

  auto f4 = lp.create_future<int>();
  auto s4 = loop::shield(f4);
  bool cancel_s4 = s4.cancel();
  say("cancel outer:", cancel_s4, "inner cancelled", f4.cancelled());
  drain(lp);
  f4.set_result(4);
  drain(lp);
  say("inner result", f4.result(), "outer cancelled", s4.cancelled());
  lp.close();
}
