"""The loop micro-benchmarks on asyncio or uvloop: the same work as bench/micro/loop_micro.cpp.

    micro.py [call_soon|timers|timers_cancel|add_reader|sock_pingpong|executor|all] [--uvloop]
             [--scale F]

One JSON line per benchmark on stdout. Standard library only (uvloop when asked for).
"""
import argparse
import asyncio
import json
import os
import random
import resource
import socket
import time

IMPL = "asyncio"


def emit(**fields):
    print(json.dumps(dict(fields, impl=IMPL)), flush=True)


def quantile(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    return values[int(q * (len(values) - 1))]


def bench_call_soon(n):
    loop = asyncio.new_event_loop()
    count = [0]

    def cb():
        count[0] += 1

    t0 = time.perf_counter()
    for _ in range(n):
        loop.call_soon(cb)
    t1 = time.perf_counter()
    loop.call_soon(loop.stop)
    loop.run_forever()
    t2 = time.perf_counter()
    loop.close()
    emit(bench="call_soon", n=n, ran=count[0], schedule_us=(t1 - t0) * 1e6 / n,
         run_us=(t2 - t1) * 1e6 / n, per_callback_us=(t2 - t0) * 1e6 / n,
         callbacks_per_s=n / (t2 - t0))


def timers_schedule_warm(n):
    """The same schedule again, each on a new loop in the same process, until a batch takes no
    page fault (at most 4 batches): that batch's µs per timer and page faults (as
    loop_micro.cpp)."""
    def cb(i):
        pass

    for _ in range(4):
        loop = asyncio.new_event_loop()
        rng = random.Random(42)
        handles = []
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for i in range(n):
            handles.append(loop.call_later(rng.random(), cb, i))
        t1 = time.perf_counter()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        for h in handles:
            h.cancel()
        loop.close()
        if faults == 0:
            break
    return (t1 - t0) * 1e6 / n, faults


def bench_timers(n, cancel_half):
    loop = asyncio.new_event_loop()
    rng = random.Random(42)
    late = []
    handles = []
    deadlines = []  # uvloop's TimerHandle has no when(): remember the deadline here
    expected = n - n // 2 if cancel_half else n
    state = {"fired": 0, "fired_cancelled": 0, "started": 0.0, "late_after_start": 0.0}

    def cb(i):
        lateness = loop.time() - deadlines[i]
        late.append(lateness)
        if deadlines[i] >= state["started"]:  # due after the loop started running
            state["late_after_start"] = max(state["late_after_start"], lateness)
        if cancel_half and i % 2 == 1:
            state["fired_cancelled"] += 1
        state["fired"] += 1
        if state["fired"] == expected:
            loop.stop()

    t0 = time.perf_counter()
    for i in range(n):
        delay = rng.random()
        deadlines.append(loop.time() + delay)
        handles.append(loop.call_later(delay, cb, i))
    t1 = time.perf_counter()
    if cancel_half:
        for i in range(1, n, 2):
            handles[i].cancel()
    t2 = time.perf_counter()
    state["started"] = loop.time()
    loop.run_forever()
    loop.close()
    handles.clear()
    warm, warm_faults = (0.0, 0) if cancel_half else timers_schedule_warm(n)
    emit(bench="timers_cancel" if cancel_half else "timers", n=n, fired=state["fired"],
         fired_cancelled=state["fired_cancelled"], schedule_us=(t1 - t0) * 1e6 / n,
         schedule_warm_us=warm, warm_page_faults=warm_faults,
         cancel_us=(t2 - t1) * 1e6 / (n // 2) if cancel_half else 0.0,
         late_p99_ms=quantile(late, 0.99) * 1e3, late_max_ms=max(late) * 1e3 if late else 0.0,
         late_max_after_start_ms=state["late_after_start"] * 1e3)


def nonblocking_socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def bench_add_reader(n):
    loop = asyncio.new_event_loop()
    a, b = nonblocking_socketpair()
    trips = [0]

    def on_b():
        data = os.read(b.fileno(), 1)
        os.write(b.fileno(), data)

    def on_a():
        if not os.read(a.fileno(), 1):
            return
        trips[0] += 1
        if trips[0] == n:
            loop.stop()
            return
        os.write(a.fileno(), b"x")

    loop.add_reader(b.fileno(), on_b)
    loop.add_reader(a.fileno(), on_a)
    t0 = time.perf_counter()
    os.write(a.fileno(), b"x")
    loop.run_forever()
    t1 = time.perf_counter()
    loop.remove_reader(a.fileno())
    loop.remove_reader(b.fileno())
    a.close()
    b.close()
    loop.close()
    emit(bench="add_reader", n=n, trips=trips[0], per_trip_us=(t1 - t0) * 1e6 / n)


def bench_sock_pingpong(n):
    loop = asyncio.new_event_loop()
    a, b = nonblocking_socketpair()
    trips = [0]

    async def ping():
        for _ in range(n):
            await loop.sock_sendall(a, b"x")
            if len(await loop.sock_recv(a, 1)) != 1:
                break
            trips[0] += 1
        a.shutdown(socket.SHUT_WR)

    async def pong():
        while True:
            data = await loop.sock_recv(b, 1)
            if not data:
                break
            await loop.sock_sendall(b, data)

    t0 = time.perf_counter()
    echo = loop.create_task(pong())
    loop.run_until_complete(ping())
    loop.run_until_complete(echo)
    t1 = time.perf_counter()
    a.close()
    b.close()
    loop.close()
    emit(bench="sock_pingpong", n=n, trips=trips[0], per_trip_us=(t1 - t0) * 1e6 / n)


def bench_executor(n):
    loop = asyncio.new_event_loop()

    async def body():
        total = 0
        for i in range(n):
            total += await loop.run_in_executor(None, int, i)
        return total

    t0 = time.perf_counter()
    total = loop.run_until_complete(body())
    t1 = time.perf_counter()
    loop.close()
    emit(bench="executor", n=n, ok=total == n * (n - 1) // 2, per_trip_us=(t1 - t0) * 1e6 / n)


def main():
    global IMPL
    parser = argparse.ArgumentParser()
    parser.add_argument("which", nargs="?", default="all")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    if args.uvloop:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        IMPL = "uvloop"

    def count(n):
        return max(1, int(n * args.scale))

    every = args.which == "all"
    if every or args.which == "call_soon":
        bench_call_soon(count(1000000))
    if every or args.which == "timers":
        bench_timers(count(100000), False)
    if every or args.which == "timers_cancel":
        bench_timers(count(100000), True)
    if every or args.which == "add_reader":
        bench_add_reader(count(100000))
    if every or args.which == "sock_pingpong":
        bench_sock_pingpong(count(100000))
    if every or args.which == "executor":
        bench_executor(count(10000))


if __name__ == "__main__":
    main()
