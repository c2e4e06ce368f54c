"""loopctl echo-server and echo-client end to end, with Python's socket and asyncio as the
real peers."""
import asyncio
import hashlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

from loopctl_testlib import LOOPCTL, Server, main, parse_jsonl, run


def recv_all(sock):
    chunks = []
    while True:
        c = sock.recv(1 << 16)
        if not c:
            return b"".join(chunks)
        chunks.append(c)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class EchoServer(unittest.TestCase):
    def test_out_of_descriptors_is_one_loopctl_line_and_it_serves_on(self):
        # With 24 descriptors the server runs out while 40 clients connect: it says so in
        # one `loopctl:` line per report (not the loop's multi-line dump with C++ type
        # names), and serves again once the clients are gone.
        import resource
        proc = subprocess.Popen(
            [LOOPCTL, "echo-server", "--port", "0"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24)))
        try:
            port = int(proc.stdout.readline().strip().rsplit(":", 1)[1])
            clients = [socket.create_connection(("127.0.0.1", port), timeout=10)
                       for _ in range(40)]
            time.sleep(0.3)  # the server accepts what it can and reports the rest
            for c in clients:
                c.close()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"still here")
                self.assertEqual(c.recv(100), b"still here")
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 0, err)
        lines = err.splitlines()
        self.assertTrue(lines, "no report of the failed accepts")
        for line in lines:
            self.assertRegex(line, r"^loopctl: .*Too many open files$")

    def test_listening_line_and_round_trip(self):
        with Server("echo-server", "--port", "0") as srv:
            self.assertRegex(srv.endpoints[0], r"^127\.0\.0\.1:\d+$")
            self.assertNotEqual(srv.port, 0)
            with socket.create_connection(("127.0.0.1", srv.port)) as c:
                c.sendall(b"hello")
                self.assertEqual(c.recv(100), b"hello")
            code, out, err = srv.stop()
            self.assertEqual(code, 0, err)
            self.assertEqual(err, "")

    def test_half_close_then_large_transfer_checked_by_hash(self):
        data = os.urandom(10 * 1024 * 1024)
        with Server("echo-server", "--port", "0") as srv:
            with socket.create_connection(("127.0.0.1", srv.port)) as c:
                got = []
                t = threading.Thread(target=lambda: got.append(recv_all(c)))
                t.start()
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)  # after our EOF the rest is echoed, then it closes
                t.join(60)
                self.assertEqual(hashlib.sha256(got[0]).hexdigest(), hashlib.sha256(data).hexdigest())
            self.assertEqual(srv.stop()[0], 0)

    def test_many_asyncio_clients_at_once(self):
        async def client(port, i):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            msg = (b"client %d " % i) * 100
            w.write(msg)
            echo = await r.readexactly(len(msg))
            w.close()
            await w.wait_closed()
            return echo == msg

        async def all_clients(port):
            return await asyncio.gather(*(client(port, i) for i in range(50)))

        with Server("echo-server", "--port", "0") as srv:
            self.assertTrue(all(asyncio.run(all_clients(srv.port))))
            self.assertEqual(srv.stop()[0], 0)

    def test_survives_a_client_that_resets_mid_transfer(self):
        with Server("echo-server", "--port", "0") as srv:
            c = socket.create_connection(("127.0.0.1", srv.port))
            c.sendall(os.urandom(4 * 1024 * 1024))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # RST while the server is writing echoes back
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", srv.port)) as c2:
                c2.sendall(b"still there?")
                self.assertEqual(c2.recv(100), b"still there?")
            code, out, err = srv.stop()
            self.assertEqual(code, 0)
            self.assertNotIn("terminate", err)

    def test_sigint_refuses_new_connections_and_lets_open_ones_finish(self):
        with Server("echo-server", "--port", "0") as srv:
            a = socket.create_connection(("127.0.0.1", srv.port))
            a.sendall(b"1")
            self.assertEqual(a.recv(10), b"1")
            srv.proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            a.sendall(b"2")  # the open connection still works during the grace period
            self.assertEqual(a.recv(10), b"2")
            a.close()
            t0 = time.monotonic()
            code, _, err = srv.stop(timeout=10)
            self.assertEqual(code, 0, err)
            self.assertLess(time.monotonic() - t0, 3)

    def test_grace_period_is_bounded(self):
        with Server("echo-server", "--port", "0") as srv:
            a = socket.create_connection(("127.0.0.1", srv.port))
            t0 = time.monotonic()
            code, _, _ = srv.stop(sig=signal.SIGTERM, timeout=15)
            self.assertEqual(code, 0)
            self.assertLess(time.monotonic() - t0, 7)
            self.assertEqual(a.recv(10), b"")  # closed by the server after the grace period
            a.close()

    def test_unix_and_abstract_and_ipv6(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "echo.sock")
            with Server("echo-server", "--unix", path) as srv:
                self.assertEqual(srv.endpoints, ["unix:" + path])
                r = run("echo-client", "unix:" + path, "--message", "via unix")
                self.assertEqual((r.returncode, r.stdout), (0, "via unix\n"), r.stderr)
                srv.stop()
        name = "@loopctl-e2e-%d" % os.getpid()
        with Server("echo-server", "--unix", name) as srv:
            self.assertEqual(srv.endpoints, ["unix:" + name])
            r = run("echo-client", "unix:" + name)
            self.assertEqual((r.returncode, r.stdout), (0, "Hello World!\n"), r.stderr)
            srv.stop()
        if socket.has_ipv6:
            with Server("echo-server", "--host", "::1", "--port", "0") as srv:
                self.assertRegex(srv.endpoints[0], r"^\[::1\]:\d+$")
                r = run("echo-client", srv.endpoints[0], "--count", "2", "--message", "six")
                self.assertEqual((r.returncode, r.stdout), (0, "six\nsix\n"), r.stderr)
                srv.stop()

    def test_bracketed_ipv6_host_as_in_endpoints(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        # --workers resolves --host itself (for the shared port): "[::1]" must mean ::1 there too.
        for extra in ((), ("--workers", "2")):
            with Server("echo-server", "--host", "[::1]", "--port", "0", *extra) as srv:
                self.assertRegex(srv.endpoints[0], r"^\[::1\]:\d+$")
                r = run("echo-client", srv.endpoints[0], "--message", "six")
                self.assertEqual((r.returncode, r.stdout), (0, "six\n"), r.stderr)
                self.assertEqual(srv.stop()[0], 0)

    def test_virtual_clock_still_serves(self):
        with Server("--virtual-clock", "echo-server", "--port", "0") as srv:
            with socket.create_connection(("127.0.0.1", srv.port)) as c:
                c.sendall(b"simulated")
                self.assertEqual(c.recv(100), b"simulated")
            code, _, err = srv.stop()
            self.assertEqual((code, err), (0, ""))

    def test_workers_share_the_port(self):
        with Server("echo-server", "--port", "0", "--workers", "3") as srv:
            self.assertEqual(len(srv.endpoints), 1)
            threads = os.listdir("/proc/%d/task" % srv.proc.pid)
            self.assertGreaterEqual(len(threads), 3)
            for i in range(20):
                with socket.create_connection(("127.0.0.1", srv.port)) as c:
                    c.sendall(b"w%d" % i)
                    self.assertEqual(c.recv(10), b"w%d" % i)
            code, _, err = srv.stop()
            self.assertEqual(code, 0, err)
        r = run("echo-server", "--workers", "2", "--unix", "/tmp/never")
        self.assertEqual(r.returncode, 2)

    def test_every_server_takes_workers(self):
        import tempfile
        with tempfile.NamedTemporaryFile() as f:
            f.write(os.urandom(200000))
            f.flush()
            for args in (("udp-echo-server", "--port", "0"), ("sendfile", "serve", f.name, "--port", "0")):
                with Server(*args, "--workers", "2") as srv:
                    self.assertGreaterEqual(len(os.listdir("/proc/%d/task" % srv.proc.pid)), 2)
                    if args[0] == "sendfile":
                        for _ in range(4):
                            with socket.create_connection(("127.0.0.1", srv.port)) as c:
                                self.assertEqual(len(recv_all(c)), 200000)
                    else:
                        for i in range(4):
                            r = run("udp-echo-client", srv.endpoints[0], "--message", "u%d" % i)
                            self.assertEqual((r.returncode, r.stdout), (0, "u%d\n" % i), r.stderr)
                    self.assertEqual(srv.stop()[0], 0)

    def test_unix_mode_is_exact_and_never_replaces_a_regular_file(self):
        import stat
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "private.sock")
            with Server("echo-server", "--unix", path, "--unix-mode", "600") as srv:
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
                r = run("echo-client", "unix:" + path, "--message", "mine")
                self.assertEqual((r.returncode, r.stdout), (0, "mine\n"), r.stderr)
                srv.stop()
            precious = os.path.join(d, "precious")
            with open(precious, "w") as f:
                f.write("keep me")
            r = run("echo-server", "--unix", precious)
            self.assertEqual(r.returncode, 1)
            self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)
            with open(precious) as f:
                self.assertEqual(f.read(), "keep me")
        r = run("echo-server", "--unix", "/tmp/x.sock", "--unix-mode", "999")
        self.assertEqual(r.returncode, 2)
        self.assertIn("octal", r.stderr)
        r = run("echo-server", "--unix-mode", "600")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--unix-mode needs --unix", r.stderr)

    def test_bad_options(self):
        r = run("echo-server", "--port", "70000")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)
        r = run("echo-server", "--cert", "/nonexistent.pem", "--key", "/nonexistent.key")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent.pem", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_port_in_use(self):
        with Server("echo-server", "--port", "0") as srv:
            r = run("echo-server", "--port", str(srv.port))
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr.strip(),
                             "loopctl: error: cannot listen on 127.0.0.1:%d: Address already in use" % srv.port)
            srv.stop()

    def test_trace_records_transport_events(self):
        with Server("--trace", "echo-server", "--port", "0") as srv:
            with socket.create_connection(("127.0.0.1", srv.port)) as c:
                c.sendall(b"abc")
                c.recv(10)
            time.sleep(0.1)
            code, _, err = srv.stop()
            self.assertEqual(code, 0)
            kinds = [r["ev"] for r in parse_jsonl(err)]
            for k in ("server_listening", "connection_made", "data_received", "connection_lost",
                      "signal", "server_closed"):
                self.assertIn(k, kinds)


