"""Differential scenarios of futures and tasks (the libloop half: diff_futures_tasks.cpp)."""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402


def say_exc(label, e):
    if e is None:
        say(label, None)
    else:
        say(label, type(e).__name__, e)


def say_raises(label, f):
    try:
        f()
        say(label, "ok")
    except BaseException as e:
        say(label, "raised", type(e).__name__)


def current_name():
    t = asyncio.current_task()
    return t.get_name() if t is not None else "None"


def sorted_task_names(lp):
    return str(sorted(t.get_name() for t in asyncio.all_tasks(lp)))


def bools(v):
    return str(list(v))


def drain(lp):
    lp.call_soon(lp.stop)
    lp.run_forever()


async def return_after(delay, value):
    await asyncio.sleep(delay)
    return value


# ---- Futures ----------------------------------------------------------------------------------

@scenario
def future_done_callbacks_are_scheduled_in_order():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    fut.add_done_callback(lambda f: say("cb1", f.result()))
    fut.add_done_callback(lambda f: say("cb2", f.result()))

    def setter():
        say("setter")
        lp.call_soon(lambda: say("queued before set_result"))
        fut.set_result(3)
        say("set_result returned, done:", fut.done())
        lp.call_soon(lambda: say("queued after set_result"))

    lp.call_soon(setter)
    lp.call_soon(lambda: say("same iteration"))
    say("result", lp.run_until_complete(fut))
    drain(lp)
    lp.close()


@scenario
def future_callback_added_when_done_is_queued():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    fut.set_result(1)

    def after_add():
        say("queued after the add")
        lp.stop()

    def a():
        say("a")
        fut.add_done_callback(lambda f: say("late callback", f.result()))
        say("added")
        lp.call_soon(after_add)

    lp.call_soon(a)
    lp.call_soon(lambda: say("b"))
    lp.run_forever()
    lp.close()


@scenario
def future_remove_done_callback():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()

    def one(f):
        say("one")

    def two(f):
        say("two")

    def three(f):
        say("three")

    fut.add_done_callback(one)
    fut.add_done_callback(two)
    fut.add_done_callback(three)
    fut.add_done_callback(lambda f: say("four"))
    say("remove two:", fut.remove_done_callback(two))
    say("remove two again:", fut.remove_done_callback(two))
    fut.add_done_callback(lambda f: say("five"))
    say("remove one:", fut.remove_done_callback(one))
    fut.add_done_callback(lambda f: say("six"))
    fut.set_result(0)
    say("remove three after set_result:", fut.remove_done_callback(three))
    lp.run_until_complete(fut)

    fut2 = lp.create_future()

    def a(f):
        say("a (removed)")

    def b(f):
        say("b (removed)")

    fut2.add_done_callback(a)
    fut2.add_done_callback(b)
    say("remove a, b:", fut2.remove_done_callback(a), fut2.remove_done_callback(b))
    fut2.add_done_callback(lambda f: say("c"))
    fut2.add_done_callback(lambda f: say("d"))
    fut2.add_done_callback(lambda f: say("e"))
    fut2.set_result(0)
    lp.run_until_complete(fut2)
    lp.close()


@scenario
def future_states_and_invalid_state_errors():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    say("pending: done", fut.done(), "cancelled", fut.cancelled())
    say_raises("result() while pending", fut.result)
    try:
        fut.exception()
    except BaseException as e:
        say("exception() while pending:", type(e).__name__, e)
    fut.set_result(1)
    say("finished: done", fut.done(), "cancelled", fut.cancelled(), "result", fut.result())
    say_exc("exception() of a result:", fut.exception())
    say_raises("set_result twice", lambda: fut.set_result(2))
    say_raises("set_exception when done", lambda: fut.set_exception(RuntimeError("x")))
    say("result still", fut.result())
    say("cancel() when done:", fut.cancel(), "cancelled", fut.cancelled())

    c = lp.create_future()
    say("cancel():", c.cancel())
    say("cancel() again:", c.cancel())
    say("cancelled: done", c.done(), "cancelled", c.cancelled())
    try:
        c.result()
    except BaseException as e:
        say("result() when cancelled:", type(e).__name__, e)
    try:
        c.exception()
    except BaseException as e:
        say("exception() when cancelled:", type(e).__name__, e)
    say_raises("set_result when cancelled", lambda: c.set_result(3))
    lp.close()


