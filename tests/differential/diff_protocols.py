"""Differential scenarios of protocols and transports over real sockets and pipes (the libloop
half: diff_protocols.cpp).

Events that two sides of a connection see are logged per side and printed at the end (server
first): the order on one side is asyncio's promise, the interleaving of two sides is the
kernel's.
"""
import asyncio
import os
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402

BIG = 4 * 1024 * 1024  # more than the socket buffers of a paused peer take


def exc_name(exc):
    return "None" if exc is None else type(exc).__name__


def run(coro_fn):
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


class Rec(asyncio.Protocol):
    """Logs every callback; data_received once per run of data (the chunking is the kernel's)."""

    def __init__(self, loop, name):
        self.name = name
        self.events = []
        self.data = b""
        self.t = None
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.eof_result = False
        self.on_made = None
        self.on_data = None
        self.on_eof = None

    def log(self, *args):
        self.events.append(" ".join(str(a) for a in args))

    def connection_made(self, t):
        self.t = t
        self.log("connection_made")
        if self.on_made:
            self.on_made(t)
        self.made.set_result(None)

    def data_received(self, d):
        if not self.events or self.events[-1] != "data_received":
            self.log("data_received")
        self.data += d
        if self.on_data:
            self.on_data(d)

    def eof_received(self):
        self.log("eof_received")
        if not self.eof.done():
            self.eof.set_result(None)
        if self.on_eof:
            return self.on_eof()
        return self.eof_result

    def connection_lost(self, exc):
        self.log("connection_lost", exc_name(exc))
        self.lost.set_result(None)

    def pause_writing(self):
        self.log("pause_writing")

    def resume_writing(self):
        self.log("resume_writing")

    def dump(self):
        for e in self.events:
            say(self.name + ":", e)


async def tcp_setup(loop, client_name="client"):
    """A server on 127.0.0.1:0 and one connection: (server, server protocol, client protocol)."""
    made = []

    def factory():
        p = Rec(loop, "server")
        made.append(p)
        return p

    srv = await loop.create_server(factory, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    cp = Rec(loop, client_name)
    await loop.create_connection(lambda: cp, "127.0.0.1", port)
    while not made:
        await asyncio.sleep(0.001)
    sp = made[0]
    await sp.made
    return srv, sp, cp


async def finish(srv, *protos):
    for p in protos:
        if p.t is not None and not p.t.is_closing():
            p.t.close()
    for p in protos:
        await p.lost
    srv.close()
    await srv.wait_closed()


# ---- TCP: the order of the protocol methods -----------------------------------------------------


@scenario
def tcp_echo_event_order():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        sp.on_data = lambda d: sp.t.write(d.upper())
        say("client reading", cp.t.is_reading(), "closing", cp.t.is_closing())
        cp.t.write(b"hello")
        while cp.data != b"HELLO":
            await asyncio.sleep(0.001)
        cp.t.write_eof()
        await sp.lost
        await cp.lost
        say("server got", sp.data.decode(), "client got", cp.data.decode())
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_eof_received_true_keeps_half_open():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)

        def server_eof():
            sp.log("after eof: closing", sp.t.is_closing(), "reading", sp.t.is_reading())
            loop.call_soon(reply)
            return True

        def reply():
            sp.log("writing reply, closing", sp.t.is_closing())
            sp.t.write(b"bye")
            sp.t.close()

        sp.on_eof = server_eof
        cp.t.write(b"req")
        cp.t.write_eof()
        await cp.lost
        await sp.lost
        say("client got", cp.data.decode(), "server got", sp.data.decode())
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_eof_received_false_closes_and_drops_writes():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)

        def server_eof():
            loop.call_soon(after)
            return False

        def after():
            sp.log("closing", sp.t.is_closing(), "reading", sp.t.is_reading())
            sp.t.write(b"dropped")
            sp.log("write after the close: buffered", sp.t.get_write_buffer_size())

        sp.on_eof = server_eof
        cp.t.write_eof()
        await sp.lost
        await cp.lost
        say("client got", repr(cp.data.decode()))
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_write_after_close_is_ignored():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        cp.t.write(b"one")
        cp.t.close()
        say("closing", cp.t.is_closing(), "reading", cp.t.is_reading())
        cp.t.write(b"two")
        cp.t.writelines([b"three", b"four"])
        say("buffered", cp.t.get_write_buffer_size())
        cp.t.close()  # twice: nothing more
        await cp.lost
        await sp.lost
        say("server got", sp.data.decode())
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_write_after_write_eof_raises():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        say("can_write_eof", cp.t.can_write_eof())
        cp.t.write(b"ping")
        cp.t.write_eof()
        cp.t.write_eof()  # twice: nothing more
        try:
            cp.t.write(b"x")
        except Exception as e:
            say("write after write_eof:", type(e).__name__, e)
        try:
            cp.t.write(b"")
            say("empty write after write_eof: accepted")
        except Exception as e:
            say("empty write after write_eof:", type(e).__name__)
        say("closing", cp.t.is_closing())

        def server_eof():
            sp.t.write(b"pong")
            sp.t.close()
            return True

        sp.on_eof = server_eof
        await cp.lost
        await sp.lost
        say("server got", sp.data.decode(), "client got", cp.data.decode())
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


