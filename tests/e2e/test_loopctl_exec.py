"""loopctl's subprocess bridges end to end: `echo-server --exec CMD` (each client joined to a new
child, as `ncat -l -c` does) and `loopctl exec CMD --connect ENDPOINT` (socat EXEC:), with Python
sockets as the peers. Every child a test starts is checked gone (reaped, not a zombie)."""
import hashlib
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from loopctl_testlib import LOOPCTL, Server, main, parse_jsonl, run
from trace_schema import check_trace

TIMEOUT = 20  # seconds: the bound on every socket operation and wait


def connect(port):
    c = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    c.settimeout(TIMEOUT)
    return c


def read_all(sock):
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_line(sock):
    line = b""
    while not line.endswith(b"\n"):
        data = sock.recv(1)
        if not data:
            break
        line += data
    return line


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid, timeout=TIMEOUT):
    """True once `pid` no longer exists (reaped: a zombie still answers kill(pid, 0))."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def reset(sock):
    """Closes with a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class PeerServer:
    """A one-connection Python TCP (or unix) server for `loopctl exec`: `handler(conn)` runs in a
    thread; its return value is `result`."""

    def __init__(self, handler, unix_path=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.endpoint = "unix:" + unix_path
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.endpoint = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(1)
        self.sock.settimeout(TIMEOUT)
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._serve, args=(handler,), daemon=True)
        self.thread.start()

    def _serve(self, handler):
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                self.result = handler(conn)
        except Exception as e:  # reported by join()
            self.error = e

    def join(self):
        self.thread.join(TIMEOUT)
        self.sock.close()
        if self.error:
            raise self.error
        return self.result


