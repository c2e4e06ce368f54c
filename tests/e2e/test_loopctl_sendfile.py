"""loopctl sendfile serve / send: whole files by hash, ranges, resets, shutdown, errors."""
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

from loopctl_testlib import Server, main, parse_jsonl, run
from trace_schema import check_trace


def fetch(port, send_first=b"", timeout=30):
    """Connects, optionally sends `send_first`, reads until the server closes; returns bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if send_first:
            s.sendall(send_first)
        chunks = []
        while True:
            b = s.recv(1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)


class Receiver:
    """A TCP server in a thread that keeps what one client sends until EOF."""

    def __init__(self, family=socket.AF_INET, path=None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if path:
            self.sock.bind(path)
            self.endpoint = "unix:" + path
        else:
            self.sock.bind(("127.0.0.1", 0))
            self.endpoint = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.data = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            chunks = []
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                chunks.append(b)
            self.data = b"".join(chunks)

    def result(self):
        self.thread.join(30)
        self.sock.close()
        return self.data


class SendfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls.dir.name, "data.bin")
        cls.data = os.urandom(3 * 1024 * 1024 + 12345)
        with open(cls.path, "wb") as f:
            f.write(cls.data)
        cls.big = os.path.join(cls.dir.name, "big.bin")
        with open(cls.big, "wb") as f:
            f.write(os.urandom(1 << 20) * 32)  # 32 MiB: more than the socket buffers hold

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()


class Serve(SendfileTest):
    def test_every_client_gets_the_whole_file(self):
        with Server("sendfile", "serve", self.path, "--port", "0") as srv:
            self.assertRegex(srv.endpoints[0], r"^127\.0\.0\.1:\d+$")
            want = hashlib.sha256(self.data).hexdigest()
            results = [None] * 3
            def get(i):
                results[i] = hashlib.sha256(fetch(srv.port)).hexdigest()
            threads = [threading.Thread(target=get, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(results, [want] * 3)
            code, out, err = srv.stop()
            self.assertEqual((code, out, err), (0, "", ""))

    def test_a_client_sending_garbage_or_half_closing_still_gets_the_file(self):
        with Server("sendfile", "serve", self.path, "--port", "0") as srv:
            self.assertEqual(fetch(srv.port, send_first=os.urandom(100000)), self.data)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
                s.shutdown(socket.SHUT_WR)
                got = b""
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    got += b
            self.assertEqual(got, self.data)
            self.assertEqual(srv.stop()[0], 0)

    def test_survives_a_reset_mid_transfer(self):
        with Server("sendfile", "serve", self.big, "--port", "0") as srv:
            for _ in range(2):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(30)
                s.connect(("127.0.0.1", srv.port))
                self.assertTrue(s.recv(65536))
                time.sleep(0.1)
                # SO_LINGER 0: close() sends a RST while the server is inside sendfile.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            time.sleep(0.2)
            self.assertIsNone(srv.proc.poll(), "the server died of a reset")
            got = fetch(srv.port)
            with open(self.big, "rb") as f:
                self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(f.read()).digest())
            code, _, err = srv.stop()
            self.assertEqual(code, 0, err)
            self.assertEqual(err, "")

    def test_empty_file(self):
        empty = os.path.join(self.dir.name, "empty")
        open(empty, "w").close()
        with Server("sendfile", "serve", empty, "--port", "0") as srv:
            self.assertEqual(fetch(srv.port), b"")
            self.assertEqual(srv.stop()[0], 0)

    def test_unix_socket(self):
        path = os.path.join(self.dir.name, "s.sock")
        with Server("sendfile", "serve", self.path, "--unix", path) as srv:
            self.assertEqual(srv.endpoints, ["unix:" + path])
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                s.connect(path)
                got = b""
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    got += b
            self.assertEqual(got, self.data)
            self.assertEqual(srv.stop(signal.SIGTERM)[0], 0)

    def test_sigint_and_sigterm_exit_0_and_refuse_new_connections(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with Server("sendfile", "serve", self.path, "--port", "0") as srv:
                port = srv.port
                code, out, err = srv.stop(sig)
                self.assertEqual((code, out, err), (0, "", ""))
                with self.assertRaises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_shutdown_closes_a_stalled_transfer_after_the_grace_period(self):
        with Server("sendfile", "serve", self.big, "--port", "0") as srv:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(30)
            s.connect(("127.0.0.1", srv.port))
            with s:
                self.assertTrue(s.recv(1000))  # then never read again: the transfer stalls
                time.sleep(0.2)
                start = time.monotonic()
                code, out, err = srv.stop(timeout=20)
                elapsed = time.monotonic() - start
                self.assertEqual((code, out, err), (0, "", ""))
                self.assertLess(elapsed, 10, "grace period is at most 5 s")
                self.assertGreater(elapsed, 3, "the transfer had its grace period")
                # The connection is gone: reading ends (EOF or reset) before all 32 MiB.
                total = 0
                try:
                    while True:
                        b = s.recv(1 << 20)
                        if not b:
                            break
                        total += len(b)
                except ConnectionResetError:
                    pass
                self.assertLess(total, 32 << 20)

    def test_errors(self):
        r = run("sendfile", "serve", "/nonexistent/file", "--port", "0")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "loopctl: error: cannot open /nonexistent/file: "
                                   "No such file or directory\n")
        r = run("sendfile", "serve", self.dir.name, "--port", "0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("loopctl: error: ", r.stderr)
        self.assertIn(self.dir.name, r.stderr)
        r = run("sendfile", "serve", self.path, "--port", "70000")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)
        for args in (["sendfile"], ["sendfile", "serve"], ["sendfile", "serve", self.path, "--x"],
                     ["sendfile", "bogus"], ["sendfile", "serve", self.path, "--key", "k"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("loopctl: error: "), (args, r.stderr))
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            r = run("sendfile", "serve", self.path, "--port", str(port))
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr, "loopctl: error: cannot listen on 127.0.0.1:%d: "
                             "Address already in use\n" % port)

    def test_missing_certificate_is_exit_1(self):
        r = run("sendfile", "serve", self.path, "--port", "0", "--cert", "/nonexistent/c.pem",
                "--key", "/nonexistent/k.pem")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)
        self.assertNotIn("listening on", r.stdout)

    def test_tls_uses_the_fallback_and_sends_the_whole_file(self):
        if not shutil.which("openssl"):
            self.skipTest("openssl is not installed (to make a test certificate)")
        cert = os.path.join(self.dir.name, "c.pem")
        key = os.path.join(self.dir.name, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        srv = Server("sendfile", "serve", self.path, "--port", "0", "--cert", cert, "--key", key)
        with srv:
            ctx = ssl.create_default_context(cafile=cert)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    got = b""
                    while True:
                        try:
                            b = s.recv(1 << 20)
                        except ssl.SSLZeroReturnError:
                            break
                        if not b:
                            break
                        got += b
            self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(self.data).digest())
            self.assertEqual(srv.stop()[0], 0)

    def test_trace_is_valid(self):
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "t.jsonl")
            with Server("--trace=" + trace, "sendfile", "serve", self.path, "--port", "0") as srv:
                self.assertEqual(fetch(srv.port), self.data)
                self.assertEqual(srv.stop()[0], 0)
            with open(trace) as f:
                recs = parse_jsonl(f.read())
        check_trace(self, recs)
        kinds = [r["ev"] for r in recs]
        for ev in ("server_listening", "connection_accepted", "connection_made",
                   "connection_lost", "server_closed", "signal"):
            self.assertIn(ev, kinds)

    def test_help(self):
        r = run("sendfile", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("serve", r.stdout)
        self.assertIn("send", r.stdout)
        r = run("sendfile", "serve", "--help")
        self.assertEqual(r.returncode, 0)
        for text in ("--host", "127.0.0.1", "--port", "8888", "--cert", "--key"):
            self.assertIn(text, r.stdout)


class Send(SendfileTest):
    def test_sends_the_whole_file(self):
        rx = Receiver()
        r = run("sendfile", "send", self.path, rx.endpoint)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "sent %d bytes\n" % len(self.data))
        self.assertEqual(rx.result(), self.data)

    def test_offset_and_count(self):
        for args, want in ((["--offset", "1000", "--count", "5000"], self.data[1000:6000]),
                           (["--offset", "77777"], self.data[77777:]),
                           (["--count", "10"], self.data[:10]),
                           (["--offset", str(len(self.data) - 5), "--count", "100"],
                            self.data[-5:]),
                           (["--offset", str(len(self.data))], b"")):
            rx = Receiver()
            r = run("sendfile", "send", self.path, rx.endpoint, *args)
            self.assertEqual(r.returncode, 0, (args, r.stderr))
            self.assertEqual(r.stdout, "sent %d bytes\n" % len(want), args)
            self.assertEqual(rx.result(), want, args)

    def test_unix_endpoint(self):
        path = os.path.join(self.dir.name, "rx.sock")
        rx = Receiver(socket.AF_UNIX, path)
        r = run("sendfile", "send", self.path, rx.endpoint, "--count", "4096")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "sent 4096 bytes\n")
        self.assertEqual(rx.result(), self.data[:4096])
        os.unlink(path)

    def test_trace_is_valid(self):
        rx = Receiver()
        r = run("--trace", "sendfile", "send", self.path, rx.endpoint, "--count", "100000")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(rx.result(), self.data[:100000])
        recs = parse_jsonl(r.stderr)
        check_trace(self, recs)
        self.assertIn("connection_made", [x["ev"] for x in recs])

    def test_refused_connection(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = run("sendfile", "send", self.path, "127.0.0.1:%d" % port)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr, "loopctl: error: cannot connect to 127.0.0.1:%d: "
                                   "Connection refused\n" % port)

    def test_errors(self):
        r = run("sendfile", "send", "/nonexistent/file", "127.0.0.1:9")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "loopctl: error: cannot open /nonexistent/file: "
                                   "No such file or directory\n")
        r = run("sendfile", "send", self.path, "127.0.0.1:9", "--offset",
                str(len(self.data) + 1))
        self.assertEqual(r.returncode, 1)
        self.assertIn("past the end", r.stderr)
        for args in (["sendfile", "send", self.path], ["sendfile", "send", self.path, "x:70000"],
                     ["sendfile", "send", self.path, "nocolon"],
                     ["sendfile", "send", self.path, "127.0.0.1:9", "--offset", "-1"],
                     ["sendfile", "send", self.path, "127.0.0.1:9", "--bogus"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("loopctl: error: "), (args, r.stderr))


if __name__ == "__main__":
    main()