# ---- TCP: closing with data buffered --------------------------------------------------------------


async def fill_while_peer_paused(loop, sp, cp):
    """The server stops reading; the client writes BIG bytes, most of which stay buffered."""
    sp.t.pause_reading()
    cp.t.set_write_buffer_limits(high=1 << 30)
    cp.t.write(b"x" * BIG)
    await asyncio.sleep(0.05)  # the kernel buffers fill; what is left stays in the transport
    say("buffered after the write", cp.t.get_write_buffer_size() > 0)


@scenario
def tcp_close_flushes_buffer_then_connection_lost():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        await fill_while_peer_paused(loop, sp, cp)
        cp.t.close()
        say("closing", cp.t.is_closing(), "still buffered", cp.t.get_write_buffer_size() > 0)
        cp.t.write(b"tail")  # accepted while the buffer drains
        await asyncio.sleep(0.02)
        say("connection_lost yet", cp.lost.done())
        sp.t.resume_reading()
        await cp.lost
        say("buffered at connection_lost", cp.t.get_write_buffer_size())
        await sp.lost
        say("server got", len(sp.data), "ends with", sp.data[-6:].decode())
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_abort_discards_buffer():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        await fill_while_peer_paused(loop, sp, cp)
        cp.t.abort()
        say("closing", cp.t.is_closing(), "buffered", cp.t.get_write_buffer_size())
        say("connection_lost at once", cp.lost.done())
        await cp.lost
        sp.t.resume_reading()
        await sp.lost
        say("server got less", len(sp.data) < BIG)
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_close_then_abort_with_buffer():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        await fill_while_peer_paused(loop, sp, cp)
        cp.t.close()
        cp.t.abort()
        cp.t.abort()
        say("buffered", cp.t.get_write_buffer_size())
        await cp.lost
        await asyncio.sleep(0.01)
        sp.t.resume_reading()
        await sp.lost
        say("server got less", len(sp.data) < BIG)
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


# ---- TCP: flow control ----------------------------------------------------------------------------


@scenario
def tcp_flow_control_pause_resume():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        sp.t.pause_reading()
        cp.t.set_write_buffer_limits(high=4096, low=1024)
        say("limits", cp.t.get_write_buffer_limits())
        chunk = b"y" * 65536
        writes = 0
        while not any(e == "pause_writing" for e in cp.events):
            cp.t.write(chunk)
            writes += 1
            if writes > 1000:
                say("never paused")
                break
        say("paused, buffer over high", cp.t.get_write_buffer_size() > 4096)
        cp.t.write(chunk)  # still accepted; no second pause_writing
        total = (writes + 1) * len(chunk)
        sp.t.resume_reading()
        while not any(e == "resume_writing" for e in cp.events):
            await asyncio.sleep(0.001)
        say("resumed, buffer under low", cp.t.get_write_buffer_size() <= 1024)
        while len(sp.data) < total:
            await asyncio.sleep(0.001)
        say("server got all", len(sp.data) == total)
        await finish(srv, cp, sp)
        sp.dump()
        cp.dump()

    run(body)


@scenario
def tcp_set_write_buffer_limits_pauses_at_once():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        await fill_while_peer_paused(loop, sp, cp)
        cp.log("lowering the high-water mark")
        cp.t.set_write_buffer_limits(high=1000)
        cp.log("lowered")
        say("limits", cp.t.get_write_buffer_limits())
        cp.t.abort()
        await cp.lost
        sp.t.resume_reading()
        await sp.lost
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_write_buffer_limits_defaults_and_errors():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        t = cp.t
        say("default", t.get_write_buffer_limits())
        t.set_write_buffer_limits(high=1000)
        say("high only", t.get_write_buffer_limits())
        t.set_write_buffer_limits(low=1000)
        say("low only", t.get_write_buffer_limits())
        t.set_write_buffer_limits(high=0)
        say("high zero", t.get_write_buffer_limits())
        t.set_write_buffer_limits()
        say("reset", t.get_write_buffer_limits())
        try:
            t.set_write_buffer_limits(high=10, low=20)
        except Exception as e:
            say("high < low:", type(e).__name__, e)
        say("unchanged", t.get_write_buffer_limits())
        await finish(srv, cp, sp)

    run(body)