class EchoServerExec(unittest.TestCase):
    def test_round_trip_through_tr(self):
        with Server("echo-server", "--port", "0", "--exec", "tr a-z A-Z") as srv:
            with connect(srv.port) as c:
                c.sendall(b"hello, child\n")
                c.shutdown(socket.SHUT_WR)  # tr ends at its stdin's EOF
                self.assertEqual(read_all(c), b"HELLO, CHILD\n")
            code, _, err = srv.stop()
            self.assertEqual(code, 0, err)

    def test_unix_socket(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s")
            with Server("echo-server", "--unix", path, "--exec", "cat") as srv:
                self.assertEqual(srv.endpoints, ["unix:" + path])
                with socket.socket(socket.AF_UNIX) as c:
                    c.settimeout(TIMEOUT)
                    c.connect(path)
                    c.sendall(b"over unix")
                    got = b""
                    while len(got) < 9:  # cat answers before our EOF
                        got += c.recv(100)
                    self.assertEqual(got, b"over unix")
                    c.shutdown(socket.SHUT_WR)
                    self.assertEqual(read_all(c), b"")
                self.assertEqual(srv.stop()[0], 0)

    def test_child_output_larger_than_the_pipe_and_socket_buffers(self):
        # 3 MB while the client does not read at first: the server stops reading the child's
        # pipe, the child blocks; then every byte arrives, in order.
        n = 3000000
        expect = (b"abcdefgh\n" * (n // 9 + 1))[:n]
        with Server("echo-server", "--port", "0", "--exec", "yes abcdefgh | head -c %d" % n) as srv:
            with connect(srv.port) as c:
                time.sleep(0.5)
                got = read_all(c)
            self.assertEqual(len(got), n)
            self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(expect).hexdigest())
            self.assertEqual(srv.stop()[0], 0)

    def test_client_input_faster_than_the_child_reads(self):
        # The child sleeps before reading: its stdin pipe fills, the server stops reading us.
        data = os.urandom(2000000)
        with Server("echo-server", "--port", "0", "--exec", "sleep 0.5; sha256sum") as srv:
            with connect(srv.port) as c:
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)
                got = read_all(c)
            self.assertEqual(got.split()[0].decode(), hashlib.sha256(data).hexdigest())
            self.assertEqual(srv.stop()[0], 0)

    def test_child_that_exits_without_reading_its_stdin(self):
        # The child closes its stdin at once and exits a little later: what the client sends
        # then goes nowhere (the pipe's EPIPE kills neither the server nor the connection).
        cmd = "exec 0<&-; echo early; sleep 0.3"
        with Server("echo-server", "--port", "0", "--exec", cmd) as srv:
            with connect(srv.port) as c:
                self.assertEqual(read_line(c), b"early\n")
                c.sendall(b"x" * 200000)
                self.assertEqual(read_all(c), b"")
            # A child that is gone before the client says anything.
            with connect(srv.port) as c:
                pass
            with Server("echo-server", "--port", "0", "--exec", "true") as srv2:
                with connect(srv2.port) as c:
                    self.assertEqual(read_all(c), b"")
                    try:
                        c.sendall(b"late")  # the server closed: a reset is fine, a hang is not
                    except OSError:
                        pass
                self.assertEqual(srv2.stop()[0], 0)
            # The server still serves.
            with connect(srv.port) as c:
                self.assertEqual(read_line(c), b"early\n")
            self.assertEqual(srv.stop()[0], 0)

    def test_client_reset_terminates_the_child(self):
        with Server("echo-server", "--port", "0", "--exec", "echo $$; exec sleep 60") as srv:
            c = connect(srv.port)
            pid = int(read_line(c))
            self.assertTrue(pid_alive(pid))
            reset(c)
            self.assertTrue(wait_gone(pid), "the child %d outlived its client" % pid)
            self.assertEqual(srv.stop()[0], 0)

    def test_client_close_mid_stream_terminates_the_child(self):
        # A plain close: the server only sees EOF, then its next write is refused (RST).
        cmd = "echo $$; while :; do echo tick; sleep 0.05; done"
        with Server("echo-server", "--port", "0", "--exec", cmd) as srv:
            c = connect(srv.port)
            pid = int(read_line(c))
            self.assertEqual(read_line(c), b"tick\n")
            c.close()
            self.assertTrue(wait_gone(pid), "the child %d outlived its client" % pid)
            self.assertEqual(srv.stop()[0], 0)

    def test_two_clients_get_two_children(self):
        with Server("echo-server", "--port", "0", "--exec", "echo $$; cat") as srv:
            with connect(srv.port) as a, connect(srv.port) as b:
                pa, pb = int(read_line(a)), int(read_line(b))
                self.assertNotEqual(pa, pb)
                a.sendall(b"to a\n")
                b.sendall(b"to b\n")
                self.assertEqual(read_line(b), b"to b\n")
                self.assertEqual(read_line(a), b"to a\n")
                a.shutdown(socket.SHUT_WR)
                self.assertEqual(read_all(a), b"")
                self.assertTrue(wait_gone(pa))
                self.assertTrue(pid_alive(pb))  # b's child is still there
                b.shutdown(socket.SHUT_WR)
                self.assertEqual(read_all(b), b"")
                self.assertTrue(wait_gone(pb))
            self.assertEqual(srv.stop()[0], 0)

    def test_shutdown_terminates_and_reaps_the_children(self):
        with Server("echo-server", "--port", "0", "--exec", "echo $$; exec sleep 60") as srv:
            c1, c2 = connect(srv.port), connect(srv.port)
            pids = [int(read_line(c1)), int(read_line(c2))]
            t0 = time.monotonic()
            code, _, err = srv.stop(signal.SIGTERM)
            self.assertEqual(code, 0, err)
            self.assertLess(time.monotonic() - t0, 5)  # not the whole grace period
            for c in (c1, c2):
                self.assertEqual(read_all(c), b"")
                c.close()
            for pid in pids:
                self.assertTrue(wait_gone(pid, 2), "child %d left behind" % pid)

    def test_a_child_that_ignores_sigterm_is_killed(self):
        # SIGTERM first; SIGKILL 2 s later (ExecBridge::kill_after), at shutdown and when the
        # client leaves.
        cmd = "trap '' TERM; echo $$; exec sleep 60"
        with Server("echo-server", "--port", "0", "--exec", cmd) as srv:
            c = connect(srv.port)
            pid = int(read_line(c))
            reset(c)
            self.assertTrue(wait_gone(pid), "child %d outlived its client" % pid)
            with connect(srv.port) as c:
                pid = int(read_line(c))
                code, _, err = srv.stop(signal.SIGTERM)
                self.assertEqual(code, 0, err)
                self.assertEqual(read_all(c), b"")
            self.assertTrue(wait_gone(pid, 2), "child %d left behind" % pid)

    def test_workers(self):
        with Server("echo-server", "--port", "0", "--workers", "2", "--exec", "tr a-z A-Z") as srv:
            for i in range(6):
                with connect(srv.port) as c:
                    c.sendall(b"client %d" % i)
                    c.shutdown(socket.SHUT_WR)
                    self.assertEqual(read_all(c), b"CLIENT %d" % i)
            self.assertEqual(srv.stop()[0], 0)
        # Children of every worker's loop are terminated when their clients leave.
        with Server("echo-server", "--port", "0", "--workers", "2", "--exec",
                    "echo $$; exec sleep 60") as srv:
            clients = [connect(srv.port) for _ in range(6)]
            pids = [int(read_line(c)) for c in clients]
            for c in clients:
                reset(c)
            for pid in pids:
                self.assertTrue(wait_gone(pid), "child %d outlived its client" % pid)
            self.assertEqual(srv.stop()[0], 0)

    @unittest.skipUnless(shutil.which("openssl"), "needs the openssl CLI")
    def test_tls(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                            key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                           check=True, capture_output=True, timeout=60)
            with Server("echo-server", "--port", "0", "--cert", cert, "--key", key, "--exec",
                        "echo $$; cat") as srv:
                ctx = ssl.create_default_context(cafile=cert)
                with ctx.wrap_socket(connect(srv.port), server_hostname="localhost") as c:
                    pid = int(read_line(c))
                    c.sendall(b"over tls\n")
                    self.assertEqual(read_line(c), b"over tls\n")
                # TLS cannot half-close: the client's close ends the child.
                self.assertTrue(wait_gone(pid))
                # loopctl exec speaks TLS too: its child says ping to a `cat` child of
                # the server, reads the echo and reports it on stderr.
                r = run("exec", "echo ping; read -r pid; read -r line; echo \"got $line\" >&2", "--connect",
                        "127.0.0.1:%d" % srv.port, "--cafile", cert, "--server-hostname",
                        "localhost", timeout=TIMEOUT)
                self.assertEqual((r.returncode, r.stderr), (0, "got ping\n"))
                self.assertEqual(srv.stop()[0], 0)

    def test_trace_names_the_child(self):
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "t.jsonl")
            with Server("--trace=" + trace, "echo-server", "--port", "0", "--exec",
                        "echo $$; exit 7") as srv:
                with connect(srv.port) as c:
                    pid = int(read_line(c))
                    self.assertEqual(read_all(c), b"")
                self.assertTrue(wait_gone(pid))
                self.assertEqual(srv.stop()[0], 0)
            with open(trace) as f:
                recs = parse_jsonl(f.read())
            check_trace(self, recs)
            started = [r for r in recs if r["ev"] == "subprocess_started"]
            exited = [r for r in recs if r["ev"] == "subprocess_exited"]
            self.assertEqual([r["pid"] for r in started], [pid])
            self.assertEqual([(r["pid"], r["returncode"]) for r in exited], [(pid, 7)])
            piped = [r for r in recs if r["ev"] == "pipe_data_received"]
            self.assertTrue(piped)
            self.assertTrue(all(r["pid"] == pid and r["fd"] == 1 for r in piped))


