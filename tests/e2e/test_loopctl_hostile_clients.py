"""Clients that misbehave: they push without reading and then leave, never send the line they
owe, or never read while the server shuts down. Every socket the server opened for them must be
released, in bounded time, and nothing may be reported on the way."""
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from loopctl_testlib import Server, main, run

TMP = tempfile.mkdtemp(prefix="loopctl-hostile-")
CERT = os.path.join(TMP, "cert.pem")
KEY = os.path.join(TMP, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", KEY,
                "-out", CERT, "-days", "2", "-subj", "/CN=localhost"],
               check=True, capture_output=True, timeout=60)
TLS_SERVER = ("--cert", CERT, "--key", KEY)


def fds(proc):
    return len(os.listdir("/proc/%d/fd" % proc.pid))


def settle(proc, want, timeout):
    """Polls proc's fd count until it is `want` or `timeout` seconds have passed; returns it."""
    deadline = time.monotonic() + timeout
    n = fds(proc)
    while n != want and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fds(proc)
    return n


def reset(sock):
    """Closes with a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def push_until_stuck(sock, stuck_for=0.5, limit=15):
    """Sends without reading until sending has been refused for `stuck_for` seconds in a row
    (every buffer on the way is full) or `limit` seconds have passed."""
    sock.setblocking(False)
    blob = os.urandom(1 << 16)
    start = last = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            sock.send(blob)
            last = time.monotonic()
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            if time.monotonic() - last > stuck_for:
                return
            time.sleep(0.02)
    raise AssertionError("the connection never pushed back")


def tls_connect(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                           server_hostname="localhost")


class ProxyReleasesLeftClients(unittest.TestCase):
    """tls-proxy in front of echo-server: a client that fills every buffer (its echoes back up
    into the upstream, which then stops reading) and leaves must not leave either socket open."""

    def check_leaving(self, leave, tls=False, clients=3):
        with Server("echo-server", "--port", "0") as up:
            extra = TLS_SERVER if tls else ()
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        *extra) as proxy:
                proxy_base, up_base = fds(proxy.proc), fds(up.proc)
                for _ in range(clients):
                    c = tls_connect(proxy.port) if tls else socket.create_connection(
                        ("127.0.0.1", proxy.port), timeout=10)
                    push_until_stuck(c)
                    leave(c)
                # Released within the drain grace (5 s), not at shutdown.
                self.assertEqual(settle(proxy.proc, proxy_base, 15), proxy_base)
                self.assertEqual(settle(up.proc, up_base, 15), up_base)
                code, _, err = proxy.stop()
                self.assertEqual((code, err), (0, ""))
            code, _, err = up.stop()
            self.assertEqual((code, err), (0, ""))

    def test_reset(self):
        self.check_leaving(reset)

    def test_close(self):
        self.check_leaving(lambda c: c.close())

    def test_tls_client_reset(self):
        self.check_leaving(reset, tls=True)

    def test_upstream_that_never_reads(self):
        # Nothing is written to the client, so only a check of its paused socket can notice
        # that it reset.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        held = []
        stop = threading.Event()

        def accept():
            ls.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(ls.accept()[0])
                except socket.timeout:
                    pass

        t = threading.Thread(target=accept)
        t.start()
        try:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream",
                        "127.0.0.1:%d" % ls.getsockname()[1]) as proxy:
                base = fds(proxy.proc)
                clients = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
                           for _ in range(3)]
                for c in clients:
                    push_until_stuck(c)
                self.assertEqual(settle(proxy.proc, base + 6, 10), base + 6)  # both legs each
                for c in clients:
                    reset(c)
                self.assertEqual(settle(proxy.proc, base, 10), base)
                code, _, err = proxy.stop()
                self.assertEqual((code, err), (0, ""))
        finally:
            stop.set()
            t.join(10)
            ls.close()
            for h in held:
                h.close()


class StartTlsLineTimeout(unittest.TestCase):
    def test_a_client_without_its_line_is_answered_and_closed(self):
        with Server("echo-server", "--port", "0") as up:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        "--starttls", "--starttls-timeout", "0.5", *TLS_SERVER) as proxy:
                base = fds(proxy.proc)
                idle = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
                        for _ in range(5)]
                idle[0].sendall(b"STARTT")  # half a line is no better
                for c in idle:
                    got = b""
                    while True:
                        b = c.recv(100)
                        if not b:
                            break
                        got += b
                    self.assertEqual(got, b"ERR timeout waiting for STARTTLS\r\n")
                    c.close()
                self.assertEqual(settle(proxy.proc, base, 10), base)
                # A client that sends its line in time is upgraded as before.
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
                    raw.sendall(b"STARTTLS\r\n")
                    self.assertEqual(raw.recv(100), b"OK STARTTLS\r\n")
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    with ctx.wrap_socket(raw, server_hostname="localhost") as c:
                        time.sleep(1)  # past the line's timeout: it no longer applies
                        c.sendall(b"after the upgrade")
                        self.assertEqual(c.recv(100), b"after the upgrade")
                code, _, err = proxy.stop()
                self.assertEqual((code, err), (0, ""))
            self.assertEqual(up.stop()[0], 0)

    def test_usage(self):
        r = run("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
                "--starttls-timeout", "5")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--starttls", r.stderr)
        r = run("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
                "--starttls", "--starttls-timeout", "0", *TLS_SERVER)
        self.assertEqual(r.returncode, 2)


class ShutdownWithStuckTlsClients(unittest.TestCase):
    def test_sendfile_over_tls_exits_quietly(self):
        path = os.path.join(TMP, "big.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(8 << 20))
        with Server("sendfile", "serve", path, "--port", "0", *TLS_SERVER) as srv:
            clients = []
            for _ in range(4):
                c = tls_connect(srv.port)
                self.assertTrue(c.recv(1000))  # the transfer started; never read again
                clients.append(c)
            time.sleep(0.3)
            try:
                code, out, err = srv.stop(signal.SIGTERM, timeout=20)
            finally:
                for c in clients:
                    c.close()
            self.assertEqual((code, out, err), (0, "", ""))


class UnixPathThatIsNotASocket(unittest.TestCase):
    def test_says_so(self):
        path = os.path.join(TMP, "regular-file")
        with open(path, "w") as f:
            f.write("keep me\n")
        for args in (("echo-server", "--unix", path),
                     ("sendfile", "serve", CERT, "--unix", path),
                     ("tls-proxy", "--listen", "unix:" + path, "--upstream", "127.0.0.1:1")):
            r = run(*args)
            self.assertEqual((r.returncode, r.stdout), (1, ""), args)
            self.assertEqual(r.stderr, "loopctl: error: cannot listen on unix:%s: %s exists and "
                             "is not a socket\n" % (path, path), args)
        with open(path) as f:
            self.assertEqual(f.read(), "keep me\n")


if __name__ == "__main__":
    main()