# ---- TCP: reading -----------------------------------------------------------------------------------


@scenario
def tcp_pause_resume_reading():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        sp.t.pause_reading()
        say("server reading", sp.t.is_reading())
        sp.t.pause_reading()  # twice: nothing more
        cp.t.write(b"abc")
        cp.t.write_eof()
        await asyncio.sleep(0.05)
        say("while paused: got", repr(sp.data.decode()), "eof", sp.eof.done())
        sp.t.resume_reading()
        sp.t.resume_reading()
        say("server reading", sp.t.is_reading())
        await sp.lost
        say("got", sp.data.decode(), "reading after close", sp.t.is_reading())
        sp.t.pause_reading()
        sp.t.resume_reading()
        say("pause/resume after close: reading", sp.t.is_reading())
        await cp.lost
        sp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_resume_reading_after_half_open_eof_reports_eof_again():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        count = [0]

        def server_eof():
            count[0] += 1
            sp.log("reading", sp.t.is_reading(), "closing", sp.t.is_closing())
            if count[0] == 1:
                loop.call_soon(cycle)
                return True
            sp.t.close()
            return True

        def cycle():
            sp.t.pause_reading()
            sp.log("paused: reading", sp.t.is_reading())
            sp.t.resume_reading()
            sp.log("resumed: reading", sp.t.is_reading())

        sp.on_eof = server_eof
        cp.t.write_eof()
        await sp.lost
        cp.t.close()
        await cp.lost
        sp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_extra_info():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        for name, t in (("client", cp.t), ("server", sp.t)):
            peer = t.get_extra_info("peername")
            sock = t.get_extra_info("sockname")
            say(name, "peername host", peer[0], "sockname host", sock[0])
            say(name, "socket present", t.get_extra_info("socket") is not None)
            say(name, "unknown key", t.get_extra_info("no such key", "dflt"),
                t.get_extra_info("no such key"))
        port = srv.sockets[0].getsockname()[1]
        say("client peer port is the server's", cp.t.get_extra_info("peername")[1] == port)
        say("server sees the client's port",
            sp.t.get_extra_info("peername")[1] == cp.t.get_extra_info("sockname")[1])
        await finish(srv, cp, sp)

    run(body)


@scenario
def tcp_set_protocol_mid_stream():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        other = Rec(loop, "other")

        def on_data(d):
            sp.t.set_protocol(other)
            sp.log("switched; get_protocol is the new one", sp.t.get_protocol() is other)
            loop.call_soon(cp.t.write, b"second")

        sp.on_data = on_data
        cp.t.write(b"first")
        while other.data != b"second":
            await asyncio.sleep(0.001)
        cp.t.write_eof()
        await other.lost
        await cp.lost
        say("old got", sp.data.decode(), "new got", other.data.decode())
        sp.dump()
        other.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def tcp_data_received_exception_is_fatal():
    async def body(loop):
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        srv, sp, cp = await tcp_setup(loop)

        def boom(d):
            raise RuntimeError("boom")

        sp.on_data = boom
        cp.t.write(b"a")
        await sp.lost
        await cp.lost
        for ctx in contexts:
            say("handler:", ctx["message"], type(ctx["exception"]).__name__, ctx["exception"])
            say("handler has transport and protocol", ctx.get("transport") is sp.t,
                ctx.get("protocol") is sp)
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