@scenario
def future_result_while_pending_message():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    try:
        fut.result()
    except BaseException as e:
        say("result() while pending:", type(e).__name__, e)
    lp.close()


@scenario
def future_exception_and_cancel_callbacks():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    fut.add_done_callback(lambda f: say_exc("callback sees", f.exception()))
    fut.set_exception(RuntimeError("boom"))
    say("done", fut.done(), "cancelled", fut.cancelled())
    say_exc("exception():", fut.exception())
    try:
        fut.result()
    except Exception as e:
        say("result() raises", type(e).__name__, e)
    try:
        lp.run_until_complete(fut)
    except Exception as e:
        say("run_until_complete raises", type(e).__name__, e)

    c = lp.create_future()
    c.add_done_callback(lambda f: say("cancel callback: cancelled", f.cancelled()))
    say("cancel():", c.cancel(), "done", c.done())
    drain(lp)

    x = lp.create_future()
    x.set_exception(asyncio.CancelledError())
    say("CancelledError as exception: done", x.done(), "cancelled", x.cancelled())
    try:
        x.result()
    except BaseException as e:
        say("result() raises", type(e).__name__)
    lp.close()


# ---- Tasks --------------------------------------------------------------------------------------

@scenario
def task_steps_interleave_round_robin():
    lp = asyncio.new_event_loop()

    async def worker(name, n):
        for i in range(n):
            say(name, "step", i)
            await asyncio.sleep(0)
        say(name, "done")
        return n * 10

    tasks = [lp.create_task(worker("a", 3)), lp.create_task(worker("b", 1)),
             lp.create_task(worker("c", 2))]
    lp.call_soon(lambda: say("callback queued after the tasks"))
    results = lp.run_until_complete(asyncio.gather(*tasks))
    say("results", results[0], results[1], results[2])
    lp.close()


@scenario
def task_awaiting_task_resumes_among_done_callbacks():
    lp = asyncio.new_event_loop()

    async def inner():
        say("inner starts")
        await asyncio.sleep(0)
        lp.call_soon(lambda: say("queued by inner before returning"))
        say("inner returns")
        return 5

    async def outer(t):
        say("outer awaits inner")
        r = await t
        say("outer got", r)

    t_in = lp.create_task(inner(), name="inner")
    t_in.add_done_callback(lambda f: say("callback added before the await", f.result()))
    t_out = lp.create_task(outer(t_in), name="outer")
    lp.call_soon(lambda: t_in.add_done_callback(
        lambda f: say("callback added after the await", f.result())))
    lp.run_until_complete(t_out)
    say("outer done", t_out.done())
    lp.close()


@scenario
def task_cancel_while_waiting_on_future():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()

    async def body():
        try:
            return await fut
        except asyncio.CancelledError:
            say("body caught CancelledError")
            raise

    t = lp.create_task(body())

    def c():
        say("cancel:", t.cancel())
        say("future cancelled", fut.cancelled(), "task done", t.done(), "task cancelled",
            t.cancelled())

    lp.call_soon(c)
    try:
        lp.run_until_complete(t)
    except asyncio.CancelledError:
        say("run_until_complete raised CancelledError")
    say("task cancelled", t.cancelled(), "future cancelled", fut.cancelled())
    lp.close()


@scenario
def task_cancel_while_sleeping():
    lp = asyncio.new_event_loop()

    async def body():
        say("sleeper starts")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            say("sleeper caught CancelledError")
            raise
        say("not reached")

    t0 = lp.time()
    t = lp.create_task(body())
    lp.call_later(0.01, lambda: say("cancel:", t.cancel()))
    try:
        lp.run_until_complete(t)
    except asyncio.CancelledError:
        say("run_until_complete raised CancelledError")
    say("cancelled", t.cancelled(), "well before 10 s", lp.time() - t0 < 5)
    lp.close()


