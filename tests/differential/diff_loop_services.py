"""Differential scenarios of the loop's services: the exception handler API, signals, the
executor, call_soon_threadsafe, debug mode, run errors, async generators, the task factory and
the clock (the libloop half: diff_loop_services.cpp)."""
import asyncio
import concurrent.futures
import gc
import os
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402


# ---- Helpers --------------------------------------------------------------------------------

def message_of(ctx):
    """The context's message without asyncio's " at FILE:LINE" source suffix."""
    return ctx["message"].split(" at /")[0]


def exc_text(e):
    return f"{type(e).__name__}: {e}"


def say_context(ctx):
    say("  handler:", message_of(ctx))
    say("  keys:", *sorted(ctx))
    if "exception" in ctx:
        say("  exception:", exc_text(ctx["exception"]))


def recording_handler(loop, ctx):
    say_context(ctx)


def capture_fd2(fn):
    """Runs fn with file descriptor 2 redirected to a file; returns what was written there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            fn()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


def fail():
    raise RuntimeError("callback failed")


def noop():
    pass


# ---- The exception handler API --------------------------------------------------------------

@scenario
def exception_handler_set_get_and_custom_contexts():
    lp = asyncio.new_event_loop()
    say("no handler at first:", lp.get_exception_handler() is None)

    def handler(loop, ctx):
        say("  handler: same loop", loop is lp)
        say_context(ctx)
        if "future" in ctx:
            say("  future is ours:", ctx["future"] is fut)

    lp.set_exception_handler(handler)
    say("handler set:", lp.get_exception_handler() is handler)
    say("message only")
    lp.call_exception_handler({"message": "custom one"})
    say("message and exception")
    lp.call_exception_handler({"message": "custom two", "exception": ValueError("bad value")})
    fut = lp.create_future()
    say("message and future")
    lp.call_exception_handler({"message": "custom three", "future": fut})
    lp.set_exception_handler(None)
    say("reset:", lp.get_exception_handler() is None)
    fut.cancel()
    lp.close()


@scenario
def exception_in_call_soon_callback():
    lp = asyncio.new_event_loop()
    handles = {}

    def handler(loop, ctx):
        say_context(ctx)
        h = ctx["handle"]
        say("  handle is the one call_soon returned:", h is handles["fail"])
        say("  handle:", repr(h).split()[0], "cancelled", h.cancelled())

    lp.set_exception_handler(handler)
    lp.call_soon(say, "before")
    handles["fail"] = lp.call_soon(fail)
    lp.call_soon(say, "after (same iteration)")
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("loop survived")
    lp.close()


@scenario
def exception_in_timer_callback():
    lp = asyncio.new_event_loop()
    handles = {}

    def handler(loop, ctx):
        say_context(ctx)
        h = ctx["handle"]
        say("  handle is the timer:", h is handles["timer"])
        say("  handle:", repr(h).split()[0], "when matches", h.when() == handles["timer"].when())

    def last():
        say("timer 0.05")
        lp.stop()

    lp.set_exception_handler(handler)
    handles["timer"] = lp.call_later(0.01, fail)
    lp.call_later(0.05, last)
    lp.run_forever()
    lp.close()


@scenario
def exception_handler_that_raises():
    lp = asyncio.new_event_loop()
    calls = [0]

    def handler(loop, ctx):
        calls[0] += 1
        say("  handler call", calls[0], "for:", message_of(ctx))
        raise RuntimeError("handler broke")

    lp.set_exception_handler(handler)

    def run():
        lp.call_soon(fail)
        lp.call_soon(say, "next callback runs")
        lp.call_soon(fail)
        lp.call_soon(lp.stop)
        lp.run_forever()

    err = capture_fd2(run)
    say("handler calls:", calls[0])
    say("handler still set:", lp.get_exception_handler() is handler)
    say("stderr names the handler failure:", "Unhandled error in exception handler" in err)
    say("stderr has the handler's error:", "handler broke" in err)
    say("stderr has the original message:", "Exception in callback fail" in err)
    # call_exception_handler itself never raises either.
    err = capture_fd2(lambda: lp.call_exception_handler({"message": "direct"}))
    say("direct call survived; reported:", "Unhandled error in exception handler" in err)
    lp.close()


class _Recorder(asyncio.Protocol):
    raise_in = None

    def __init__(self, lost):
        self.lost = lost

    def connection_made(self, tr):
        say("connection_made")
        if self.raise_in == "connection_made":
            raise ValueError("made failed")

    def data_received(self, data):
        say("data_received", data.decode())
        if self.raise_in == "data_received":
            raise ValueError("bad data")

    def eof_received(self):
        say("eof_received")
        if self.raise_in == "eof_received":
            raise ValueError("bad eof")
        return False

    def connection_lost(self, exc):
        say("connection_lost", "None" if exc is None else exc_text(exc))
        self.lost.set_result(None)


def _protocol_method_raises(where, peer_action):
    lp = asyncio.new_event_loop()
    a, b = socket.socketpair()
    peer_action(b)
    objs = {}

    def handler(loop, ctx):
        msg = ctx["message"]
        prefix = "Exception in callback "
        if msg.startswith(prefix):
            # asyncio names the protocol's class and the transport's repr: only the method.
            msg = prefix + "..." + msg[len(prefix):].split("(")[0].split(".")[-1]
        say("  handler:", msg)
        say("  keys:", *sorted(ctx))
        say("  exception:", exc_text(ctx["exception"]))
        if "protocol" in ctx:
            say("  protocol is ours:", ctx["protocol"] is objs["pr"],
                "transport is ours:", ctx["transport"] is objs["tr"])

    lp.set_exception_handler(handler)

    class P(_Recorder):
        raise_in = where

    async def run():
        lost = lp.create_future()
        tr, pr = await lp.create_connection(lambda: P(lost), sock=a)
        objs["tr"], objs["pr"] = tr, pr
        say("created")
        if where == "connection_made":
            await asyncio.sleep(0.05)
            say("transport closing:", tr.is_closing())
            tr.close()
        await lost
        say("closing after:", tr.is_closing())

    lp.run_until_complete(run())
    b.close()
    lp.close()


@scenario
def exception_in_data_received_is_fatal():
    _protocol_method_raises("data_received", lambda b: b.sendall(b"hello"))


@scenario
def exception_in_eof_received_is_fatal():
    _protocol_method_raises("eof_received", lambda b: b.shutdown(socket.SHUT_WR))


@scenario
def exception_in_connection_made_is_a_callback_error():
    _protocol_method_raises("connection_made", lambda b: b.sendall(b"hello"))


async def _boom():
    raise ValueError("task failed")


@scenario
def task_exception_never_retrieved_reported_when_released():
    lp = asyncio.new_event_loop()

    def handler(loop, ctx):
        say_context(ctx)
        words = repr(ctx["future"]).split()[:3]
        say("  future:", *[w for w in words if not w.startswith("exception=")])

    lp.set_exception_handler(handler)
    t = lp.create_task(_boom(), name="boomer")
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("task done:", t.done())
    say("releasing the task")
    del t
    gc.collect()
    say("released")
    fut = lp.create_future()
    fut.set_exception(ValueError("future failed"))
    lp.close()
    say("releasing the future of the closed loop")
    del fut
    gc.collect()
    say("released")


@scenario
def unreferenced_failed_task_reported_in_its_last_step():
    lp = asyncio.new_event_loop()

    def handler(loop, ctx):
        say_context(ctx)

    lp.set_exception_handler(handler)
    lp.create_task(_boom())
    lp.call_soon(say, "scheduled after the task")
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("after the run")
    gc.collect()
    say("after gc")
    lp.close()


@scenario
def pending_task_destroyed_report():
    lp = asyncio.new_event_loop()

    def handler(loop, ctx):
        say("  handler:", ctx["message"])
        say("  keys:", *sorted(ctx))
        obj = ctx.get("task", ctx.get("future"))
        say("  task:", *[w.rstrip(">") for w in repr(obj).split()[:3]])

    lp.set_exception_handler(handler)

    async def waiter():
        await lp.create_future()

    t = lp.create_task(waiter(), name="waiter")
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("task pending:", not t.done())
    lp.close()
    say("loop closed; releasing the task and the loop")
    del t
    gc.collect()
    say("released")


@scenario
def retrieved_exceptions_are_not_reported():
    lp = asyncio.new_event_loop()
    lp.set_exception_handler(recording_handler)
    t1 = lp.create_task(_boom())
    t2 = lp.create_task(_boom())
    t3 = lp.create_task(_boom())

    async def awaiter():
        try:
            await t3
        except ValueError as e:
            say("awaiter got", exc_text(e))

    t4 = lp.create_task(awaiter())
    t5 = lp.create_task(_boom())
    lp.run_until_complete(t4)
    say("t1.exception():", exc_text(t1.exception()))
    say("t2.cancel() after it failed:", t2.cancel())
    try:
        t5.result()
    except ValueError as e:
        say("t5.result() raised", exc_text(e))
    say("releasing")
    del t1, t2, t3, t4, t5
    gc.collect()
    say("released (nothing reported)")
    lp.close()


# ---- Signals --------------------------------------------------------------------------------

def _kill(sig):
    os.kill(os.getpid(), sig)


@scenario
def signal_handler_runs_after_callbacks_of_the_next_iteration():
    lp = asyncio.new_event_loop()
    lp.add_signal_handler(signal.SIGUSR1, say, "signal handler")

    def a():
        say("a: kill")
        _kill(signal.SIGUSR1)
        say("a: back from kill")
        lp.call_soon(b)

    def b():
        say("b")
        lp.call_soon(c)

    def c():
        say("c")
        lp.call_soon(d)

    def d():
        say("d")

    lp.call_soon(a)
    lp.call_later(0.1, lp.stop)
    lp.run_forever()
    say("removed:", lp.remove_signal_handler(signal.SIGUSR1))
    lp.close()


@scenario
def signal_handler_removed_by_the_next_callback():
    lp = asyncio.new_event_loop()
    lp.add_signal_handler(signal.SIGUSR1, say, "signal handler (must not run once removed)")

    def a():
        say("a: kill")
        _kill(signal.SIGUSR1)
        lp.call_soon(b)

    def b():
        say("b: remove_signal_handler", lp.remove_signal_handler(signal.SIGUSR1))

    lp.call_soon(a)
    lp.call_later(0.1, lp.stop)
    lp.run_forever()
    say("end")
    lp.close()


@scenario
def signals_run_in_delivery_order():
    lp = asyncio.new_event_loop()
    lp.add_signal_handler(signal.SIGUSR1, say, "handler USR1")
    lp.add_signal_handler(signal.SIGUSR2, say, "handler USR2")

    def a():
        say("kill USR2, USR1, USR2, USR1")
        _kill(signal.SIGUSR2)
        _kill(signal.SIGUSR1)
        _kill(signal.SIGUSR2)
        _kill(signal.SIGUSR1)

    lp.call_soon(a)
    lp.call_later(0.1, lp.stop)
    lp.run_forever()
    lp.remove_signal_handler(signal.SIGUSR1)
    lp.remove_signal_handler(signal.SIGUSR2)
    lp.close()


@scenario
def remove_signal_handler_return_values_and_replacement():
    lp = asyncio.new_event_loop()
    say("remove never added:", lp.remove_signal_handler(signal.SIGUSR1))
    lp.add_signal_handler(signal.SIGUSR1, say, "first handler")
    lp.add_signal_handler(signal.SIGUSR1, say, "second handler", 2)
    lp.call_soon(_kill, signal.SIGUSR1)
    lp.call_later(0.05, lp.stop)
    lp.run_forever()
    say("remove added:", lp.remove_signal_handler(signal.SIGUSR1))
    say("disposition default again:", signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)
    say("remove again:", lp.remove_signal_handler(signal.SIGUSR1))
    say("remove SIGKILL (never added):", lp.remove_signal_handler(signal.SIGKILL))
    lp.add_signal_handler(signal.SIGUSR2, noop)
    lp.close()
    say("close resets USR2:", signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL)
    say("remove after close:", lp.remove_signal_handler(signal.SIGUSR2))


@scenario
def uncatchable_signals_are_refused():
    lp = asyncio.new_event_loop()
    for name in ("SIGKILL", "SIGSTOP"):
        try:
            lp.add_signal_handler(getattr(signal, name), noop)
            say(name, "accepted")
        except Exception as e:
            say(name, "refused:", e)
    lp.close()


@scenario
def invalid_signal_numbers_are_refused():
    lp = asyncio.new_event_loop()
    for sig in (0, -1, signal.NSIG, signal.NSIG + 5):
        try:
            lp.add_signal_handler(sig, noop)
            say("add", "accepted")
        except Exception as e:
            say("add: refused with", type(e).__name__)
        try:
            lp.remove_signal_handler(sig)
            say("remove", "accepted")
        except Exception as e:
            say("remove: refused with", type(e).__name__)
    lp.close()


def sig_fail():
    raise RuntimeError("signal callback failed")


@scenario
def exception_in_signal_callback():
    lp = asyncio.new_event_loop()
    lp.set_exception_handler(recording_handler)
    lp.add_signal_handler(signal.SIGUSR2, sig_fail)
    lp.call_soon(_kill, signal.SIGUSR2)
    lp.call_later(0.05, lp.stop)
    lp.run_forever()
    say("after")
    lp.close()


# ---- The executor and call_soon_threadsafe ---------------------------------------------------

def _product(a, b):
    return a * b


def _raise_value_error():
    raise ValueError("in worker")


@scenario
def run_in_executor_results_and_exceptions():
    lp = asyncio.new_event_loop()

    async def run():
        say("result:", await lp.run_in_executor(None, _product, 6, 7))
        try:
            await lp.run_in_executor(None, _raise_value_error)
        except ValueError as e:
            say("raised:", exc_text(e))
        say("no result:", await lp.run_in_executor(None, noop))
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
            say("own executor:", await lp.run_in_executor(ex, _product, 2, 3))

    lp.run_until_complete(run())
    lp.close()


@scenario
def run_in_executor_completions_with_one_worker():
    lp = asyncio.new_event_loop()
    lp.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    gate = threading.Event()
    release = threading.Event()

    def job(n):
        return n * 10

    def last_job():
        gate.set()
        release.wait(5)
        return 4

    start = threading.Event()

    def first_job():
        start.wait(5)  # nothing completes before the loop runs a()
        return 0

    futs = [lp.run_in_executor(None, first_job)]
    futs += [lp.run_in_executor(None, job, n) for n in (1, 2, 3)]
    f4 = lp.run_in_executor(None, last_job)
    for n, f in enumerate(futs):
        f.add_done_callback(lambda f, n=n: say("done-callback", n, "result", f.result()))

    def a():
        say("a: starts the worker, waits until it is on the last job")
        start.set()
        gate.wait(5)
        lp.call_soon(b)

    def b():
        say("b")
        lp.call_soon(c)

    def c():
        say("c: releases the last job")
        release.set()

    lp.call_soon(a)
    say("last job:", lp.run_until_complete(f4))
    lp.close()


@scenario
def cancelled_executor_future_ignores_the_late_result():
    lp = asyncio.new_event_loop()
    lp.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    lp.set_exception_handler(recording_handler)
    started = threading.Event()
    go = threading.Event()
    ran = []

    def slow():
        started.set()
        go.wait(5)
        ran.append(1)
        return 1

    f1 = lp.run_in_executor(None, slow)
    f2 = lp.run_in_executor(None, lambda: 2)

    def cancel_then_release():
        started.wait(5)  # the job is running: too late to stop it
        say("cancel:", f1.cancel())
        go.set()

    lp.call_soon(cancel_then_release)
    say("second job:", lp.run_until_complete(f2))
    say("first cancelled:", f1.cancelled(), "its job ran:", bool(ran))
    lp.close()


@scenario
def call_soon_threadsafe_from_a_thread():
    lp = asyncio.new_event_loop()
    posted = threading.Event()
    running = threading.Event()

    def poster():
        lp.call_soon_threadsafe(say, "from thread 1")
        lp.call_soon_threadsafe(say, "from thread 2")
        posted.set()

    def waker():
        running.wait(5)
        time.sleep(0.05)  # the loop is asleep in its poll by now, with nothing scheduled

        def wake():
            say("woken by a thread")
            lp.stop()

        lp.call_soon_threadsafe(wake)

    t1 = threading.Thread(target=poster)
    t2 = threading.Thread(target=waker)

    def a():
        say("a")
        lp.call_soon(say, "call_soon before the thread posts")
        t1.start()
        posted.wait(5)
        lp.call_soon(after)

    def after():
        say("call_soon after the thread posted")
        lp.call_soon(go_idle)  # not a timer: a slow first iteration would move it

    def go_idle():
        say("idle")
        running.set()

    lp.call_soon(a)
    lp.call_soon(say, "b (same iteration as a)")
    t2.start()
    lp.run_forever()
    t1.join()
    t2.join()
    lp.close()


# ---- Debug mode -----------------------------------------------------------------------------

@scenario
def debug_mode_refuses_call_soon_from_another_thread():
    lp = asyncio.new_event_loop()
    say("debug at first:", lp.get_debug())
    lp.set_debug(True)
    say("debug set:", lp.get_debug())
    outcomes = []

    # Not running: nothing to check against.
    th = threading.Thread(target=lambda: lp.call_soon(say, "queued by a thread before the run"))
    th.start()
    th.join()

    def other_thread():
        for name, fn in (("call_soon", lambda: lp.call_soon(noop)),
                         ("call_later", lambda: lp.call_later(1, noop)),
                         ("call_at", lambda: lp.call_at(lp.time() + 1, noop))):
            try:
                fn()
                outcomes.append(f"{name}: accepted")
            except Exception as e:
                outcomes.append(f"{name}: {exc_text(e)}")

        def report():
            for o in outcomes:
                say(o)
            say("call_soon_threadsafe: accepted")
            lp.stop()

        lp.call_soon_threadsafe(report)

    th2 = threading.Thread(target=other_thread)
    lp.call_soon(th2.start)
    lp.run_forever()
    th2.join()
    lp.set_debug(False)
    say("debug unset:", lp.get_debug())
    lp.close()


@scenario
def debug_mode_contexts_carry_source_traceback():
    lp = asyncio.new_event_loop()
    lp.set_debug(True)

    def handler(loop, ctx):
        say("  handler:", message_of(ctx))
        say("  keys:", *sorted(ctx))

    lp.set_exception_handler(handler)
    lp.call_soon(fail)
    lp.call_later(0.01, fail)
    lp.create_task(_boom())
    lp.call_later(0.05, lp.stop)
    lp.run_forever()
    fut = lp.create_future()
    fut.set_exception(ValueError("future failed"))
    say("releasing the future")
    del fut
    gc.collect()
    say("released")
    lp.close()


# ---- run_forever / run_until_complete errors ------------------------------------------------

@scenario
def nested_run_and_close_are_refused():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    started = []

    async def never():
        started.append(1)
        return 1

    def inside():
        for name, fn in (("run_forever", lp.run_forever),
                         ("run_until_complete(future)", lambda: lp.run_until_complete(fut)),
                         ("close", lp.close)):
            try:
                fn()
                say(name, "accepted")
            except Exception as e:
                say(name, exc_text(e))
        co = never()
        try:
            lp.run_until_complete(co)
        except Exception as e:
            say("run_until_complete(coroutine)", exc_text(e))
        co.close()
        fut.set_result(1)

    lp.call_soon(inside)
    say("result:", lp.run_until_complete(fut))
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("refused coroutine started:", bool(started))
    say("running:", lp.is_running())
    lp.close()


@scenario
def stopped_before_future_completed():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    lp.call_soon(lp.stop)
    try:
        lp.run_until_complete(fut)
    except Exception as e:
        say("future:", exc_text(e))
    say("future done:", fut.done())
    lp.call_soon(fut.set_result, 5)
    say("second run:", lp.run_until_complete(fut))

    async def stops():
        say("step 1, stops the loop")
        lp.stop()
        await asyncio.sleep(0)
        say("step 2")
        return 7

    try:
        lp.run_until_complete(stops())
    except Exception as e:
        say("coroutine:", exc_text(e))
    say("pending tasks:", len(asyncio.all_tasks(lp)))
    lp.call_soon(lp.stop)
    lp.run_forever()
    say("pending tasks:", len(asyncio.all_tasks(lp)))
    lp.close()


@scenario
def run_until_complete_raises_what_the_future_holds():
    lp = asyncio.new_event_loop()
    f1 = lp.create_future()
    lp.call_soon(f1.set_exception, ValueError("bad value"))
    try:
        lp.run_until_complete(f1)
    except Exception as e:
        say("failed future:", exc_text(e))
    try:
        lp.run_until_complete(f1)
    except Exception as e:
        say("again:", exc_text(e))
    f2 = lp.create_future()
    lp.call_soon(f2.cancel)
    try:
        lp.run_until_complete(f2)
    except BaseException as e:
        say("cancelled future:", type(e).__name__)

    async def raises():
        await asyncio.sleep(0)
        raise ValueError("from coroutine")

    try:
        lp.run_until_complete(raises())
    except Exception as e:
        say("coroutine:", exc_text(e))
    lp.close()


@scenario
def closed_loop_refuses_work():
    lp = asyncio.new_event_loop()
    fut = lp.create_future()
    lp.close()

    async def coro():
        return 1

    def try_(name, fn):
        try:
            fn()
            say(name, "accepted")
        except Exception as e:
            say(name, exc_text(e))

    try_("run_forever", lp.run_forever)
    try_("run_until_complete(future)", lambda: lp.run_until_complete(fut))
    co = coro()
    try_("run_until_complete(coroutine)", lambda: lp.run_until_complete(co))
    co.close()
    try_("call_soon", lambda: lp.call_soon(noop))
    try_("call_later", lambda: lp.call_later(1, noop))
    try_("call_soon_threadsafe", lambda: lp.call_soon_threadsafe(noop))
    co = coro()
    try_("create_task", lambda: lp.create_task(co))
    co.close()
    try_("run_in_executor", lambda: lp.run_in_executor(None, noop))
    try_("add_signal_handler", lambda: lp.add_signal_handler(signal.SIGUSR1, noop))
    try_("create_future", lambda: lp.create_future())
    try_("set_result without callbacks", lambda: fut.set_result(1))
    f2 = lp.create_future()
    f2.add_done_callback(lambda f: None)
    try_("set_result with a callback", lambda: f2.set_result(1))
    say("f2 done:", f2.done())
    try_("close again", lp.close)


@scenario
def another_loop_running_in_the_thread():
    lp1 = asyncio.new_event_loop()
    lp2 = asyncio.new_event_loop()
    f2 = lp2.create_future()

    def inside():
        try:
            lp2.run_forever()
        except Exception as e:
            say("lp2.run_forever:", exc_text(e))
        try:
            lp2.run_until_complete(f2)
        except Exception as e:
            say("lp2.run_until_complete:", exc_text(e))

    lp1.call_soon(inside)
    lp1.call_soon(lp1.stop)
    lp1.run_forever()
    try:
        lp1.run_until_complete(f2)
    except Exception as e:
        say("lp1.run_until_complete(future of lp2):", exc_text(e))
    lp2.call_soon(f2.set_result, "two")
    say("lp2 still works:", lp2.run_until_complete(f2))
    lp1.close()
    lp2.close()


# ---- Async generators -----------------------------------------------------------------------

async def _ticker(name):
    try:
        i = 0
        while True:
            yield i
            i += 1
    except GeneratorExit:
        say(name, "GeneratorExit: cleanup starts")
        await asyncio.sleep(0)
        say(name, "cleanup ends")
        raise


async def _finite():
    yield 1
    yield 2


@scenario
def shutdown_asyncgens_closes_started_generators():
    lp = asyncio.new_event_loop()
    g_open = _ticker("open")
    g_never = _ticker("never started")
    g_done = _finite()

    async def run():
        say("open yields", await g_open.__anext__())
        say("open yields", await g_open.__anext__())
        async for v in g_done:
            say("finite yields", v)

    lp.run_until_complete(run())
    say("shutdown_asyncgens")
    lp.run_until_complete(lp.shutdown_asyncgens())
    say("shutdown done")

    async def after():
        try:
            v = await g_open.__anext__()
            say("open yields", v)
        except StopAsyncIteration:
            say("open: exhausted")

    lp.run_until_complete(after())
    say("second shutdown_asyncgens")
    lp.run_until_complete(lp.shutdown_asyncgens())
    say("second done")
    del g_never
    lp.close()


async def _bad_cleanup():
    try:
        yield 1
    except GeneratorExit:
        say("bad: cleanup raises")
        raise ValueError("cleanup failed")


@scenario
def shutdown_asyncgens_reports_cleanup_errors():
    lp = asyncio.new_event_loop()

    def handler(loop, ctx):
        say("  handler:", ctx["message"].split(" <")[0])
        say("  keys:", *sorted(ctx))
        say("  exception:", exc_text(ctx["exception"]))
        say("  asyncgen is ours:", ctx["asyncgen"] is gen)

    lp.set_exception_handler(handler)
    gen = _bad_cleanup()

    async def run():
        say("bad yields", await gen.__anext__())

    lp.run_until_complete(run())
    lp.run_until_complete(lp.shutdown_asyncgens())
    say("shutdown done")
    lp.close()


@scenario
def dropped_open_generator_is_closed_by_the_loop():
    lp = asyncio.new_event_loop()

    async def run():
        g = _ticker("dropped")
        say("dropped yields", await g.__anext__())
        say("dropping it")
        del g
        say("dropped")
        await asyncio.sleep(0.01)
        say("main ends")

    lp.run_until_complete(run())
    lp.run_until_complete(lp.shutdown_asyncgens())
    lp.close()


@scenario
def dropped_generator_cleanup_error_is_the_closing_task_exception():
    lp = asyncio.new_event_loop()
    lp.set_exception_handler(recording_handler)

    async def run():
        g = _bad_cleanup()
        say("bad yields", await g.__anext__())
        del g
        say("dropped; tasks:", len(asyncio.all_tasks()))
        lp.call_soon(say, "callback scheduled after the drop")
        for i in range(3):
            await asyncio.sleep(0)
            say("main step", i)

    lp.run_until_complete(run())
    lp.run_until_complete(lp.shutdown_asyncgens())
    say("shutdown done")
    lp.close()


@scenario
def generator_dropped_as_a_run_ends_is_closed_in_the_next_run():
    lp = asyncio.new_event_loop()

    async def run():
        g = _ticker("last")
        say("last yields", await g.__anext__())
        say("main ends, dropping it")

    lp.run_until_complete(run())
    say("run done")
    lp.run_until_complete(lp.shutdown_asyncgens())
    say("shutdown done")
    lp.close()


@scenario
def generator_dropped_after_close_is_not_closed():
    lp = asyncio.new_event_loop()
    g = _ticker("late")

    async def run():
        say("late yields", await g.__anext__())

    lp.run_until_complete(run())
    lp.close()
    say("loop closed")
    del g
    say("dropped")


@scenario
def dropped_generator_is_not_closed_again_by_shutdown_asyncgens():
    lp = asyncio.new_event_loop()

    async def run():
        dropped = _ticker("dropped")
        kept = _ticker("kept")
        say("dropped yields", await dropped.__anext__())
        say("kept yields", await kept.__anext__())
        del dropped
        say("shutdown_asyncgens")
        await lp.shutdown_asyncgens()
        say("shutdown done")
        await asyncio.sleep(0.01)
        say("main ends")

    lp.run_until_complete(run())
    lp.close()


@scenario
def generator_dropped_on_another_thread_is_closed_on_the_loop():
    lp = asyncio.new_event_loop()

    async def run():
        g = _ticker("threaded")
        say("threaded yields", await g.__anext__())
        holder = [g]
        del g

        def drop():
            say("worker drops it")
            holder.clear()

        await lp.run_in_executor(None, drop)
        # (Whether the worker's completion or the cleanup's second step comes first is a race.)
        await asyncio.sleep(0.01)
        say("main ends")

    lp.run_until_complete(run())
    lp.close()


# ---- The task factory and the clock ---------------------------------------------------------

@scenario
def task_factory_is_used_for_every_task():
    lp = asyncio.new_event_loop()
    say("no factory at first:", lp.get_task_factory() is None)
    made = [0]

    def factory(loop, coro):
        made[0] += 1
        say("  factory call", made[0], "same loop", loop is lp)
        return asyncio.Task(coro, loop=loop)

    async def child(n):
        await asyncio.sleep(0)
        return n

    lp.set_task_factory(factory)
    say("factory set:", lp.get_task_factory() is factory)
    say("create_task")
    t = lp.create_task(child(1), name="one")
    say("name kept:", t.get_name())

    async def run():
        say("await a coroutine")
        await child(2)
        say("gather")
        await asyncio.gather(child(3), child(4))
        say("wait_for")
        await asyncio.wait_for(child(5), 1)
        say("shield")
        await asyncio.shield(child(6))
        return await t

    say("run_until_complete")
    say("result:", lp.run_until_complete(run()))
    lp.set_task_factory(None)
    say("reset:", lp.get_task_factory() is None)
    say("result:", lp.run_until_complete(child(7)))
    say("factory calls:", made[0])
    lp.close()


@scenario
def time_is_the_monotonic_clock():
    lp = asyncio.new_event_loop()
    say("time() is the monotonic clock:", abs(lp.time() - time.monotonic()) < 0.05)
    t0 = lp.time()
    th = lp.call_later(0.05, noop)
    say("call_later when() is time() + delay:", abs(th.when() - (t0 + 0.05)) < 0.01)
    when = lp.time() + 0.03
    ta = lp.call_at(when, noop)
    say("call_at when() is exact:", ta.when() == when)

    def fire():
        say("timer ran no earlier than when():", lp.time() >= tb.when())
        lp.stop()

    tb = lp.call_later(0.02, fire)
    lp.run_forever()
    t1 = lp.time()
    say("time advanced:", t1 > t0, "by at least 0.02:", t1 - t0 >= 0.02)
    th.cancel()
    ta.cancel()
    lp.close()


if __name__ == "__main__":
    main()