# ---- BufferedProtocol -------------------------------------------------------------------------------


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, loop, size):
        self.buf = bytearray(size)
        self.events = []
        self.data = b""
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, t):
        self.t = t
        self.events.append("connection_made")
        self.made.set_result(None)

    def get_buffer(self, sizehint):
        self.events.append("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes):
        chunk = bytes(self.buf[:nbytes])
        self.data += chunk
        self.events.append(f"buffer_updated {nbytes} {chunk.decode()}")

    def eof_received(self):
        self.events.append("eof_received")
        return False

    def connection_lost(self, exc):
        self.events.append("connection_lost " + exc_name(exc))
        self.lost.set_result(None)


@scenario
def buffered_protocol_get_buffer_order():
    async def body(loop):
        made = []

        def factory():
            p = Buffered(loop, 4)
            made.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        cp = Rec(loop, "client")
        await loop.create_connection(lambda: cp, "127.0.0.1", port)
        while not made:
            await asyncio.sleep(0.001)
        sp = made[0]
        await sp.made
        sp.t.pause_reading()
        cp.t.write(b"abcdefghij")
        cp.t.write_eof()
        await asyncio.sleep(0.05)  # all of it, and the FIN, wait in the kernel
        sp.t.resume_reading()
        await sp.lost
        await cp.lost
        for e in sp.events:
            say("server:", e)
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


# ---- Server objects ---------------------------------------------------------------------------------


@scenario
def server_start_serving_false_then_start():
    async def body(loop):
        made = []

        def factory():
            p = Rec(loop, "server")
            made.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0, start_serving=False)
        port = srv.sockets[0].getsockname()[1]
        say("serving", srv.is_serving(), "sockets", len(srv.sockets))
        try:
            await loop.create_connection(lambda: Rec(loop, "early"), "127.0.0.1", port)
            say("connected before start_serving")
        except OSError as e:
            say("connect before start_serving:", type(e).__name__)
        await srv.start_serving()
        say("serving", srv.is_serving())
        await srv.start_serving()  # idempotent
        cp = Rec(loop, "client")
        await loop.create_connection(lambda: cp, "127.0.0.1", port)
        while not made:
            await asyncio.sleep(0.001)
        await made[0].made
        say("accepted", len(made))
        await finish(srv, cp, made[0])
        say("serving", srv.is_serving(), "sockets", len(srv.sockets))
        made[0].dump()
        cp.dump()

    run(body)


@scenario
def server_close_keeps_accepted_connections():
    async def body(loop):
        srv, sp, cp = await tcp_setup(loop)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        srv.close()  # twice: nothing more
        say("serving", srv.is_serving(), "sockets", len(srv.sockets))
        say("accepted connection closing", sp.t.is_closing())
        sp.on_data = lambda d: sp.t.write(d[::-1])
        cp.t.write(b"abc")
        while cp.data != b"cba":
            await asyncio.sleep(0.001)
        say("still talking:", cp.data.decode())
        try:
            await loop.create_connection(lambda: Rec(loop, "late"), "127.0.0.1", port)
            say("connected after close")
        except OSError as e:
            say("connect after close:", type(e).__name__)
        cp.t.close()
        await sp.lost
        await cp.lost
        await srv.wait_closed()
        say("wait_closed returned")
        sp.dump()
        cp.dump()

    run(body)


@scenario
def server_serve_forever_cancelled():
    async def body(loop):
        srv = await loop.create_server(lambda: Rec(loop, "s"), "127.0.0.1", 0,
                                       start_serving=False)
        task = loop.create_task(srv.serve_forever())
        await asyncio.sleep(0.01)
        say("serving", srv.is_serving())
        try:
            await srv.serve_forever()
        except RuntimeError as e:
            say("second serve_forever:", type(e).__name__)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            say("serve_forever raised CancelledError")
        say("task cancelled", task.cancelled(), "serving", srv.is_serving(),
            "sockets", len(srv.sockets))
        try:
            await srv.serve_forever()
        except RuntimeError as e:
            say("serve_forever on a closed server:", type(e).__name__)
        await srv.wait_closed()
        say("wait_closed returned")

    run(body)


@scenario
def server_close_cancels_serve_forever():
    async def body(loop):
        srv = await loop.create_server(lambda: Rec(loop, "s"), "127.0.0.1", 0)
        task = loop.create_task(srv.serve_forever())
        task.add_done_callback(lambda t: say("done callback: cancelled", t.cancelled()))
        await asyncio.sleep(0.01)
        say("closing the server")
        srv.close()
        say("task done right after close", task.done())
        try:
            await task
        except asyncio.CancelledError:
            say("awaiting it: CancelledError")
        say("serving", srv.is_serving())
        await srv.wait_closed()

    run(body)


@scenario
def server_wait_closed_before_close():
    async def body(loop):
        srv = await loop.create_server(lambda: Rec(loop, "s"), "127.0.0.1", 0)

        async def waiter():
            await srv.wait_closed()
            say("wait_closed returned")

        task = loop.create_task(waiter())
        await asyncio.sleep(0.01)
        say("still waiting", not task.done())
        srv.close()
        say("closed")
        await task
        await srv.wait_closed()
        say("again: returns at once")

    run(body)