@scenario
def task_cancel_with_wakeup_already_queued():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()

    async def body():
        try:
            r = await fut
            say("got", r)
        except asyncio.CancelledError:
            say("CancelledError instead of the result")
            raise

    t = lp.create_task(body())

    def c():
        fut.set_result(1)
        say("cancel:", t.cancel())
        say("future cancelled", fut.cancelled(), "task done", t.done())

    lp.call_soon(c)
    try:
        lp.run_until_complete(t)
    except asyncio.CancelledError:
        say("run_until_complete raised CancelledError")
    say("task cancelled", t.cancelled(), "future result", fut.result())
    lp.close()


@scenario
def task_swallows_cancellation_and_goes_on():
    lp = asyncio.new_event_loop()

    async def body():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            say("swallowed CancelledError")
        await asyncio.sleep(0)
        say("still running")
        return 7

    t = lp.create_task(body())
    lp.call_soon(lambda: say("cancel:", t.cancel()))
    say("result", lp.run_until_complete(t))
    say("cancelled", t.cancelled(), "done", t.done())
    lp.close()


@scenario
def task_cancel_done_and_cancel_twice():
    lp = asyncio.new_event_loop()

    async def one():
        return 1

    t1 = lp.create_task(one())
    say("result", lp.run_until_complete(t1))
    say("cancel a done task:", t1.cancel(), "cancelled", t1.cancelled(), "result", t1.result())

    fut = lp.create_future()

    async def body():
        try:
            await fut
        except asyncio.CancelledError:
            say("caught CancelledError")
        await asyncio.sleep(0)
        say("no second CancelledError")
        return 2

    t2 = lp.create_task(body())

    def c():
        say("first cancel:", t2.cancel())
        say("second cancel:", t2.cancel())

    lp.call_soon(c)
    say("result", lp.run_until_complete(t2))
    say("cancelled", t2.cancelled())
    lp.close()


@scenario
def task_cancelled_before_first_step():
    lp = asyncio.new_event_loop()

    async def body():
        try:
            say("body ran")
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            say("body caught CancelledError")
            raise

    t = lp.create_task(body())
    t.add_done_callback(lambda f: say("done callback: cancelled", f.cancelled()))
    lp.call_soon(lambda: say("callback queued after the task"))
    say("cancel:", t.cancel())
    say("done right after cancel()", t.done(), "cancelled", t.cancelled())
    try:
        lp.run_until_complete(t)
    except asyncio.CancelledError:
        say("run_until_complete raised CancelledError")
    lp.close()


@scenario
def task_cancels_itself_then_awaits():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()

    async def body():
        say("cancel self:", asyncio.current_task().cancel())
        say("still running after cancel()")
        try:
            await fut
        except asyncio.CancelledError:
            say("await raised CancelledError; future cancelled", fut.cancelled())
            raise

    t = lp.create_task(body())
    try:
        lp.run_until_complete(t)
    except asyncio.CancelledError:
        say("task cancelled", t.cancelled())

    async def body2():
        say("cancel self:", asyncio.current_task().cancel())
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            say("sleep(0) raised CancelledError")
        return 3

    t2 = lp.create_task(body2())
    say("result", lp.run_until_complete(t2), "cancelled", t2.cancelled())
    lp.close()


@scenario
def task_cancel_reaches_awaited_task_that_swallows_it():
    lp = asyncio.new_event_loop()

    async def inner():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            say("inner swallowed CancelledError")
        return 5

    async def outer(t):
        r = await t
        say("outer got", r)
        return r + 1

    t_in = lp.create_task(inner())
    t_out = lp.create_task(outer(t_in))

    def c():
        say("cancel outer:", t_out.cancel())
        say("inner done", t_in.done(), "outer done", t_out.done())

    lp.call_soon(c)
    say("result", lp.run_until_complete(t_out))
    say("outer cancelled", t_out.cancelled(), "inner cancelled", t_in.cancelled())
    lp.close()


@scenario
def exceptions_propagate_through_awaits():
    lp = asyncio.new_event_loop()

    async def level3():
        await asyncio.sleep(0)
        raise ValueError("deep")

    async def level2():
        try:
            return await level3()
        except ValueError as e:
            say("level2 caught", type(e).__name__, e)
            raise RuntimeError(f"wrapped: {e}")

    async def level1():
        return await level2()

    t1 = lp.create_task(level1())

    async def top():
        try:
            await t1
        except Exception as e:
            say("top caught", type(e).__name__, e)

    lp.run_until_complete(top())
    say("task done", t1.done(), "cancelled", t1.cancelled())
    say_exc("task exception():", t1.exception())
    lp.close()


