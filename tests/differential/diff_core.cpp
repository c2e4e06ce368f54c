// Differential scenarios of the loop's own scheduling: call_soon, timers, stop and
// run_until_complete (the asyncio half: diff_core.py).
#include <loop/loop.hpp>

#include "scenario.hpp"

using diff::say;

// Handles scheduled before stop() in the same iteration still run; those scheduled during it
// wait for the next run_forever.
SCENARIO(stop_inside_a_callback_finishes_the_iteration) {
  loop::EventLoop lp;
  lp.call_soon([&] {
    say("a");
    lp.stop();
    lp.call_soon([] { say("c (next run)"); });
  });
  lp.call_soon([] { say("b"); });
  lp.run_forever();
  say("stopped");
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  say("end");
  lp.close();
}

// stop() before run_forever(): one iteration, with what was already scheduled.
SCENARIO(stop_before_run_forever_runs_one_iteration) {
  loop::EventLoop lp;
  lp.call_soon([&] {
    say("a");
    lp.call_soon([] { say("b"); });
  });
  lp.stop();
  lp.run_forever();
  say("first run over");
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  say("end");
  lp.close();
}

// A due timer is moved to the ready queue after what call_soon already put there.
SCENARIO(due_timer_runs_after_call_soon_scheduled_later) {
  loop::EventLoop lp;
  lp.call_later(0, [] { say("timer 0"); });
  lp.call_at(lp.time() - 1, [] { say("timer in the past"); });
  lp.call_soon([] { say("soon"); });
  lp.call_later(0.01, [&] {
    say("timer 0.01");
    lp.stop();
  });
  lp.run_forever();
  lp.close();
}

SCENARIO(timers_fire_by_deadline_not_by_scheduling_order) {
  loop::EventLoop lp;
  double t0 = lp.time();
  lp.call_at(t0 + 0.03, [&] {
    say("0.03");
    lp.stop();
  });
  lp.call_at(t0 + 0.01, [] { say("0.01"); });
  lp.call_at(t0 + 0.02, [&] {
    say("0.02");
    lp.call_soon([] { say("soon from 0.02"); });
  });
  lp.call_at(t0 + 0.005, [] { say("0.005"); });
  lp.run_forever();
  lp.close();
}

SCENARIO(cancelled_handles_do_not_run) {
  loop::EventLoop lp;
  auto h1 = lp.call_soon([] { say("h1"); });
  auto h2 = lp.call_soon([] { say("h2 (cancelled)"); });
  auto t1 = lp.call_later(0.001, [] { say("t1 (cancelled)"); });
  auto t2 = lp.call_later(0.002, [&] {
    say("t2");
    lp.stop();
  });
  lp.call_soon([&] {
    say("cancel t1 from a callback");
    t1.cancel();
  });
  h2.cancel();
  say("h2 cancelled:", h2.cancelled(), "h1 cancelled:", h1.cancelled());
  lp.run_forever();
  say("t1 cancelled:", t1.cancelled(), "t2 cancelled:", t2.cancelled());
  h2.cancel();  // twice is harmless
  lp.close();
}

// run_until_complete stops through a done-callback: what that iteration scheduled before it
// still runs, what it scheduled after does not.
SCENARIO(run_until_complete_stops_after_the_future_iteration) {
  loop::EventLoop lp;
  auto fut = lp.create_future<int>();
  lp.call_soon([&] {
    say("before result");
    lp.call_soon([] { say("scheduled before the result"); });
    fut.set_result(7);
    lp.call_soon([] { say("scheduled after the result (next run)"); });
  });
  lp.call_soon([] { say("same iteration"); });
  say("result", lp.run_until_complete(fut));
  lp.call_soon([&] { lp.stop(); });
  lp.run_forever();
  lp.close();
}

// Callbacks that schedule callbacks: each generation runs one iteration later, interleaved
// with the generations of other chains.
SCENARIO(nested_call_soon_runs_one_iteration_later) {
  loop::EventLoop lp;
  int left = 3;
  std::function<void(std::string, int)> chain = [&](std::string name, int depth) {
    say(name, depth);
    if (depth < 3) {
      lp.call_soon(chain, name, depth + 1);
    } else if (--left == 0) {
      lp.stop();
    }
  };
  lp.call_soon(chain, std::string("a"), 1);
  lp.call_soon(chain, std::string("b"), 2);
  lp.call_soon(chain, std::string("c"), 1);
  lp.run_forever();
  lp.close();
}

SCENARIO(close_and_is_running_states) {
  loop::EventLoop lp;
  say("running", lp.is_running(), "closed", lp.is_closed());
  lp.call_soon([&] {
    say("inside: running", lp.is_running());
    lp.stop();
  });
  lp.run_forever();
  say("after: running", lp.is_running());
  lp.close();
  say("closed", lp.is_closed());
  lp.close();  // idempotent
  try {
    lp.call_soon([] {});
  } catch (const std::exception& e) {
    say("call_soon on a closed loop:", diff::exception_name(e), e.what());
  }
  try {
    lp.run_forever();
  } catch (const std::exception& e) {
    say("run_forever on a closed loop:", diff::exception_name(e), e.what());
  }
}

// call_soon_threadsafe from the loop's own thread is one FIFO with call_soon (asyncio appends
// both to _ready), before the loop runs and inside a callback.
SCENARIO(call_soon_threadsafe_on_the_loop_thread_keeps_call_soon_order) {
  loop::EventLoop lp;
  lp.call_soon_threadsafe([] { say("threadsafe 1"); });
  lp.call_soon([] { say("soon 2"); });
  lp.call_soon_threadsafe([&] {
    say("threadsafe 3");
    lp.call_soon([] { say("soon 5"); });
    lp.call_soon_threadsafe([] { say("threadsafe 6"); });
    lp.call_soon([&] {
      say("soon 7");
      lp.stop();
    });
  });
  lp.call_soon([] { say("soon 4"); });
  lp.run_forever();
  lp.close();
}