# ---- UNIX sockets, accepted sockets --------------------------------------------------------------


@scenario
def unix_server_connection_order():
    async def body(loop):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.sock")
            made = []

            def factory():
                p = Rec(loop, "server")
                made.append(p)
                return p

            srv = await loop.create_unix_server(factory, path)
            say("sockets", len(srv.sockets), "file exists", os.path.exists(path))
            cp = Rec(loop, "client")
            await loop.create_unix_connection(lambda: cp, path)
            while not made:
                await asyncio.sleep(0.001)
            sp = made[0]
            await sp.made
            say("client peername is the path", cp.t.get_extra_info("peername") == path)
            say("server sockname is the path", sp.t.get_extra_info("sockname") == path)
            sp.on_data = lambda d: sp.t.write(d + b"!")
            sp.eof_result = True
            sp.on_eof = lambda: (sp.t.write(b"bye"), sp.t.close(), True)[-1]
            cp.t.write(b"hi")
            while cp.data != b"hi!":
                await asyncio.sleep(0.001)
            cp.t.write_eof()
            await cp.lost
            await sp.lost
            say("client got", cp.data.decode())
            srv.close()
            await srv.wait_closed()
            say("serving", srv.is_serving())
            sp.dump()
            cp.dump()

    run(body)


@scenario
def connect_accepted_socket_socketpair():
    async def body(loop):
        a, b = socket.socketpair()
        b.setblocking(True)
        b.sendall(b"early")  # waiting before the transport exists
        p = Rec(loop, "accepted")
        t, proto = await loop.connect_accepted_socket(lambda: p, a)
        say("returned after connection_made", p.made.done(), "same protocol", proto is p)
        await asyncio.sleep(0.02)
        t.write(b"reply")
        say("peer got", b.recv(100).decode())
        b.shutdown(socket.SHUT_WR)
        await p.eof
        await p.lost
        b.close()
        say("got", p.data.decode())
        p.dump()

    run(body)


# ---- Datagrams ------------------------------------------------------------------------------------


class Dgram(asyncio.DatagramProtocol):
    def __init__(self, loop, name):
        self.name = name
        self.events = []
        self.got = []
        self.lost = loop.create_future()
        self.on_datagram = None

    def connection_made(self, t):
        self.t = t
        self.events.append("connection_made")

    def datagram_received(self, data, addr):
        self.events.append("datagram_received " + data.decode())
        self.got.append((data, addr))
        if self.on_datagram:
            self.on_datagram(data, addr)

    def error_received(self, exc):
        self.events.append("error_received " + exc_name(exc))

    def connection_lost(self, exc):
        self.events.append("connection_lost " + exc_name(exc))
        self.lost.set_result(None)

    def dump(self):
        for e in self.events:
            say(self.name + ":", e)


async def wait_datagrams(p, n):
    for _ in range(2000):
        if len(p.got) >= n:
            return
        await asyncio.sleep(0.001)


@scenario
def datagram_received_order_and_reply():
    async def body(loop):
        st, sp = await loop.create_datagram_endpoint(lambda: Dgram(loop, "server"),
                                                     local_addr=("127.0.0.1", 0))
        saddr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(lambda: Dgram(loop, "client"),
                                                     remote_addr=saddr)
        say("client peername is the server", ct.get_extra_info("peername") == saddr)
        say("server peername", st.get_extra_info("peername"))
        sp.on_datagram = lambda data, addr: st.sendto(data.upper(), addr)
        for word in (b"one", b"two", b"three"):
            ct.sendto(word)
        await wait_datagrams(cp, 3)
        say("reply from the server's address", all(a == saddr for _, a in cp.got))
        say("server saw the client's address",
            all(a == ct.get_extra_info("sockname") for _, a in sp.got))
        try:
            ct.sendto(b"x", ("127.0.0.1", 9))
        except ValueError as e:
            say("sendto elsewhere on a connected endpoint:", type(e).__name__)
        ct.close()
        st.close()
        await cp.lost
        await sp.lost
        sp.dump()
        cp.dump()

    run(body)


@scenario
def datagram_connected_error_received():
    async def body(loop):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()
        probe.close()  # nobody listens there now
        t, p = await loop.create_datagram_endpoint(lambda: Dgram(loop, "client"),
                                                   remote_addr=dead)
        t.sendto(b"anyone")
        await asyncio.sleep(0.05)
        say("closing after the error", t.is_closing())
        t.close()
        await p.lost
        p.dump()

    run(body)