@scenario
def run_until_complete_task_raises():
    lp = asyncio.new_event_loop()

    async def fails():
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    t = lp.create_task(fails())
    try:
        lp.run_until_complete(t)
    except Exception as e:
        say("run_until_complete raised", type(e).__name__, e)
    say("done", t.done(), "cancelled", t.cancelled())
    say_exc("exception():", t.exception())

    async def raises_at_once():
        raise ValueError("at once")

    try:
        lp.run_until_complete(raises_at_once())
    except Exception as e:
        say("coroutine: run_until_complete raised", type(e).__name__, e)
    say("the loop goes on:", lp.run_until_complete(return_after(0, 4)))
    lp.close()


@scenario
def await_done_future_does_not_yield():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    fut.set_result(1)

    async def immediate():
        return 2

    async def main_body():
        say("main starts")
        r = await fut
        say("main got", r, "from the done future")
        r2 = await immediate()
        say("main got", r2, "from the coroutine")
        await asyncio.sleep(0)
        say("main after sleep(0)")

    async def other():
        say("other step")

    m = lp.create_task(main_body())
    o = lp.create_task(other())
    lp.run_until_complete(m)
    say("other done", o.done())
    lp.close()


@scenario
def sleep0_lets_queued_callbacks_run():
    lp = asyncio.new_event_loop()

    async def main_body():
        lp.call_soon(lambda: say("callback queued before sleep(0)"))
        await asyncio.sleep(0)
        say("main resumed")
        lp.call_soon(lambda: say("second callback"))
        r = await asyncio.sleep(0, "x")
        say("sleep(0, 'x') returned", r)

    async def other():
        say("other step 1")
        await asyncio.sleep(0)
        say("other step 2")
        await asyncio.sleep(0)
        say("other step 3")

    m = lp.create_task(main_body())
    lp.create_task(other())
    lp.run_until_complete(m)
    drain(lp)
    lp.close()


@scenario
def run_until_complete_on_done_future_runs_one_iteration():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    fut.set_result(9)

    def a():
        say("a")
        lp.call_soon(lambda: say("queued by a (next run)"))

    lp.call_soon(a)
    lp.call_soon(lambda: say("b"))
    say("result", lp.run_until_complete(fut))
    drain(lp)
    lp.close()


@scenario
def current_task_and_all_tasks():
    lp = asyncio.new_event_loop()
    t = asyncio.current_task(lp)
    say("outside the loop:", t.get_name() if t is not None else "None")
    gate = lp.create_future()

    async def inline_coro():
        say("in a coroutine awaited by alpha:", current_name())

    async def alpha():
        say("in alpha:", current_name())
        say("all_tasks in alpha:", sorted_task_names(lp))
        await asyncio.sleep(0)
        await inline_coro()

    async def beta():
        say("in beta:", current_name())
        await gate
        say("beta resumed:", current_name())

    lp.call_soon(lambda: say("in a callback:", current_name()))
    ta = lp.create_task(alpha(), name="alpha")
    tb = lp.create_task(beta(), name="beta")

    def alpha_done(f):
        say("in alpha's done callback:", current_name())
        say("all_tasks there:", sorted_task_names(lp))
        gate.set_result(None)

    ta.add_done_callback(alpha_done)
    lp.run_until_complete(tb)
    say("all_tasks at the end:", sorted_task_names(lp))
    lp.close()


@scenario
def ensure_future_identity_and_scheduling():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    say("future as is:", asyncio.ensure_future(fut) is fut)
    t = lp.create_task(return_after(0, 1))
    say("task as is:", asyncio.ensure_future(t) is t)
    lp.call_soon(lambda: say("callback queued before ensure_future"))

    async def body():
        say("coroutine wrapped by ensure_future runs")
        return 2

    f2 = asyncio.ensure_future(body(), loop=lp)
    say("wrapped in a task:", isinstance(f2, asyncio.Task), "done", f2.done())
    say("result", lp.run_until_complete(f2))
    lp.run_until_complete(t)
    fut.cancel()
    lp.close()