class EchoClient(unittest.TestCase):
    def test_round_trips_against_a_python_server(self):
        with Server("echo-server", "--port", "0") as srv:
            r = run("echo-client", "127.0.0.1:%d" % srv.port, "--message", "ping", "--count", "3")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, "ping\nping\nping\n")
            srv.stop()

    def test_refused(self):
        port = free_port()
        r = run("echo-client", "127.0.0.1:%d" % port)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(),
                         "loopctl: error: cannot connect to 127.0.0.1:%d: Connection refused" % port)

    def test_mismatched_echo_is_exit_1(self):
        # A server that answers in upper case: every echo differs.
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen()

        def serve():
            c, _ = lst.accept()
            with c:
                while True:
                    d = c.recv(100)
                    if not d:
                        break
                    c.sendall(d.upper())

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        r = run("echo-client", "127.0.0.1:%d" % lst.getsockname()[1], "--message", "abc")
        lst.close()
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "ABC\n")
        self.assertIn("loopctl: error: 1 of 1 echoes did not match", r.stderr)

    def serve_once(self, answer):
        """A one-connection server in a thread answering each chunk with answer(chunk); returns
        its endpoint. Closed by the test's cleanup."""
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        self.addCleanup(lst.close)

        def serve():
            c, _ = lst.accept()
            with c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while True:
                    d = c.recv(100)
                    if not d:
                        break
                    answer(c, d)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        self.addCleanup(t.join, 10)
        return "127.0.0.1:%d" % lst.getsockname()[1]

    def test_bytes_after_the_echo_are_a_mismatch(self):
        ep = self.serve_once(lambda c, d: c.sendall(d + b"EXTRA"))
        r = run("echo-client", ep)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "Hello World!EXTRA\n")
        self.assertEqual(r.stderr, "loopctl: error: 1 of 1 echoes did not match: echo 1 came "
                                   "back with 5 bytes more than the message sent\n")

    def test_an_echo_split_in_single_bytes_still_matches(self):
        def one_byte_at_a_time(c, d):
            for i in range(len(d)):
                c.sendall(d[i:i + 1])
                time.sleep(0.005)  # separate segments, so that the client reads it in pieces
        ep = self.serve_once(one_byte_at_a_time)
        r = run("echo-client", ep, "--count", "3")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, "Hello World!\n" * 3)

    def test_no_echo_names_the_timeout_as_written(self):
        ep = self.serve_once(lambda c, d: None)  # never answers
        r = run("echo-client", ep, "--timeout", "0.5")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "loopctl: error: no echo from %s within 0.5 s\n" % ep)

    def test_virtual_clock_is_refused_as_a_usage_error(self):
        # Simulated time would reach --timeout before the real echo arrives.
        with Server("echo-server", "--port", "0") as srv:
            for args in (("--virtual-clock", "echo-client", srv.endpoints[0]),
                         ("echo-client", srv.endpoints[0], "--virtual-clock")):
                r = run(*args)
                self.assertEqual((r.returncode, r.stdout), (2, ""), args)
                self.assertEqual(r.stderr, "loopctl: error: --virtual-clock cannot be used with "
                                 "echo-client: its timeouts would expire before real network "
                                 "I/O completes (see loopctl --help)\n")
            self.assertEqual(srv.stop()[0], 0)

    def test_sigint_while_waiting_leaves_a_complete_chrome_trace(self):
        import json
        import tempfile
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "t.json")
            p = subprocess.Popen([LOOPCTL, "--trace=" + trace, "--trace-format=chrome",
                                  "echo-client", "127.0.0.1:%d" % lst.getsockname()[1]],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            conn, _ = lst.accept()  # a server that never answers
            time.sleep(0.3)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
            conn.close()
            lst.close()
            self.assertEqual(p.returncode, 128 + signal.SIGINT)
            self.assertEqual(err, "")
            with open(trace) as f:
                events = json.load(f)
            self.assertTrue(any(e.get("name") == "signal" for e in events))

    def test_usage_errors(self):
        for args in (("echo-client",), ("echo-client", "nohost"), ("echo-client", "h:99999"),
                     ("echo-client", "127.0.0.1:1", "--count", "x")):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("loopctl: error: "), (args, r.stderr))


if __name__ == "__main__":
    main()
