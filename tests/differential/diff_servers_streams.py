"""Differential scenarios of Server objects and of streams over real connections: serving,
closing, limits, flow control, resets (the libloop half: diff_servers_streams.cpp).

Server.wait_closed with live connections is left out on purpose (libloop follows 3.12 there,
README "departs from asyncio 3.7 on purpose")."""
import asyncio
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402

BIG = 4 * 1024 * 1024  # far more than the kernel takes with SO_SNDBUF 64 KiB and no reader


def run(coro_fn):
    """Runs coro_fn() on a new loop until done, then closes the loop."""
    lp = asyncio.new_event_loop()
    try:
        lp.run_until_complete(coro_fn())
    finally:
        lp.close()


def err(e):
    return type(e).__name__


def say_exc(what, e):
    say(what, err(e), str(e))


def ticker(lp, n):
    """Says 'tick 1' .. 'tick n', one per iteration, from the next iteration on."""
    def tick(i):
        say("tick", i)
        if i < n:
            lp.call_soon(tick, i + 1)
    lp.call_soon(tick, 1)


def port_of(srv):
    return srv.sockets[0].getsockname()[1]


def small_sndbuf(w):
    w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)


def reset_and_close(sock):
    """Closes a connected socket with SO_LINGER 0: the peer gets a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def blocking_client(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", port))
    return s


async def nothing(r, w):
    w.close()


# ---- Server objects ----------------------------------------------------------------------------

@scenario
def server_start_serving_false_then_start_serving_twice():
    async def body():
        lp = asyncio.get_running_loop()
        srv = await asyncio.start_server(nothing, "127.0.0.1", 0, start_serving=False)
        say("is_serving", srv.is_serving(), "sockets", len(srv.sockets))
        say("get_loop is the loop", srv.get_loop() is lp)
        ticker(lp, 3)
        await srv.start_serving()
        say("start_serving returned; is_serving", srv.is_serving())
        await srv.start_serving()
        say("start_serving again returned; is_serving", srv.is_serving())
        srv.close()
        say("closed: is_serving", srv.is_serving(), "sockets", len(srv.sockets))
        srv.close()
        say("closed again: is_serving", srv.is_serving(), "sockets", len(srv.sockets))
        await srv.wait_closed()
        say("wait_closed returned")
        await asyncio.sleep(0)
    run(body)


@scenario
def server_serve_forever_cancelled_by_close():
    async def body():
        lp = asyncio.get_running_loop()
        srv = await asyncio.start_server(nothing, "127.0.0.1", 0, start_serving=False)

        async def serving():
            say("serve_forever starts")
            try:
                await srv.serve_forever()
            except asyncio.CancelledError:
                say("serve_forever raised CancelledError")
                raise

        t = lp.create_task(serving())
        say("before the task runs: is_serving", srv.is_serving())
        await asyncio.sleep(0)
        say("serving: is_serving", srv.is_serving())
        ticker(lp, 2)
        srv.close()
        say("close() returned; task done", t.done())
        try:
            await t
        except asyncio.CancelledError:
            say("task cancelled", t.cancelled())
        say("is_serving", srv.is_serving(), "sockets", len(srv.sockets))
        await srv.wait_closed()
        say("wait_closed returned")
        try:
            await srv.serve_forever()
        except RuntimeError as e:
            say("serve_forever on a closed server:", err(e))
    run(body)


@scenario
def server_serve_forever_task_cancelled_closes_the_server():
    async def body():
        lp = asyncio.get_running_loop()
        srv = await asyncio.start_server(nothing, "127.0.0.1", 0)
        t = lp.create_task(srv.serve_forever())
        await asyncio.sleep(0)
        say("serving: is_serving", srv.is_serving(), "sockets", len(srv.sockets))
        say("cancel", t.cancel())
        ticker(lp, 2)
        try:
            await t
        except asyncio.CancelledError:
            say("task cancelled", t.cancelled())
        say("is_serving", srv.is_serving(), "sockets", len(srv.sockets))
        await srv.wait_closed()
        say("wait_closed returned")
    run(body)


@scenario
def server_serve_forever_twice_is_refused_and_accepts_meanwhile():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        async def handle(r, w):
            say("server: got", await r.readline())
            w.write(b"pong\n")
            await w.drain()
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, start_serving=False)
        t = lp.create_task(srv.serve_forever())
        await asyncio.sleep(0)
        try:
            await srv.serve_forever()
        except RuntimeError as e:
            say("second serve_forever:", err(e))
        say("first still serving", not t.done(), srv.is_serving())
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
        w.write(b"ping\n")
        say("client: got", await r.readline())
        say("client: then", await r.read())
        await done
        w.close()
        await w.wait_closed()
        srv.close()
        try:
            await t
        except asyncio.CancelledError:
            say("serve_forever cancelled by close", t.cancelled())
        await srv.wait_closed()
    run(body)


@scenario
def server_wait_closed_before_close_wakes_one_iteration_later():
    async def body():
        lp = asyncio.get_running_loop()
        srv = await asyncio.start_server(nothing, "127.0.0.1", 0)

        async def waiter(name):
            say(name, "waits")
            await srv.wait_closed()
            say(name, "woken")

        t1 = lp.create_task(waiter("w1"))
        t2 = lp.create_task(waiter("w2"))
        await asyncio.sleep(0)
        ticker(lp, 3)
        say("close")
        srv.close()
        await t1
        await t2
        await srv.wait_closed()
        say("wait_closed after close returned")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    run(body)


@scenario
def server_as_a_context_manager_closes_it():
    async def body():
        done = asyncio.get_running_loop().create_future()

        async def handle(r, w):
            say("server: got", await r.read())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, start_serving=False)
        async with srv:
            say("inside: is_serving", srv.is_serving())
            await srv.start_serving()
            say("inside: is_serving", srv.is_serving(), "sockets", len(srv.sockets))
            r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
            w.write(b"hello")
            w.write_eof()
            await done
            say("client: read", await r.read())
            w.close()
            await w.wait_closed()
        say("after: is_serving", srv.is_serving(), "sockets", len(srv.sockets))
    run(body)


@scenario
def server_close_keeps_accepted_connections():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        connected = lp.create_future()

        async def handle(r, w):
            connected.set_result(None)
            line = await r.readline()
            say("server: got", line)
            w.write(line.upper())
            await w.drain()
            say("server: read at EOF", await r.read())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
        await connected
        srv.close()
        say("server closed: is_serving", srv.is_serving(), "sockets", len(srv.sockets))
        try:
            await asyncio.open_connection("127.0.0.1", port_of_peer(w))
        except ConnectionRefusedError as e:
            say("a new connection:", err(e))
        w.write(b"still here\n")
        say("client: got", await r.readline())
        w.write_eof()
        await done
        say("client: read at EOF", await r.read())
        w.close()
        await w.wait_closed()
    run(body)


def port_of_peer(w):
    return w.get_extra_info("peername")[1]


@scenario
def server_not_serving_refuses_then_serves():
    # start_serving=False: the socket is bound but does not listen yet
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        async def handle(r, w):
            say("server: got", await r.read())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, start_serving=False)
        port = port_of(srv)
        try:
            await asyncio.open_connection("127.0.0.1", port)
            say("connected (unexpected)")
        except ConnectionRefusedError as e:
            say("before start_serving:", err(e))
        await srv.start_serving()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        say("after start_serving: connected")
        w.write(b"hi")
        w.write_eof()
        await done
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()

        never = await asyncio.start_server(handle, "127.0.0.1", 0, start_serving=False)
        never.close()
        say("never served, closed: is_serving", never.is_serving(), "sockets", len(never.sockets))
        await never.wait_closed()
        say("wait_closed returned")
    run(body)


@scenario
def server_accepts_queued_connections_in_order():
    async def body():
        lp = asyncio.get_running_loop()
        srv_done = lp.create_future()
        clients = []
        order = []

        async def handle(r, w):
            port = w.get_extra_info("peername")[1]
            i = [c.getsockname()[1] for c in clients].index(port)
            say("server: client", i, "connected")
            say("server: client", i, "got", await r.readexactly(2))
            order.append(i)
            w.close()
            if len(order) == 3:
                srv_done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        for i in range(3):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.connect(("127.0.0.1", port_of(srv)))
            c.send(b"c%d" % i)
            clients.append(c)
        ticker(lp, 6)
        await srv_done
        for c in clients:
            c.close()
        srv.close()
        await srv.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)
    run(body)


@scenario
def server_wait_closed_woken_by_a_cancelled_serve_forever():
    async def body():
        lp = asyncio.get_running_loop()
        srv = await asyncio.start_server(nothing, "127.0.0.1", 0)

        async def serving():
            try:
                await srv.serve_forever()
            finally:
                say("serve_forever leaves")

        async def waiting():
            say("waiter waits")
            await srv.wait_closed()
            say("waiter woken")

        t = lp.create_task(serving())
        wt = lp.create_task(waiting())
        await asyncio.sleep(0)
        ticker(lp, 4)
        say("cancel serve_forever", t.cancel())
        try:
            await t
        except asyncio.CancelledError:
            say("serve_forever cancelled", t.cancelled(), "waiter done", wt.done())
        await wt
        say("is_serving", srv.is_serving())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    run(body)


# ---- Limits ----------------------------------------------------------------------------------

@scenario
def stream_start_server_limit_reaches_readline():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        async def handle(r, w):
            say("server: readline", await r.readline())
            try:
                await r.readline()
            except ValueError as e:
                say_exc("server: readline:", e)
            say("server: readline", await r.readline())
            try:
                await r.readuntil(b"\n")
            except asyncio.LimitOverrunError as e:
                say_exc("server: readuntil:", e)
                say("consumed", e.consumed)
            say("server: read", await r.read())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, limit=8)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
        w.write(b"short\n0123456789abc\nok\nno-newline-here")
        w.write_eof()
        await done
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_open_connection_limit_reaches_readuntil_multibyte():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        async def handle(r, w):
            w.write(b"ab\r\n" b"cdefgh\r\n" b"ijklmnopq")
            w.write_eof()
            await r.read()
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv), limit=5)
        say("client: readuntil", await r.readuntil(b"\r\n"))
        try:
            await r.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as e:
            say_exc("client: readuntil:", e)
            say("consumed", e.consumed)
        say("client: readexactly(8)", await r.readexactly(8))
        try:
            await r.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as e:
            say_exc("client: readuntil:", e)
            say("consumed", e.consumed)
        say("client: read(3)", await r.read(3))
        try:
            await r.readuntil(b"q!")
        except asyncio.IncompleteReadError as e:
            # the message says None (3.7) or undefined (3.8+): not printed
            say("client: readuntil at EOF:", err(e), "partial", e.partial, "expected", e.expected)
        w.close()
        await w.wait_closed()
        await done
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_readuntil_multibyte_separator_overlapping_prefix():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        async def handle(r, w):
            w.write(b"a--b---c-+-d--")
            w.write_eof()
            await r.read()
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
        say("readuntil(b'---')", await r.readuntil(b"---"))
        say("readuntil(b'-+-')", await r.readuntil(b"-+-"))
        say("readuntil(b'--')", await r.readuntil(b"--"))
        say("readline", await r.readline())
        say("at_eof", r.at_eof())
        w.close()
        await w.wait_closed()
        await done
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_reader_pauses_the_transport_beyond_twice_the_limit():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        go = lp.create_future()

        async def handle(r, w):
            t = w.transport
            say("server: reading", t.is_reading())
            say("server: readexactly(1)", await r.readexactly(1))
            say("server: after the data: reading", t.is_reading())
            say("server: read(50)", len(await r.read(50)))
            say("server: 49 left: reading", t.is_reading())
            say("server: read(33)", len(await r.read(33)))
            say("server: 16 left: reading", t.is_reading())
            say("server: readexactly(16)", len(await r.readexactly(16)))
            go.set_result(None)
            say("server: readexactly(150)", len(await r.readexactly(150)))
            say("server: reading", t.is_reading())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, limit=16)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
        w.write(b"x" * 100)
        await go
        w.write(b"y" * 150)
        await done
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_readexactly_beyond_the_buffer_resumes_a_paused_transport():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        more = lp.create_future()

        async def handle(r, w):
            t = w.transport
            say("server: read(1)", await r.read(1))
            say("server: reading", t.is_reading())
            more.set_result(None)
            got = await r.readexactly(60)
            say("server: readexactly(60)", len(got), "reading", t.is_reading())
            say("server: rest", await r.read())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, limit=8)
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
        w.write(b"a" * 30)
        await more
        w.write(b"b" * 31 + b"tail")
        w.write_eof()
        await done
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(body)


# ---- Writing: flow control -------------------------------------------------------------------

async def paused_writer_pair(lp, handle):
    """A server running handle, and a client whose sends the kernel takes little of."""
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
    small_sndbuf(w)
    return srv, r, w


@scenario
def stream_drain_blocks_until_the_peer_reads():
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()
        slog = []

        async def handle(r, w):
            await go
            slog.append("server: reads")
            got = await r.readexactly(BIG)
            slog.append(f"server: got {len(got)} bytes")
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv, r, w = await paused_writer_pair(lp, handle)
        t = w.transport
        say("limits", t.get_write_buffer_limits())
        w.write(b"z" * BIG)
        say("buffered", t.get_write_buffer_size() > 0)
        d = lp.create_task(w.drain())
        for _ in range(3):
            await asyncio.sleep(0)
        say("drain done while the peer does not read", d.done())
        go.set_result(None)
        await d
        say("drain returned; buffered <= low", t.get_write_buffer_size() <= 16384)
        await w.drain()
        say("drain again returned at once")
        await done
        for line in slog:
            say(line)
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_write_buffer_limits_through_the_writer():
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            await go
            got = await r.readexactly(BIG)
            done.set_result(len(got))
            w.close()
            await w.wait_closed()

        srv, r, w = await paused_writer_pair(lp, handle)
        t = w.transport
        t.set_write_buffer_limits(high=100)
        say("high=100", t.get_write_buffer_limits())
        t.set_write_buffer_limits(low=10)
        say("low=10", t.get_write_buffer_limits())
        t.set_write_buffer_limits(high=0)
        say("high=0", t.get_write_buffer_limits())
        try:
            t.set_write_buffer_limits(high=10, low=20)
        except ValueError as e:
            say_exc("high=10, low=20:", e)
        say("after the refusal", t.get_write_buffer_limits())
        t.set_write_buffer_limits()
        say("defaults", t.get_write_buffer_limits())
        w.write(b"z" * BIG)
        d = lp.create_task(w.drain())
        await asyncio.sleep(0)
        say("drain waits", not d.done())
        # a high-water mark above what is buffered does not resume the paused writer
        t.set_write_buffer_limits(high=4 * BIG, low=0)
        say("raised to", t.get_write_buffer_limits())
        for _ in range(3):
            await asyncio.sleep(0)
        say("drain still waits", not d.done())
        go.set_result(None)
        await d
        say("drain returned")
        say("server got", await done)
        # a high-water mark of 0: every write that is not sent whole pauses
        t.set_write_buffer_limits(high=0)
        w.write(b"")
        await w.drain()
        say("drain with nothing buffered returned")
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_close_while_drain_waits_then_the_peer_reads():
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            await go
            got = await r.read()
            done.set_result(len(got))
            w.close()
            await w.wait_closed()

        srv, r, w = await paused_writer_pair(lp, handle)
        w.write(b"z" * BIG)

        async def draining():
            try:
                await w.drain()
                say("drain returned")
            except Exception as e:
                say("drain raised", err(e))

        d = lp.create_task(draining())
        await asyncio.sleep(0)
        say("drain waits", not d.done())
        w.close()
        say("closed: is_closing", w.is_closing(), "buffered", w.transport.get_write_buffer_size() > 0)
        for _ in range(3):
            await asyncio.sleep(0)
        say("drain still waits", not d.done())
        go.set_result(None)
        await d
        await w.wait_closed()
        say("wait_closed returned")
        say("server read", await done)
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_close_while_drain_waits_then_the_peer_resets():
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            await go
            # SO_LINGER 0, then abort(): a RST (unread data makes one anyway)
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
            done.set_result(None)

        srv, r, w = await paused_writer_pair(lp, handle)
        w.write(b"z" * BIG)

        async def draining():
            try:
                await w.drain()
                say("drain returned")
            except Exception as e:
                say("drain raised", err(e))

        d = lp.create_task(draining())
        await asyncio.sleep(0)
        w.close()
        say("closed: is_closing", w.is_closing())
        go.set_result(None)
        await d
        try:
            await w.wait_closed()
            say("wait_closed returned")
        except Exception as e:
            say("wait_closed raised", err(e))
        say("buffered", w.transport.get_write_buffer_size())
        await done
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_abort_while_drain_waits():
    # FlowControlMixin.connection_lost(None) wakes a paused drain with no error; the next
    # drain raises ConnectionResetError.
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        async def handle(r, w):
            got = await r.read()  # what the kernel had taken before the abort
            done.set_result(0 < len(got) < BIG)
            w.close()
            await w.wait_closed()

        srv, r, w = await paused_writer_pair(lp, handle)
        w.write(b"z" * BIG)

        async def draining():
            try:
                await w.drain()
                say("drain returned")
            except Exception as e:
                say("drain raised", err(e))

        d = lp.create_task(draining())
        await asyncio.sleep(0)
        say("drain waits", not d.done())
        ticker(lp, 3)
        w.transport.abort()
        say("aborted: is_closing", w.is_closing(), "buffered", w.transport.get_write_buffer_size())
        await d
        try:
            await w.drain()
            say("drain again returned")
        except ConnectionResetError as e:
            say("drain again raised", err(e))
        await w.wait_closed()
        say("wait_closed returned")
        say("client: read", await r.read())
        say("server: read less than was written", await done)
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_peer_reset_while_drain_waits():
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            await go
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
            done.set_result(None)

        srv, r, w = await paused_writer_pair(lp, handle)
        w.write(b"z" * BIG)

        async def draining():
            try:
                await w.drain()
                say("drain returned")
            except Exception as e:
                say("drain raised", err(e))

        d = lp.create_task(draining())
        await asyncio.sleep(0)
        say("drain waits", not d.done())
        go.set_result(None)
        await d
        say("exception()", err(r.exception()), "is_closing", w.is_closing())
        try:
            await r.read()
        except ConnectionResetError as e:
            say("read raised", err(e))
        try:
            await w.wait_closed()
        except ConnectionResetError as e:
            say("wait_closed raised", err(e))
        say("buffered", w.transport.get_write_buffer_size())
        await done
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_lowering_the_high_water_mark_pauses_at_once():
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            await go
            got = await r.readexactly(BIG)
            done.set_result(len(got))
            w.close()
            await w.wait_closed()

        srv, r, w = await paused_writer_pair(lp, handle)
        t = w.transport
        t.set_write_buffer_limits(high=2 * BIG)
        w.write(b"z" * BIG)
        say("buffered", t.get_write_buffer_size() > 0)
        await w.drain()
        say("drain below the high-water mark returned")
        t.set_write_buffer_limits(high=1024)
        say("lowered to", t.get_write_buffer_limits())
        d = lp.create_task(w.drain())
        for _ in range(3):
            await asyncio.sleep(0)
        say("drain waits", not d.done())
        go.set_result(None)
        await d
        say("drain returned; buffered <= 256", t.get_write_buffer_size() <= 256)
        say("server got", await done)
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_drain_cancelled_then_drain_again():
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            await go
            got = await r.readexactly(BIG)
            done.set_result(len(got))
            w.close()
            await w.wait_closed()

        srv, r, w = await paused_writer_pair(lp, handle)
        w.write(b"z" * BIG)
        d1 = lp.create_task(w.drain())
        await asyncio.sleep(0)
        say("cancel", d1.cancel())
        try:
            await d1
        except asyncio.CancelledError:
            say("first drain cancelled", d1.cancelled())
        d2 = lp.create_task(w.drain())
        for _ in range(3):
            await asyncio.sleep(0)
        say("second drain waits", not d2.done())
        go.set_result(None)
        await d2
        say("second drain returned")
        say("server got", await done)
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_write_after_close_with_data_buffered_is_still_sent():
    # close() with data buffered waits for it to be sent: a write() meanwhile joins the buffer
    async def body():
        lp = asyncio.get_running_loop()
        go = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            await go
            got = await r.read()
            done.set_result((len(got), got[-11:]))
            w.close()
            await w.wait_closed()

        srv, r, w = await paused_writer_pair(lp, handle)
        w.write(b"z" * BIG)
        w.close()
        w.write(b"after close")
        say("closing", w.is_closing(), "buffered", w.transport.get_write_buffer_size() > 0)
        go.set_result(None)
        await w.wait_closed()
        say("wait_closed returned")
        n, tail = await done
        say("server got", n, tail)
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def server_serve_forever_cancelled_with_a_live_connection_returns_at_once():
    # asyncio 3.7 / 3.11: serve_forever's wait_closed() returns at once on a closed server;
    # libloop does not wait for the connections there either (README).
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        connected = lp.create_future()

        async def handle(r, w):
            connected.set_result(None)
            line = await r.readline()
            w.write(b"echo " + line)
            await w.drain()
            say("server: read at EOF", await r.read())
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        t = lp.create_task(srv.serve_forever())
        r, w = await asyncio.open_connection("127.0.0.1", port_of(srv))
        await connected
        say("cancel", t.cancel())
        try:
            await t
        except asyncio.CancelledError:
            say("serve_forever cancelled", t.cancelled(), "is_serving", srv.is_serving())
        w.write(b"still open\n")
        say("client: got", await r.readline())
        w.close()
        await w.wait_closed()
        await done
        await srv.wait_closed()
        say("wait_closed returned")
    run(body)


@scenario
def stream_unix_extra_info_names():
    # An unnamed unix socket's name is '' (not None); the server leaves its file behind (3.7
    # to 3.12; 3.13 removes it).
    path = "/tmp/libloop-diff-servers-%d.sock" % os.getpid()

    async def body():
        lp = asyncio.get_running_loop()
        view = lp.create_future()
        done = lp.create_future()

        async def handle(r, w):
            view.set_result((w.get_extra_info("sockname"), w.get_extra_info("peername")))
            await r.read()
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_unix_server(handle, path)
        say("server sockets", len(srv.sockets))
        r, w = await asyncio.open_unix_connection(path)
        local, peer = w.get_extra_info("sockname"), w.get_extra_info("peername")
        say("client sockname", repr(local), "peername is the path", peer == path)
        s_local, s_peer = await view
        say("server sockname is the path", s_local == path, "peername", repr(s_peer))
        w.close()
        await w.wait_closed()
        await done
        srv.close()
        say("closed: sockets", len(srv.sockets), "file still there", os.path.exists(path))
        await srv.wait_closed()
    try:
        run(body)
    finally:
        if os.path.exists(path):
            os.unlink(path)


# ---- Resets --------------------------------------------------------------------------------

@scenario
def stream_reset_while_reading():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        connected = lp.create_future()

        async def handle(r, w):
            connected.set_result(None)
            try:
                await r.read(100)
            except ConnectionResetError as e:
                say("server: read raised", err(e))
            say("server: exception()", err(r.exception()))
            say("server: at_eof", r.at_eof(), "is_closing", w.is_closing())
            try:
                await r.readline()
            except ConnectionResetError as e:
                say("server: readline raised", err(e))
            try:
                await w.drain()
            except ConnectionResetError as e:
                say("server: drain raised", err(e))
            try:
                await w.wait_closed()
            except ConnectionResetError as e:
                say("server: wait_closed raised", err(e))
            w.close()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        s = blocking_client(port_of(srv))
        await connected
        await asyncio.sleep(0)
        reset_and_close(s)
        await done
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_reset_while_waiting_closed():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        connected = lp.create_future()

        async def handle(r, w):
            connected.set_result(None)
            say("server: exception() before", r.exception())
            try:
                await w.wait_closed()
                say("server: wait_closed returned")
            except ConnectionResetError as e:
                say("server: wait_closed raised", err(e))
            say("server: exception()", err(r.exception()))
            try:
                await r.read()
            except ConnectionResetError as e:
                say("server: read() raised", err(e))
            try:
                await w.wait_closed()
            except ConnectionResetError as e:
                say("server: wait_closed again raised", err(e))
            say("server: is_closing", w.is_closing())
            w.close()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        s = blocking_client(port_of(srv))
        await connected
        await asyncio.sleep(0)
        reset_and_close(s)
        await done
        srv.close()
        await srv.wait_closed()
    run(body)


@scenario
def stream_reader_protocol_connection_lost_with_an_exception():
    async def body():
        lp = asyncio.get_running_loop()
        r = asyncio.StreamReader()
        p = asyncio.StreamReaderProtocol(r)

        async def reading():
            try:
                await r.read(10)
            except ValueError as e:
                say_exc("pending read raised", e)

        t = lp.create_task(reading())
        await asyncio.sleep(0)
        p.connection_lost(ValueError("lost"))
        say("connection_lost returned; read done", t.done())
        await t
        say_exc("exception()", r.exception())
        try:
            await r.read()
        except ValueError as e:
            say_exc("read() raised", e)
        say("at_eof", r.at_eof())

        r2 = asyncio.StreamReader()
        p2 = asyncio.StreamReaderProtocol(r2)
        p2.data_received(b"left over")
        say("eof_received returns", p2.eof_received())
        p2.connection_lost(None)
        say("exception()", r2.exception())
        say("read()", await r2.read())
        say("at_eof", r2.at_eof())
    run(body)


# ---- The writer's other methods ----------------------------------------------------------------

@scenario
def stream_writer_extra_info_and_is_closing():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        server_view = lp.create_future()

        async def handle(r, w):
            server_view.set_result((w.get_extra_info("sockname"), w.get_extra_info("peername")))
            await r.read()
            w.close()
            await w.wait_closed()
            done.set_result(None)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = port_of(srv)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        peer = w.get_extra_info("peername")
        local = w.get_extra_info("sockname")
        say("client peername", peer[0], peer[1] == port)
        say("client sockname", local[0])
        s_local, s_peer = await server_view
        say("server sockname is the client's peername", s_local == peer)
        say("server peername is the client's sockname", s_peer == local)
        say("socket present", w.get_extra_info("socket") is not None)
        say("unknown key", w.get_extra_info("no-such-key"), w.get_extra_info("no-such-key", "dflt"))
        say("is_closing", w.is_closing())
        w.write_eof()
        say("after write_eof: is_closing", w.is_closing())
        try:
            w.write(b"late")
        except RuntimeError as e:
            say_exc("write after write_eof:", e)
        await done
        got = await r.read()
        say("after the peer closed: is_closing", w.is_closing(), "read", got)
        w.close()
        say("after close: is_closing", w.is_closing())
        peer = w.get_extra_info("peername")
        say("peername after close", peer[0], peer[1] == port)
        await w.wait_closed()
        say("after wait_closed: is_closing", w.is_closing())
        srv.close()
        await srv.wait_closed()
    run(body)


if __name__ == "__main__":
    main()