class ExecClient(unittest.TestCase):
    def test_both_directions_and_the_exit_status(self):
        def peer(conn):
            conn.sendall(b"from the peer\n")
            conn.shutdown(socket.SHUT_WR)  # the child's `cat` then ends
            return read_all(conn)

        srv = PeerServer(peer)
        r = run("exec", "cat; echo done; exit 3", "--connect", srv.endpoint, timeout=TIMEOUT)
        self.assertEqual(srv.join(), b"from the peer\ndone\n")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(r.stdout, "")

    def test_unix_endpoint_and_large_transfers(self):
        data = os.urandom(1500000)

        def peer(conn):
            # Sending and reading at once: the echo would otherwise fill every buffer between
            # us and stop both sides (flow control working as it should).
            def send():
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            got = read_all(conn)
            sender.join(TIMEOUT)
            return got

        with tempfile.TemporaryDirectory() as d:
            srv = PeerServer(peer, unix_path=os.path.join(d, "s"))
            # The child echoes everything back through a slow start (its stdin pipe fills).
            r = run("exec", "sleep 0.3; cat", "--connect", srv.endpoint, timeout=TIMEOUT)
            got = srv.join()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(got), len(data))
        self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(data).digest())

    def test_child_killed_by_a_signal(self):
        srv = PeerServer(read_all)
        r = run("exec", "echo bye; kill -KILL $$", "--connect", srv.endpoint, timeout=TIMEOUT)
        self.assertEqual(srv.join(), b"bye\n")
        self.assertEqual(r.returncode, 128 + signal.SIGKILL, r.stderr)

    def test_peer_reset_terminates_the_child(self):
        pids = []

        def peer(conn):
            pids.append(int(read_line(conn)))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        srv = PeerServer(peer)
        r = run("exec", "echo $$; exec sleep 60", "--connect", srv.endpoint, timeout=TIMEOUT)
        srv.join()
        self.assertEqual(r.returncode, 128 + signal.SIGTERM, r.stderr)
        self.assertFalse(pid_alive(pids[0]))

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there now
        r = run("exec", "cat", "--connect", "127.0.0.1:%d" % port, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("loopctl: error: cannot connect to 127.0.0.1:%d"
                                            % port), r.stderr)
        self.assertEqual(r.stdout, "")

    def test_usage_errors(self):
        self.assertEqual(run("exec", "cat").returncode, 2)  # no --connect
        r = run("exec", "cat", "--connect", "127.0.0.1:99999")
        self.assertEqual(r.returncode, 2)
        self.assertIn("loopctl: error:", r.stderr)

    def test_interrupted(self):
        got_pid = threading.Event()
        pids = []

        def peer(conn):
            pids.append(int(read_line(conn)))
            got_pid.set()
            return read_all(conn)

        srv = PeerServer(peer)
        p = subprocess.Popen([LOOPCTL, "exec", "echo $$; exec sleep 60", "--connect",
                              srv.endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertTrue(got_pid.wait(TIMEOUT))
            p.send_signal(signal.SIGINT)  # the child is terminated, loopctl exits 128+2
            out, err = p.communicate(timeout=TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        srv.join()
        self.assertEqual(p.returncode, 128 + signal.SIGINT, err)
        self.assertTrue(wait_gone(pids[0], 2))

    def test_trace(self):
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "t.jsonl")
            srv = PeerServer(read_all)
            r = run("--trace=" + trace, "exec", "echo $$; exit 5", "--connect", srv.endpoint,
                    timeout=TIMEOUT)
            pid = int(srv.join())
            self.assertEqual(r.returncode, 5, r.stderr)
            with open(trace) as f:
                recs = parse_jsonl(f.read())
        check_trace(self, recs)
        started = [r for r in recs if r["ev"] == "subprocess_started"]
        exited = [r for r in recs if r["ev"] == "subprocess_exited"]
        self.assertEqual([(r["pid"], r["program"]) for r in started], [(pid, "echo $$; exit 5")])
        self.assertEqual([(r["pid"], r["returncode"]) for r in exited], [(pid, 5)])
        self.assertIn((pid, 1), [(r["pid"], r["fd"]) for r in recs
                                 if r["ev"] == "pipe_data_received"])


if __name__ == "__main__":
    main()