@scenario
def tasks_awaiting_one_future_resume_in_await_order():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()

    async def waiter(name):
        say(name, "waits")
        r = await fut
        say(name, "resumed with", r)

    t1 = lp.create_task(waiter("first"))
    fut.add_done_callback(lambda f: say("callback added before any await"))
    t2 = lp.create_task(waiter("second"))
    t3 = lp.create_task(waiter("third"))

    def c():
        fut.add_done_callback(lambda f: say("callback added after the awaits"))
        fut.set_result(4)

    lp.call_soon(c)
    lp.run_until_complete(t3)
    say("done", t1.done(), t2.done(), t3.done())
    lp.close()


@scenario
def await_foreign_future_or_itself_raises_at_next_step():
    lp = asyncio.new_event_loop()
    other_loop = asyncio.new_event_loop()
    foreign = other_loop.create_future()

    async def a():
        say("a awaits a future of another loop")
        try:
            await foreign
        except Exception as e:
            say("a caught", type(e).__name__)

    async def b():
        say("b step")

    ta = lp.create_task(a())
    tb = lp.create_task(b())
    lp.run_until_complete(ta)
    lp.run_until_complete(tb)

    async def c():
        say("c awaits itself")
        try:
            await asyncio.current_task()
        except Exception as e:
            say("c caught", type(e).__name__)

    tc = lp.create_task(c())
    td = lp.create_task(b())
    lp.run_until_complete(tc)
    lp.run_until_complete(td)
    other_loop.close()
    lp.close()


@scenario
def run_until_complete_future_of_another_loop():
    lp = asyncio.new_event_loop()
    other_loop = asyncio.new_event_loop()
    foreign = other_loop.create_future()
    try:
        lp.run_until_complete(foreign)
    except Exception as e:
        say("run_until_complete raised", type(e).__name__, e)
    foreign.cancel()
    other_loop.close()
    lp.close()


# ---- gather -------------------------------------------------------------------------------------

@scenario
def gather_results_in_argument_order():
    lp = asyncio.new_event_loop()

    async def child(delay, v):
        await asyncio.sleep(delay)
        say("child", v, "finishes")
        return v

    fut = lp.create_future()
    children = [lp.create_task(child(0.03, "a")), lp.create_task(child(0.01, "b")), fut,
                lp.create_task(child(0, "d"))]
    g = asyncio.gather(*children)
    children[0].add_done_callback(lambda f: say("a's own done callback"))
    g.add_done_callback(lambda f: say("gather done callback"))

    def set_c():
        say("set c")
        fut.set_result("c")

    lp.call_soon(set_c)
    r = lp.run_until_complete(g)
    say("results", r[0], r[1], r[2], r[3])
    lp.close()


@scenario
def gather_child_fails_first_exception_wins():
    lp = asyncio.new_event_loop()

    async def fail(delay, value_error):
        await asyncio.sleep(delay)
        say("failing after", delay)
        if value_error:
            raise ValueError("first")
        raise RuntimeError("second")

    children = [lp.create_task(return_after(0.04, 1)), lp.create_task(fail(0.01, True)),
                lp.create_task(fail(0.02, False))]
    g = asyncio.gather(*children)
    g.add_done_callback(lambda f: say("gather done; children done",
                                      bools(c.done() for c in children)))
    try:
        lp.run_until_complete(g)
    except Exception as e:
        say("gather raised", type(e).__name__, e)
    say("first child result", lp.run_until_complete(children[0]))
    say("third child done", children[2].done(), "cancelled", children[0].cancelled())
    say_exc("third child exception:", children[2].exception())
    lp.close()


@scenario
def gather_same_future_twice():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    other = lp.create_future()
    g = asyncio.gather(fut, other, fut)
    g.add_done_callback(lambda f: say("gather done callback"))

    def c():
        fut.set_result(1)
        other.set_result(2)

    lp.call_soon(c)
    r = lp.run_until_complete(g)
    say("results", r[0], r[1], r[2])

    f2 = lp.create_future()
    g2 = asyncio.gather(f2, f2)
    say("cancel:", g2.cancel(), "child cancelled", f2.cancelled())
    try:
        lp.run_until_complete(g2)
    except asyncio.CancelledError:
        say("gather raised CancelledError")
    lp.close()