@scenario
def datagram_sendto_after_close():
    async def body(loop):
        rt, rp = await loop.create_datagram_endpoint(lambda: Dgram(loop, "receiver"),
                                                     local_addr=("127.0.0.1", 0))
        raddr = rt.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(lambda: Dgram(loop, "connected"),
                                                     remote_addr=raddr)
        ut, up = await loop.create_datagram_endpoint(lambda: Dgram(loop, "unconnected"),
                                                     local_addr=("127.0.0.1", 0))
        ct.close()
        ct.sendto(b"c-after-close")  # dropped: a connected endpoint counts it
        ut.close()
        ut.sendto(b"u-after-close", raddr)  # the socket is still open until connection_lost
        say("closing", ct.is_closing(), ut.is_closing())
        await cp.lost
        await up.lost
        await asyncio.sleep(0.02)
        rt.close()
        await rp.lost
        rp.dump()
        cp.dump()
        up.dump()

    run(body)


@scenario
def datagram_abort_and_buffer_size():
    async def body(loop):
        t, p = await loop.create_datagram_endpoint(lambda: Dgram(loop, "ep"),
                                                   local_addr=("127.0.0.1", 0))
        say("buffer", t.get_write_buffer_size(), "closing", t.is_closing())
        t.abort()
        say("closing", t.is_closing(), "lost yet", p.lost.done())
        t.abort()
        t.close()
        await p.lost
        await asyncio.sleep(0.01)
        p.dump()

    run(body)


# ---- Pipes ----------------------------------------------------------------------------------------


@scenario
def read_pipe_eof_then_connection_lost():
    async def body(loop):
        r, w = os.pipe()
        os.write(w, b"abc")
        os.close(w)
        p = Rec(loop, "reader")

        def eof():
            loop.call_soon(lambda: p.log("scheduled by eof_received"))
            p.log("closing in eof_received", p.t.is_closing())
            return True  # ignored by a read pipe

        p.on_eof = eof
        t, _ = await loop.connect_read_pipe(lambda: p, os.fdopen(r, "rb", 0))
        say("pipe extra present", t.get_extra_info("pipe") is not None)
        await p.lost
        await asyncio.sleep(0)
        say("got", p.data.decode(), "closing", t.is_closing())
        p.dump()

    run(body)


@scenario
def read_pipe_pause_resume():
    async def body(loop):
        r, w = os.pipe()
        p = Rec(loop, "reader")
        t, _ = await loop.connect_read_pipe(lambda: p, os.fdopen(r, "rb", 0))
        t.pause_reading()
        t.pause_reading()  # twice: nothing more
        os.write(w, b"xyz")
        await asyncio.sleep(0.03)
        say("while paused: got", repr(p.data.decode()))
        t.resume_reading()
        t.resume_reading()
        while p.data != b"xyz":
            await asyncio.sleep(0.001)
        os.close(w)
        await p.lost
        t.resume_reading()  # after the close: nothing
        say("got", p.data.decode(), "closing", t.is_closing())
        p.dump()

    run(body)


class PipeWriter(asyncio.BaseProtocol):
    def __init__(self, loop):
        self.events = []
        self.lost = loop.create_future()

    def connection_made(self, t):
        self.t = t
        self.events.append("connection_made")

    def connection_lost(self, exc):
        self.events.append("connection_lost " + exc_name(exc))
        self.lost.set_result(None)

    def pause_writing(self):
        self.events.append("pause_writing")

    def resume_writing(self):
        self.events.append("resume_writing")

    def dump(self):
        for e in self.events:
            say("writer:", e)


@scenario
def write_pipe_reader_closed_empty_buffer():
    async def body(loop):
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: PipeWriter(loop), os.fdopen(w, "wb", 0))
        say("can_write_eof", t.can_write_eof(), "pipe extra present",
            t.get_extra_info("pipe") is not None)
        t.write(b"hello")
        say("reader got", os.read(r, 100).decode())
        os.close(r)
        await p.lost
        say("closing", t.is_closing())
        t.write(b"ignored")
        p.dump()

    run(body)


@scenario
def write_pipe_reader_closed_with_buffer():
    async def body(loop):
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: PipeWriter(loop), os.fdopen(w, "wb", 0))
        t.write(b"z" * 100000)  # more than the pipe holds
        say("buffered", t.get_write_buffer_size() > 0)
        os.close(r)
        await p.lost
        say("buffered after", t.get_write_buffer_size())
        p.dump()

    run(body)


