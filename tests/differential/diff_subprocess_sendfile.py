"""Differential scenarios of subprocesses and sendfile (the libloop half:
diff_subprocess_sendfile.cpp).

A child's pipes are closed and its exit is caused in an order the parent controls (a control
pipe as its stdin, or a signal once every pipe is closed): the kernel never decides which of
two events the loop hears of first."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from differential import main, say, scenario  # noqa: E402

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


def run(coro_fn, debug=False):
    lp = asyncio.new_event_loop()
    lp.set_debug(debug)
    asyncio.set_event_loop(lp)  # Python 3.7's child watcher attaches to it
    try:
        lp.run_until_complete(coro_fn())
    finally:
        asyncio.set_event_loop(None)
        lp.close()


def say_exc(what, e):
    say(what, type(e).__name__, str(e))


def say_oserror(what, e):
    say(what, type(e).__name__, e.errno)


def socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def try_recv(s, n=100):
    try:
        return s.recv(n)
    except BlockingIOError:
        return "nothing"


def temp_file(data):
    f = tempfile.TemporaryFile()
    f.write(data)
    f.seek(0)
    return f


def pipe_name(t, fd):
    return "None" if t.get_pipe_transport(fd) is None else "pipe"


class Logger(asyncio.SubprocessProtocol):
    """Says every callback, with the returncode the transport reports at that moment."""

    def __init__(self, done):
        self.done = done
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        say("connection_made", transport.get_returncode(),
            pipe_name(transport, 0), pipe_name(transport, 1), pipe_name(transport, 2))

    def pipe_data_received(self, fd, data):
        say("pipe_data_received", fd, data)

    def pipe_connection_lost(self, fd, exc):
        say("pipe_connection_lost", fd, exc)

    def process_exited(self):
        say("process_exited", self.transport.get_returncode())

    def connection_lost(self, exc):
        say("connection_lost", exc, self.transport.get_returncode())
        self.done.set_result(None)


# ---- Subprocess transports -----------------------------------------------------------------

@scenario
def exec_callback_order_driven_by_a_control_pipe():
    # The child advances one step per line on its stdin (a pipe the parent writes directly).
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        ctl_r, ctl_w = os.pipe()

        class P(Logger):
            def connection_made(self, transport):
                super().connection_made(transport)
                os.write(ctl_w, b"1\n")

            def pipe_connection_lost(self, fd, exc):
                super().pipe_connection_lost(fd, exc)
                os.write(ctl_w, b"%d\n" % (fd + 1))

        script = "read a; echo out; exec 1>&-; read b; echo err >&2; exec 2>&-; read c; exit 3"
        t, p = await lp.subprocess_exec(lambda: P(done), "/bin/sh", "-c", script,
                                        stdin=ctl_r, stdout=PIPE, stderr=PIPE)
        os.close(ctl_r)
        say("returned", t.get_pid() > 0, t.get_returncode())
        await done
        say("after", t.get_returncode(), pipe_name(t, 1))
        t.close()
        os.close(ctl_w)
    run(body)


@scenario
def exec_without_pipes_exit_code():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        t, p = await lp.subprocess_exec(lambda: Logger(done), "/bin/sh", "-c", "exit 7",
                                        stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        say("returned", t.get_returncode())
        await done
        say("after", t.get_returncode())
        t.close()
    run(body)


@scenario
def shell_unknown_command_exits_127():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        t, p = await lp.subprocess_shell(lambda: Logger(done), "no_such_command_w7 arg",
                                         stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        await done
        say("after", t.get_returncode())
        t.close()
    run(body)


@scenario
def stdin_write_then_close():
    # The child echoes the first line, then reports the EOF the parent's close gives it.
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        class P(Logger):
            def connection_made(self, transport):
                super().connection_made(transport)
                stdin = transport.get_pipe_transport(0)
                stdin.write(b"hello\n")
                say("wrote", stdin.get_write_buffer_size())

            def pipe_data_received(self, fd, data):
                super().pipe_data_received(fd, data)
                if data == b"got hello\n":
                    stdin = self.transport.get_pipe_transport(0)
                    stdin.close()
                    say("stdin closing", stdin.is_closing())

            def pipe_connection_lost(self, fd, exc):
                super().pipe_connection_lost(fd, exc)
                if fd == 1:
                    self.transport.terminate()

        script = 'read line; echo "got $line"; read rest; echo "eof $?"; exec 1>&-; exec sleep 30'
        t, p = await lp.subprocess_exec(lambda: P(done), "/bin/sh", "-c", script,
                                        stdin=PIPE, stdout=PIPE, stderr=DEVNULL)
        await done
        say("after", t.get_returncode(), t.get_returncode() == -signal.SIGTERM)
        t.close()
    run(body)


@scenario
def stderr_to_stdout_shares_the_pipe():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        class P(Logger):
            out = b""
            fds = set()

            def pipe_data_received(self, fd, data):
                self.fds.add(fd)
                self.out += data

            def pipe_connection_lost(self, fd, exc):
                say("pipe_connection_lost", fd, exc, self.out, "data on", sorted(self.fds))
                self.transport.kill()

        script = "echo a; echo b >&2; echo c; exec 1>&- 2>&-; exec sleep 30"
        t, p = await lp.subprocess_exec(lambda: P(done), "/bin/sh", "-c", script,
                                        stdin=DEVNULL, stdout=PIPE, stderr=STDOUT)
        await done
        say("after", t.get_returncode() == -signal.SIGKILL)
        t.close()
    run(body)


@scenario
def signals_on_running_exited_and_finished_process():
    async def body():
        lp = asyncio.get_running_loop()
        for name, sig in (("send_signal", signal.SIGUSR1), ("terminate", signal.SIGTERM),
                          ("kill", signal.SIGKILL)):
            done = lp.create_future()

            def deliver(t):
                if name == "send_signal":
                    t.send_signal(signal.SIGUSR1)
                elif name == "terminate":
                    t.terminate()
                else:
                    t.kill()

            class P(Logger):
                def process_exited(self):
                    super().process_exited()
                    deliver(self.transport)
                    say("again in process_exited: no error")

                def connection_lost(self, exc):
                    deliver(self.transport)
                    say("again in connection_lost: no error")
                    super().connection_lost(exc)

            t, p = await lp.subprocess_exec(lambda: P(done), "/bin/sh", "-c", "exec sleep 30",
                                            stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
            deliver(t)
            say(name, "sent", t.get_returncode())
            await done
            say(name, "returncode is -signal", t.get_returncode() == -sig)
            try:
                deliver(t)
                say("after connection_lost: no error")
            except ProcessLookupError as e:
                say("after connection_lost:", type(e).__name__)
            t.close()
    run(body)


@scenario
def exec_spawn_errors():
    async def body():
        lp = asyncio.get_running_loop()
        calls = []

        def factory():
            calls.append(1)
            return asyncio.SubprocessProtocol()

        for label, program, cwd in (("missing", "/nonexistent_w7/prog", None),
                                    ("from PATH", "no_such_program_w7", None),
                                    ("not executable", "/etc/passwd", None),
                                    ("cwd missing", "/bin/true", "/nonexistent_w7_dir")):
            try:
                await lp.subprocess_exec(factory, program, cwd=cwd, stdin=DEVNULL,
                                         stdout=DEVNULL, stderr=DEVNULL)
                say("started?")
            except OSError as e:
                say_oserror(label, e)
            say("factory calls", len(calls))
    run(body)


@scenario
def stdin_broken_pipe_with_data_buffered():
    # The child takes one line and closes its stdin while a megabyte waits in the transport.
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        class P(Logger):
            def connection_made(self, transport):
                super().connection_made(transport)
                transport.get_pipe_transport(0).write(b"x\n" + b"y" * (1 << 20))

            def pipe_connection_lost(self, fd, exc):
                say("pipe_connection_lost", fd, type(exc).__name__)
                self.transport.kill()

        t, p = await lp.subprocess_exec(lambda: P(done), "/bin/sh", "-c",
                                        "read x; exec 0<&-; exec sleep 30",
                                        stdin=PIPE, stdout=DEVNULL, stderr=DEVNULL)
        await done
        say("after", t.get_returncode() == -signal.SIGKILL)
        t.close()
    run(body)


@scenario
def close_in_process_exited_while_a_grandchild_holds_the_pipes():
    # The child exits at once; a background cat keeps all three pipes open until stdin closes.
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        class P(Logger):
            def connection_made(self, transport):
                self.transport = transport  # the child may have exited already: no returncode

            def process_exited(self):
                super().process_exited()
                self.transport.close()
                say("closed", self.transport.is_closing())

        t, p = await lp.subprocess_exec(lambda: P(done), "/bin/sh", "-c",
                                        "exec 3<&0; cat <&3 & exit 5")
        await done
        say("after", t.get_returncode())
    run(body)


@scenario
def close_kills_a_running_process():
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()
        t, p = await lp.subprocess_exec(lambda: Logger(done), "/bin/sh", "-c", "exec sleep 30")
        t.close()
        say("closed", t.is_closing(), t.get_returncode())
        t.close()
        await done
        say("after", t.get_returncode() == -signal.SIGKILL)
    run(body)


# ---- asyncio.subprocess.Process ------------------------------------------------------------

@scenario
def process_communicate_with_cat():
    async def body():
        proc = await asyncio.create_subprocess_exec("/bin/cat", stdin=PIPE, stdout=PIPE,
                                                    stderr=DEVNULL)
        say("returncode", proc.returncode, proc.stderr is None)
        out, err = await proc.communicate(b"some data")
        say("communicate", out, err, proc.returncode)
    run(body)


@scenario
def process_shell_communicate_both_streams():
    async def body():
        proc = await asyncio.create_subprocess_shell("echo out; echo err >&2; exit 5",
                                                     stdin=DEVNULL, stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate()
        say("communicate", out, err, proc.returncode)
        rc = await proc.wait()
        say("wait again", rc)
    run(body)


@scenario
def process_readline_to_eof():
    async def body():
        proc = await asyncio.create_subprocess_shell("echo one; echo two", stdin=DEVNULL,
                                                     stdout=PIPE, stderr=DEVNULL)
        for _ in range(3):
            line = await proc.stdout.readline()
            say("line", line)
        rc = await proc.wait()
        say("wait", rc, proc.returncode)
    run(body)


@scenario
def process_signals_after_wait():
    async def body():
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 4", stdin=DEVNULL,
                                                    stdout=DEVNULL, stderr=DEVNULL)
        rc = await proc.wait()
        say("wait", rc, proc.returncode)
        for name in ("send_signal", "terminate", "kill"):
            try:
                if name == "send_signal":
                    proc.send_signal(signal.SIGUSR1)
                elif name == "terminate":
                    proc.terminate()
                else:
                    proc.kill()
                say(name, "no error")
            except ProcessLookupError as e:
                say(name, type(e).__name__)
    run(body)


@scenario
def process_communicate_child_ignores_input():
    async def body():
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exec 0<&-; exit 2",
                                                    stdin=PIPE, stdout=PIPE, stderr=DEVNULL)
        out, err = await proc.communicate(b"x" * 300000)
        say("communicate", out, err, proc.returncode)
    run(body)


@scenario
def process_drain_when_the_child_closes_stdin():
    # A megabyte waits in the transport when the child, after one line, closes its stdin.
    async def body():
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c",
                                                    "read x; exec 0<&-; exec sleep 30",
                                                    stdin=PIPE, stdout=DEVNULL, stderr=DEVNULL)
        proc.stdin.write(b"x\n" + b"y" * (1 << 20))
        for i in (1, 2):
            try:
                await proc.stdin.drain()
                say("drain", i, "ok")
            except Exception as e:
                say("drain", i, type(e).__name__)
        say("closing", proc.stdin.is_closing())
        proc.kill()
        rc = await proc.wait()
        say("wait", rc == -signal.SIGKILL)
    run(body)


# ---- sock_sendfile -------------------------------------------------------------------------

async def sock_sendfile_case(data, label, offset=0, count=None, start=0):
    lp = asyncio.get_running_loop()
    a, b = socketpair()
    with temp_file(data) as f:
        f.seek(start)
        try:
            n = await lp.sock_sendfile(a, f, offset, count)
            say(label, "sent", n, "position", f.tell(), "peer", try_recv(b))
        except Exception as e:
            say_exc(label, e)
            say(label, "position", f.tell())
    a.close()
    b.close()


@scenario
def sock_sendfile_results_offset_and_count():
    async def body():
        await sock_sendfile_case(b"0123456789", "whole")
        await sock_sendfile_case(b"", "empty")
        await sock_sendfile_case(b"0123456789", "offset 2 count 5", 2, 5)
        await sock_sendfile_case(b"0123456789", "offset 8 count 10", 8, 10)
        await sock_sendfile_case(b"0123456789", "offset 4", 4)
    run(body)


@scenario
def sock_sendfile_position_is_offset_plus_sent():
    async def body():
        await sock_sendfile_case(b"0123456789", "from 7, offset 0 count 2", 0, 2, start=7)
        await sock_sendfile_case(b"0123456789", "from 7, offset 20", 20, None, start=7)
        await sock_sendfile_case(b"0123456789", "from 3, offset 10 count 1", 10, 1, start=3)
    run(body)


@scenario
def sock_sendfile_bad_arguments():
    async def body():
        await sock_sendfile_case(b"0123456789", "count 0", 0, 0)
        lp = asyncio.get_running_loop()
        d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        d.setblocking(False)
        with temp_file(b"abc") as f:
            try:
                await lp.sock_sendfile(d, f)
            except Exception as e:
                say_exc("datagram", e)
        d.close()
    run(body)


@scenario
def sock_sendfile_blocking_socket_in_debug_mode():
    async def body():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with temp_file(b"abc") as f:
            try:
                await lp.sock_sendfile(a, f)
                say("sent?")
            except Exception as e:
                say_exc("blocking", e)
            say("position", f.tell())
        a.close()
        b.close()
    run(body, debug=True)


@scenario
def sock_sendfile_pipe_without_fallback():
    async def body():
        lp = asyncio.get_running_loop()
        a, b = socketpair()
        r, w = os.pipe()
        os.write(w, b"hello")
        os.close(w)
        with os.fdopen(r, "rb", buffering=0) as f:
            try:
                n = await lp.sock_sendfile(a, f, 0, 3, fallback=False)
                say("sent", n)
            except Exception as e:
                say_exc("pipe", e)
            say("peer", try_recv(b), "left in the pipe", f.read())
        a.close()
        b.close()
    run(body)


@scenario
def sock_sendfile_peer_gone_or_not_connected():
    async def body():
        lp = asyncio.get_running_loop()
        a, b = socketpair()
        b.close()
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.setblocking(False)
        for label, s in (("peer gone", a), ("not connected", u)):
            for fallback in (False, True):
                what = "%s, fallback %s" % (label, fallback)
                with temp_file(b"0123456789") as f:
                    try:
                        n = await lp.sock_sendfile(s, f, fallback=fallback)
                        say(what, "sent", n)
                    except asyncio.SendfileNotAvailableError as e:
                        say_exc(what, e)
                    except OSError as e:
                        say_oserror(what, e)
        u.close()
        a.close()
    run(body)


@scenario
def sock_sendfile_failed_fallback_position():
    # Nothing was sent: asyncio leaves the position where the fallback's reads took it.
    async def body():
        lp = asyncio.get_running_loop()
        a, b = socketpair()
        b.close()
        with temp_file(b"0123456789") as f:
            try:
                await lp.sock_sendfile(a, f, 2, 5)
            except OSError as e:
                say_oserror("peer gone", e)
            # Not the file position (README, "departs from asyncio on purpose").
        a.close()
    run(body)


@scenario
def sock_sendfile_large_file_to_a_reading_peer():
    async def body():
        lp = asyncio.get_running_loop()
        a, b = socketpair()
        size = 3 << 20
        data = bytes(range(256)) * (size // 256)

        async def reader():
            got = bytearray()
            while len(got) < size - 5:
                chunk = await lp.sock_recv(b, 65536)
                if not chunk:
                    break
                got += chunk
            return bytes(got)

        with temp_file(data) as f:
            task = lp.create_task(reader())
            n = await lp.sock_sendfile(a, f, 5)
            got = await task
            say("sent", n, "position", f.tell(), "received", len(got), got == data[5:])
        a.close()
        b.close()
    run(body)


@scenario
def sock_sendfile_cancelled_while_the_socket_is_full():
    # Nobody reads the peer: after its first sendfile(2) the call waits for room forever.
    async def body():
        lp = asyncio.get_running_loop()
        a, b = socketpair()
        with temp_file(b"z" * (8 << 20)) as f:
            f.seek(3)
            task = lp.create_task(lp.sock_sendfile(a, f, 0))
            for _ in range(5):
                await asyncio.sleep(0)
            say("done", task.done())
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                say("cancelled")
            # Not the file position (README, "departs from asyncio on purpose").
            say("peer got some", len(b.recv(100)) > 0)
        a.close()
        b.close()
    run(body)


# ---- loop.sendfile on a transport ----------------------------------------------------------

class Collector(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.data = b""

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        say("server got", self.data)
        self.done.set_result(None)


async def transport_case(body):
    lp = asyncio.get_running_loop()
    done = lp.create_future()
    server = await lp.create_server(lambda: Collector(done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t, p = await lp.create_connection(asyncio.Protocol, "127.0.0.1", port)
    await body(lp, t)
    if not t.is_closing():
        t.write_eof()
    await done
    t.close()
    server.close()
    await server.wait_closed()


@scenario
def loop_sendfile_between_writes():
    async def body(lp, t):
        with temp_file(b"0123456789") as f:
            t.write(b"head-")
            n = await lp.sendfile(t, f)
            say("sent", n, "position", f.tell(), "buffer", t.get_write_buffer_size(),
                "reading", t.is_reading())
            t.write(b"-tail")
    run(lambda: transport_case(body))


@scenario
def loop_sendfile_offset_count_and_position():
    async def body(lp, t):
        with temp_file(b"0123456789") as f:
            f.seek(9)
            n = await lp.sendfile(t, f, 3, 4)
            say("sent", n, "position", f.tell())
            n = await lp.sendfile(t, f, 8, 100)
            say("sent", n, "position", f.tell())
            n = await lp.sendfile(t, f, 50)
            say("sent", n, "position", f.tell())
    run(lambda: transport_case(body))


@scenario
def loop_sendfile_empty_file_without_fallback():
    async def body(lp, t):
        with temp_file(b"") as f:
            n = await lp.sendfile(t, f, fallback=False)
            say("sent", n, "position", f.tell())
        t.write(b"after")
    run(lambda: transport_case(body))


@scenario
def loop_sendfile_refusals():
    async def body(lp, t):
        with temp_file(b"0123456789") as f:
            try:
                await lp.sendfile(t, f, 0, 0)
            except Exception as e:
                say_exc("count 0", e)
            t.write(b"x")
            t.close()
            try:
                await lp.sendfile(t, f)
            except Exception as e:
                say_exc("closing", e)
            say("position", f.tell())
    run(lambda: transport_case(body))


@scenario
def loop_sendfile_write_while_in_progress():
    # 32 MiB through loopback take many iterations; the server runs on the same loop.
    async def body():
        lp = asyncio.get_running_loop()
        done = lp.create_future()

        class Counter(asyncio.Protocol):
            n = 0

            def data_received(self, data):
                self.n += len(data)

            def eof_received(self):
                say("server got", self.n)
                done.set_result(None)

        server = await lp.create_server(Counter, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t, p = await lp.create_connection(asyncio.Protocol, "127.0.0.1", port)
        with temp_file(b"s" * (32 << 20)) as f:
            task = lp.create_task(lp.sendfile(t, f))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            say("in progress", not task.done(), "reading", t.is_reading())
            try:
                t.write(b"mid")
                say("wrote")
            except Exception as e:
                say_exc("write", e)
            n = await task
            say("sent", n, "reading", t.is_reading())
        t.write(b"end")
        t.write_eof()
        await done
        t.close()
        server.close()
        await server.wait_closed()
    run(body)


if __name__ == "__main__":
    main()