@scenario
def gather_cancel_cancels_children():
    lp = asyncio.new_event_loop()

    async def slow(i):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            say("child", i, "cancelled")
            raise
        return i

    fut = lp.create_future()
    children = [lp.create_task(slow(0)), lp.create_task(slow(1)), fut]
    g = asyncio.gather(*children)

    def c():
        say("gather cancel:", g.cancel())
        say("children cancelled now", bools(x.cancelled() for x in children),
            "gather done", g.done())
        say("gather cancel again:", g.cancel())

    lp.call_soon(c)
    try:
        lp.run_until_complete(g)
    except asyncio.CancelledError:
        say("gather raised CancelledError")
    say("gather done", g.done(), "cancelled", g.cancelled())
    say_exc("gather exception():", g.exception())
    drain(lp)
    say("children cancelled", bools(x.cancelled() for x in children))
    lp.close()


@scenario
def gather_cancel_when_children_done_returns_false():
    lp = asyncio.new_event_loop()
    f1 = lp.create_future()
    f2 = lp.create_future()
    g = asyncio.gather(f1, f2)

    def c():
        f1.set_result(1)
        f2.set_result(2)
        say("gather cancel:", g.cancel(), "gather done", g.done())

    lp.call_soon(c)
    r = lp.run_until_complete(g)
    say("results", r[0], r[1], "cancelled", g.cancelled())
    lp.close()


@scenario
def gather_cancel_requested_but_child_swallows():
    lp = asyncio.new_event_loop()

    async def stubborn():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            say("child swallowed CancelledError")
        return 10

    done_child = lp.create_future()
    done_child.set_result(2)
    t = lp.create_task(stubborn())
    g = asyncio.gather(t, done_child)
    lp.call_soon(lambda: say("gather cancel:", g.cancel()))
    try:
        lp.run_until_complete(g)
    except asyncio.CancelledError:
        say("gather raised CancelledError")
    say("child result", t.result(), "child cancelled", t.cancelled(), "gather cancelled",
        g.cancelled())
    lp.close()


@scenario
def gather_schedules_children_when_called():
    lp = asyncio.new_event_loop()

    async def child(x):
        say("child", x, "runs")
        return x

    async def other():
        say("other task runs")

    async def main_body():
        g = asyncio.gather(child("a"), child("b"))
        say("gather called")
        o = lp.create_task(other())
        await asyncio.sleep(0)
        say("main after sleep(0)")
        a, b = await g
        say("results", a, b)
        await o

    lp.run_until_complete(main_body())
    lp.close()


@scenario
def gather_runs_children_in_argument_order():
    lp = asyncio.new_event_loop()

    async def child(x):
        say("child", x, "step 1")
        await asyncio.sleep(0)
        say("child", x, "step 2")
        return x

    async def main_body():
        a, b, c = await asyncio.gather(child("a"), child("b"), child("c"))
        say("results", a, b, c)

    lp.run_until_complete(main_body())
    lp.close()