@scenario
def write_pipe_write_to_closed_reader():
    async def body(loop):
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: PipeWriter(loop), os.fdopen(w, "wb", 0))
        os.close(r)
        t.write(b"nobody")  # EPIPE at once, before the loop sees the reader gone
        say("closing", t.is_closing(), "lost yet", p.lost.done())
        t.write(b"more")  # counted, not sent
        await p.lost
        p.dump()

    run(body)


@scenario
def write_pipe_flow_control_and_close_flushes():
    async def body(loop):
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: PipeWriter(loop), os.fdopen(w, "wb", 0))
        t.set_write_buffer_limits(high=1000, low=100)
        say("limits", t.get_write_buffer_limits())
        t.write(b"q" * 70000)
        say("events", *p.events)
        t.close()
        say("closing", t.is_closing(), "lost yet", p.lost.done())
        os.set_blocking(r, False)
        got = 0
        while got < 70000:
            try:
                got += len(os.read(r, 1 << 20))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        await p.lost
        say("reader got", got, "then eof", os.read(r, 10) == b"")
        os.close(r)
        p.dump()

    run(body)


@scenario
def write_pipe_write_eof_then_connection_lost():
    async def body(loop):
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: PipeWriter(loop), os.fdopen(w, "wb", 0))
        t.write(b"data")
        t.write_eof()
        say("closing", t.is_closing(), "lost yet", p.lost.done())
        t.write(b"after")  # ignored
        await asyncio.sleep(0)
        say("lost after one iteration", p.lost.done())
        await p.lost
        say("reader got", os.read(r, 100).decode(), "then eof", os.read(r, 10) == b"")
        os.close(r)
        p.dump()

    run(body)


# ---- More: closing early, failing factories and protocols -------------------------------------------


@scenario
def tcp_close_in_connection_made():
    async def body(loop):
        made = []

        def factory():
            p = Rec(loop, "server")
            made.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        cp = Rec(loop, "client")
        cp.on_made = lambda t: (t.write(b"last words"), t.close())
        t, _ = await loop.create_connection(lambda: cp, "127.0.0.1", port)
        say("create_connection returned; lost already", cp.lost.done(), "closing", t.is_closing())
        while not made:
            await asyncio.sleep(0.001)
        await made[0].lost
        say("server got", made[0].data.decode())
        made[0].dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def server_protocol_factory_raises():
    async def body(loop):
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx["message"]))
        made = []

        def factory():
            if not made:
                made.append(None)
                raise RuntimeError("no protocol for you")
            p = Rec(loop, "server")
            made.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        c1 = Rec(loop, "first")
        await loop.create_connection(lambda: c1, "127.0.0.1", port)
        await c1.lost
        say("still serving", srv.is_serving())
        c2 = Rec(loop, "second")
        await loop.create_connection(lambda: c2, "127.0.0.1", port)
        while len(made) < 2:
            await asyncio.sleep(0.001)
        await made[1].made
        await finish(srv, c2, made[1])
        say("exception handler calls", len(contexts))
        c1.dump()
        c2.dump()

    run(body)


@scenario
def tcp_eof_received_exception_is_fatal():
    async def body(loop):
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        srv, sp, cp = await tcp_setup(loop)

        def boom():
            raise ValueError("bad eof")

        sp.on_eof = boom
        cp.t.write_eof()
        await sp.lost
        await cp.lost
        for ctx in contexts:
            say("handler:", ctx["message"], type(ctx["exception"]).__name__, ctx["exception"])
        sp.dump()
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


class EmptyBuffer(asyncio.BufferedProtocol):
    def __init__(self, loop):
        self.events = []
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, t):
        self.events.append("connection_made")
        self.made.set_result(None)

    def get_buffer(self, sizehint):
        self.events.append("get_buffer")
        return bytearray()

    def buffer_updated(self, nbytes):
        self.events.append("buffer_updated")

    def connection_lost(self, exc):
        self.events.append("connection_lost " + exc_name(exc))
        self.lost.set_result(None)


