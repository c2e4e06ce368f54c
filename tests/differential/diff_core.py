"""Differential scenarios of the loop's own scheduling (the libloop half: diff_core.cpp)."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402


@scenario
def stop_inside_a_callback_finishes_the_iteration():
    lp = asyncio.new_event_loop()

    def a():
        say("a")
        lp.stop()
        lp.call_soon(lambda: say("c (next run)"))

    lp.call_soon(a)
    lp.call_soon(lambda: say("b"))
    lp.run_forever()
    say("stopped")
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("end")
    lp.close()


@scenario
def stop_before_run_forever_runs_one_iteration():
    lp = asyncio.new_event_loop()

    def a():
        say("a")
        lp.call_soon(lambda: say("b"))

    lp.call_soon(a)
    lp.stop()
    lp.run_forever()
    say("first run over")
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("end")
    lp.close()


@scenario
def due_timer_runs_after_call_soon_scheduled_later():
    lp = asyncio.new_event_loop()
    lp.call_later(0, lambda: say("timer 0"))
    lp.call_at(lp.time() - 1, lambda: say("timer in the past"))
    lp.call_soon(lambda: say("soon"))

    def last():
        say("timer 0.01")
        lp.stop()

    lp.call_later(0.01, last)
    lp.run_forever()
    lp.close()


@scenario
def timers_fire_by_deadline_not_by_scheduling_order():
    lp = asyncio.new_event_loop()
    t0 = lp.time()

    def t3():
        say("0.03")
        lp.stop()

    def t2():
        say("0.02")
        lp.call_soon(lambda: say("soon from 0.02"))

    lp.call_at(t0 + 0.03, t3)
    lp.call_at(t0 + 0.01, lambda: say("0.01"))
    lp.call_at(t0 + 0.02, t2)
    lp.call_at(t0 + 0.005, lambda: say("0.005"))
    lp.run_forever()
    lp.close()


@scenario
def cancelled_handles_do_not_run():
    lp = asyncio.new_event_loop()
    h1 = lp.call_soon(lambda: say("h1"))
    h2 = lp.call_soon(lambda: say("h2 (cancelled)"))
    t1 = lp.call_later(0.001, lambda: say("t1 (cancelled)"))

    def t2_cb():
        say("t2")
        lp.stop()

    t2 = lp.call_later(0.002, t2_cb)

    def cancel_t1():
        say("cancel t1 from a callback")
        t1.cancel()

    lp.call_soon(cancel_t1)
    h2.cancel()
    say("h2 cancelled:", h2.cancelled(), "h1 cancelled:", h1.cancelled())
    lp.run_forever()
    say("t1 cancelled:", t1.cancelled(), "t2 cancelled:", t2.cancelled())
    h2.cancel()
    lp.close()


@scenario
def run_until_complete_stops_after_the_future_iteration():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()

    def first():
        say("before result")
        lp.call_soon(lambda: say("scheduled before the result"))
        fut.set_result(7)
        lp.call_soon(lambda: say("scheduled after the result (next run)"))

    lp.call_soon(first)
    lp.call_soon(lambda: say("same iteration"))
    say("result", lp.run_until_complete(fut))
    lp.call_soon(lp.stop)
    lp.run_forever()
    lp.close()


@scenario
def nested_call_soon_runs_one_iteration_later():
    lp = asyncio.new_event_loop()
    left = [3]

    def chain(name, depth):
        say(name, depth)
        if depth < 3:
            lp.call_soon(chain, name, depth + 1)
        else:
            left[0] -= 1
            if left[0] == 0:
                lp.stop()

    lp.call_soon(chain, "a", 1)
    lp.call_soon(chain, "b", 2)
    lp.call_soon(chain, "c", 1)
    lp.run_forever()
    lp.close()


@scenario
def close_and_is_running_states():
    lp = asyncio.new_event_loop()
    say("running", lp.is_running(), "closed", lp.is_closed())

    def inside():
        say("inside: running", lp.is_running())
        lp.stop()

    lp.call_soon(inside)
    lp.run_forever()
    say("after: running", lp.is_running())
    lp.close()
    say("closed", lp.is_closed())
    lp.close()
    try:
        lp.call_soon(lambda: None)
    except Exception as e:
        say("call_soon on a closed loop:", type(e).__name__, e)
    try:
        lp.run_forever()
    except Exception as e:
        say("run_forever on a closed loop:", type(e).__name__, e)


@scenario
def call_soon_threadsafe_on_the_loop_thread_keeps_call_soon_order():
    lp = asyncio.new_event_loop()
    lp.call_soon_threadsafe(say, "threadsafe 1")
    lp.call_soon(say, "soon 2")

    def three():
        say("threadsafe 3")
        lp.call_soon(say, "soon 5")
        lp.call_soon_threadsafe(say, "threadsafe 6")

        def seven():
            say("soon 7")
            lp.stop()

        lp.call_soon(seven)

    lp.call_soon_threadsafe(three)
    lp.call_soon(say, "soon 4")
    lp.run_forever()
    lp.close()


if __name__ == "__main__":
    main()