@scenario
def gather_awaiting_task_cancelled():
    lp = asyncio.new_event_loop()

    async def slow(x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            say("child", x, "cancelled")
            raise
        return 0

    async def main_body():
        try:
            await asyncio.gather(slow("a"), slow("b"))
        except asyncio.CancelledError:
            say("main got CancelledError")
            raise

    t = lp.create_task(main_body())
    lp.call_later(0.01, lambda: say("cancel main:", t.cancel()))
    try:
        lp.run_until_complete(t)
    except asyncio.CancelledError:
        say("run_until_complete raised CancelledError")
    say("main cancelled", t.cancelled())
    lp.close()


# ---- wait_for -----------------------------------------------------------------------------------

@scenario
def wait_for_timeout_cancels_inner_first():
    lp = asyncio.new_event_loop()

    async def slow(name):
        say(name, "starts")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            say(name, "cancelled")
            raise
        return 0

    async def main_body():
        try:
            await asyncio.wait_for(slow("coroutine"), 0.02)
        except asyncio.TimeoutError as e:
            say("main:", type(e).__name__)
        t = lp.create_task(slow("task"))
        try:
            await asyncio.wait_for(t, 0.02)
        except asyncio.TimeoutError as e:
            say("main:", type(e).__name__, "task cancelled", t.cancelled())

    lp.run_until_complete(main_body())
    lp.close()


@scenario
def wait_for_result_in_time():
    lp = asyncio.new_event_loop()

    async def fails():
        await asyncio.sleep(0.01)
        raise ValueError("inner failed")

    async def main_body():
        r = await asyncio.wait_for(return_after(0.01, 5), 1.0)
        say("in time:", r)
        done = lp.create_future()
        done.set_result(6)
        r2 = await asyncio.wait_for(done, 0)
        say("done future, timeout 0:", r2)
        try:
            await asyncio.wait_for(fails(), 1.0)
        except Exception as e:
            say("inner exception:", type(e).__name__, e)

    lp.run_until_complete(main_body())
    say("tasks left", sorted_task_names(lp))
    lp.close()


@scenario
def wait_for_inner_done_in_same_iteration_as_timeout():
    lp = asyncio.new_event_loop()

    async def main_body():
        fut = lp.create_future()

        def set_fut():
            say("inner future set")
            fut.set_result(7)

        lp.call_later(0.02, set_fut)
        lp.call_soon(time.sleep, 0.08)
        r = await asyncio.wait_for(fut, 0.01)
        say("wait_for returned", r)

        fut2 = lp.create_future()

        def fail_fut2():
            say("inner future fails")
            fut2.set_exception(ValueError("late"))

        lp.call_later(0.02, fail_fut2)
        lp.call_soon(time.sleep, 0.08)
        try:
            await asyncio.wait_for(fut2, 0.01)
        except Exception as e:
            say("wait_for raised", type(e).__name__, e)

    lp.run_until_complete(main_body())
    lp.close()


@scenario
def wait_for_outer_cancelled_cancels_inner():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()

    async def main_body():
        try:
            await asyncio.wait_for(fut, 10)
        except asyncio.CancelledError:
            say("main got CancelledError")
            raise

    t = lp.create_task(main_body())
    lp.call_soon(lambda: say("cancel main:", t.cancel()))
    try:
        lp.run_until_complete(t)
    except asyncio.CancelledError:
        say("run_until_complete raised CancelledError")
    say("main cancelled", t.cancelled(), "future cancelled", fut.cancelled())
    lp.close()


# ---- shield -------------------------------------------------------------------------------------

@scenario
def shield_outer_cancel_leaves_inner_running():
    lp = asyncio.new_event_loop()

    async def inner():
        say("inner starts")
        await asyncio.sleep(0.02)
        say("inner finishes")
        return 7

    async def main_body(t):
        try:
            return await asyncio.shield(t)
        except asyncio.CancelledError:
            say("main got CancelledError; inner done", t.done())
            raise

    t_in = lp.create_task(inner())
    t_main = lp.create_task(main_body(t_in))
    lp.call_soon(lambda: say("cancel main:", t_main.cancel()))
    try:
        lp.run_until_complete(t_main)
    except asyncio.CancelledError:
        say("run_until_complete raised CancelledError")
    say("inner result", lp.run_until_complete(t_in), "inner cancelled", t_in.cancelled())
    lp.close()


@scenario
def shield_shortcut_and_propagation():
    lp = asyncio.new_event_loop()
    done = lp.create_future()
    done.set_result(1)
    say("shield of a done future is the future:", asyncio.shield(done) is done)

    f2 = lp.create_future()
    s2 = asyncio.shield(f2)
    say("shield of a pending future is another:", s2 is f2)
    f2.set_exception(RuntimeError("inner failed"))
    try:
        lp.run_until_complete(s2)
    except Exception as e:
        say("outer raised", type(e).__name__, e)

    f3 = lp.create_future()
    s3 = asyncio.shield(f3)
    say("cancel inner:", f3.cancel())
    try:
        lp.run_until_complete(s3)
    except asyncio.CancelledError:
        say("outer raised CancelledError; outer cancelled", s3.cancelled())

    f4 = lp.create_future()
    s4 = asyncio.shield(f4)
    say("cancel outer:", s4.cancel(), "inner cancelled", f4.cancelled())
    drain(lp)
    f4.set_result(4)
    drain(lp)
    say("inner result", f4.result(), "outer cancelled", s4.cancelled())
    lp.close()


if __name__ == "__main__":
    main()