@scenario
def buffered_protocol_empty_buffer_is_fatal():
    async def body(loop):
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        made = []

        def factory():
            p = EmptyBuffer(loop)
            made.append(p)
            return p

        srv = await loop.create_server(factory, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        cp = Rec(loop, "client")
        await loop.create_connection(lambda: cp, "127.0.0.1", port)
        cp.t.write(b"data")
        while not made:
            await asyncio.sleep(0.001)
        await made[0].lost
        await cp.lost
        for ctx in contexts:
            say("handler:", ctx["message"], type(ctx["exception"]).__name__, ctx["exception"])
        for e in made[0].events:
            say("server:", e)
        cp.dump()
        srv.close()
        await srv.wait_closed()

    run(body)


@scenario
def unix_connection_errors():
    async def body(loop):
        with tempfile.TemporaryDirectory() as d:
            try:
                await loop.create_unix_connection(lambda: Rec(loop, "c"), os.path.join(d, "none"))
            except OSError as e:
                say("missing path:", type(e).__name__)
            stale = os.path.join(d, "stale")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(stale)
            s.close()  # the file stays, nobody listens behind it
            try:
                await loop.create_unix_connection(lambda: Rec(loop, "c"), stale)
            except OSError as e:
                say("stale socket file:", type(e).__name__)
            with open(os.path.join(d, "plain"), "w"):
                pass
            try:
                await loop.create_unix_server(lambda: Rec(loop, "s"), os.path.join(d, "plain"))
            except OSError as e:
                say("server on a regular file:", type(e).__name__)
            srv = await loop.create_unix_server(lambda: Rec(loop, "s"), stale)
            say("server on the stale socket file: sockets", len(srv.sockets))
            srv.close()
            await srv.wait_closed()

    run(body)


@scenario
def pipes_refuse_regular_files():
    async def body(loop):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "f")
            with open(path, "wb"):
                pass
            for what, connect, mode in (("read", loop.connect_read_pipe, "rb"),
                                        ("write", loop.connect_write_pipe, "wb")):
                f = open(path, mode, 0)
                try:
                    await connect(lambda: Rec(loop, "p"), f)
                    say(what, "pipe on a regular file: accepted")
                except ValueError as e:
                    say(what, "pipe on a regular file:", type(e).__name__, e)
                f.close()

    run(body)


@scenario
def datagram_empty_datagram_is_received():
    async def body(loop):
        t, p = await loop.create_datagram_endpoint(lambda: Dgram(loop, "ep"),
                                                   local_addr=("127.0.0.1", 0))
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.sendto(b"", t.get_extra_info("sockname"))
        raw.sendto(b"after", t.get_extra_info("sockname"))
        await wait_datagrams(p, 2)
        say("lengths", *[len(d) for d, _ in p.got])
        raw.close()
        t.close()
        await p.lost
        p.dump()

    run(body)


@scenario
def write_pipe_abort_with_buffer():
    async def body(loop):
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: PipeWriter(loop), os.fdopen(w, "wb", 0))
        t.write(b"w" * 100000)
        say("buffered", t.get_write_buffer_size())
        t.abort()
        say("after abort: buffered", t.get_write_buffer_size(), "closing", t.is_closing(),
            "lost yet", p.lost.done())
        t.write(b"more")
        await p.lost
        got = 0
        while True:
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            got += len(chunk)
        os.close(r)
        say("reader got", got)
        p.dump()

    run(body)



@scenario
def protocol_factory_then_connection_made_order():
    async def body(loop):
        logs = {"server": [], "client": []}
        protos = {}

        def ticks(side, n):
            logs[side].append(f"tick {n}")
            if n < 3:
                loop.call_soon(ticks, side, n + 1)

        def factory(side):
            logs[side].append("factory")
            loop.call_soon(ticks, side, 1)
            p = Rec(loop, side)
            p.on_made = lambda t: logs[side].append("connection_made")
            protos[side] = p
            return p

        srv = await loop.create_server(lambda: factory("server"), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        await loop.create_connection(lambda: factory("client"), "127.0.0.1", port)
        logs["client"].append("create_connection returned")
        await asyncio.sleep(0.05)
        await finish(srv, protos["client"], protos["server"])
        for side in ("server", "client"):
            for e in logs[side]:
                say(side + ":", e)

    run(body)


@scenario
def read_pipe_close_with_data_pending():
    async def body(loop):
        r, w = os.pipe()
        p = Rec(loop, "reader")
        t, _ = await loop.connect_read_pipe(lambda: p, os.fdopen(r, "rb", 0))
        os.write(w, b"unread")
        t.close()
        say("closing", t.is_closing(), "lost yet", p.lost.done())
        t.close()
        await p.lost
        try:
            os.write(w, b"x")
            say("write after the reader closed: accepted")
        except BrokenPipeError:
            say("write after the reader closed: BrokenPipeError")
        os.close(w)
        say("got", repr(p.data.decode()))
        p.dump()

    run(body)


if __name__ == "__main__":
    main()
