"""TLS in loopctl end to end, with certificates made here by the openssl CLI and real peers:
Python's ssl module, `openssl s_client`, and loopctl's own client."""
import os
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from loopctl_testlib import Server, main, run

PKI = tempfile.mkdtemp(prefix="loopctl-tls-")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki():
    p = lambda name: os.path.join(PKI, name)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out",
            p("ca.pem"), "-days", "2", "-subj", "/CN=loopctl test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("srv.key"), "-out",
            p("srv.csr"), "-subj", "/CN=localhost")
    with open(p("ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
    openssl("x509", "-req", "-in", p("srv.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
            "-CAcreateserial", "-out", p("srv.pem"), "-days", "2", "-extfile", p("ext"))
    # Another CA nobody trusts, and its certificate for localhost.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("other.key"), "-out",
            p("other.pem"), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    return {k: p(k) for k in ("ca.pem", "srv.pem", "srv.key", "other.pem", "other.key")}


CERTS = make_pki()
TLS_SERVER = ("--cert", CERTS["srv.pem"], "--key", CERTS["srv.key"])


def client_ctx():
    return ssl.create_default_context(cafile=CERTS["ca.pem"])


def tls_half_close_exchange(port, data, timeout=20):
    """Sends `data` over TLS, then close_notify without closing the socket (ssl's unwrap
    on a blocking socket would wait for the peer's close_notify and refuse data before it,
    hence memory BIOs); returns what the peer sent until its close_notify or EOF."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_ctx().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        def flush():
            sock.sendall(outgoing.read())

        def feed():
            chunk = sock.recv(1 << 16)
            if chunk:
                incoming.write(chunk)
            else:
                incoming.write_eof()
            return chunk

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                feed()
        flush()
        tls.write(data)
        flush()
        try:
            tls.unwrap()  # sends close_notify; the peer's is not here yet
        except ssl.SSLWantReadError:
            pass
        flush()
        got = bytearray()
        while feed():
            try:
                while chunk := tls.read(1 << 16):
                    got += chunk
                break  # b"": the peer's close_notify
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLZeroReturnError:
                break
    return bytes(got)


class EchoServerTls(unittest.TestCase):
    def test_python_ssl_client(self):
        with Server("echo-server", "--port", "0", *TLS_SERVER) as srv:
            with socket.create_connection(("127.0.0.1", srv.port)) as raw:
                with client_ctx().wrap_socket(raw, server_hostname="localhost") as c:
                    c.sendall(b"over tls")
                    self.assertEqual(c.recv(100), b"over tls")
                    self.assertIn(c.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(srv.stop()[0], 0)

    def test_openssl_s_client(self):
        with Server("echo-server", "--port", "0", *TLS_SERVER) as srv:
            p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port,
                                  "-CAfile", CERTS["ca.pem"], "-verify_return_error", "-quiet",
                                  "-servername", "localhost"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            p.stdin.write("ping from s_client\n")
            p.stdin.flush()
            line = p.stdout.readline()  # the echo, before we hang up
            p.kill()
            p.communicate()
            self.assertEqual(line, "ping from s_client\n")
            self.assertEqual(srv.stop()[0], 0)

    def test_garbage_on_the_tls_port_then_the_next_client_is_served(self):
        with Server("echo-server", "--port", "0", *TLS_SERVER) as srv:
            with socket.create_connection(("127.0.0.1", srv.port)) as g:
                g.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
                g.settimeout(10)
                try:
                    while g.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
            r = run("echo-client", "127.0.0.1:%d" % srv.port, "--cafile", CERTS["ca.pem"],
                    "--server-hostname", "localhost")
            self.assertEqual((r.returncode, r.stdout), (0, "Hello World!\n"), r.stderr)
            code, _, err = srv.stop()
            self.assertEqual(code, 0)
            self.assertNotIn("terminate", err)


class EchoClientTls(unittest.TestCase):
    def test_verified_by_cafile(self):
        with Server("echo-server", "--port", "0", *TLS_SERVER) as srv:
            r = run("echo-client", "127.0.0.1:%d" % srv.port, "--tls", "--cafile",
                    CERTS["ca.pem"], "--count", "2")
            self.assertEqual((r.returncode, r.stdout), (0, "Hello World!\nHello World!\n"), r.stderr)
            srv.stop()

    def test_unknown_ca_and_wrong_name_are_refused(self):
        with Server("echo-server", "--port", "0", *TLS_SERVER) as srv:
            r = run("echo-client", "127.0.0.1:%d" % srv.port, "--tls")  # system CAs only
            self.assertEqual(r.returncode, 1)
            self.assertIn("loopctl: error: ", r.stderr)
            self.assertIn("certificate verify failed", r.stderr)
            r = run("echo-client", "127.0.0.1:%d" % srv.port, "--cafile", CERTS["ca.pem"],
                    "--server-hostname", "example.org")
            self.assertEqual(r.returncode, 1)
            self.assertIn("Hostname mismatch", r.stderr)
            srv.stop()

    def test_insecure_says_so(self):
        with Server("echo-server", "--port", "0", "--cert", CERTS["other.pem"], "--key",
                    CERTS["other.key"]) as srv:
            r = run("echo-client", "127.0.0.1:%d" % srv.port, "--insecure")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("NOT verified", r.stderr)
            srv.stop()


class TlsProxy(unittest.TestCase):
    def test_terminates_tls_in_front_of_a_plain_server(self):
        with Server("echo-server", "--port", "0") as up:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        *TLS_SERVER) as proxy:
                with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                    with client_ctx().wrap_socket(raw, server_hostname="localhost") as c:
                        c.sendall(b"through the proxy")
                        self.assertEqual(c.recv(100), b"through the proxy")
                self.assertEqual(proxy.stop()[0], 0)
            up.stop()

    def test_upstream_tls(self):
        with Server("echo-server", "--port", "0", *TLS_SERVER) as up:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        "--upstream-tls", "--cafile", CERTS["ca.pem"], "--server-hostname",
                        "localhost") as proxy:
                r = run("echo-client", proxy.endpoints[0], "--message", "plain to tls")
                self.assertEqual((r.returncode, r.stdout), (0, "plain to tls\n"), r.stderr)
                proxy.stop()
            up.stop()

    def test_half_close_crosses_to_a_tls_upstream_and_the_reply_comes_back(self):
        # A plain client sends, half-closes and reads to EOF; upstream the EOF becomes a
        # close_notify, after which the TLS echo server's reply must still arrive in full.
        # The EOF may come before the upstream handshake ends (sent at once) or after it.
        data = os.urandom(1 << 20)
        with Server("echo-server", "--port", "0", *TLS_SERVER) as up:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        "--upstream-tls", "--cafile", CERTS["ca.pem"], "--server-hostname",
                        "localhost") as proxy:
                for attempt in range(4):
                    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as c:
                        c.sendall(data)
                        c.shutdown(socket.SHUT_WR)
                        got = bytearray()
                        while chunk := c.recv(1 << 16):
                            got += chunk
                    self.assertEqual(len(got), len(data), "attempt %d" % attempt)
                    self.assertEqual(bytes(got), data)
                self.assertEqual(proxy.stop()[0], 0)
            up.stop()

    def test_close_notify_crosses_to_a_plain_upstream_and_the_reply_comes_back(self):
        # A TLS client sends, then close_notify (a TLS half-close), and reads on: the proxy
        # passes the EOF to the plain echo server and the whole echo back, then closes.
        data = os.urandom(1 << 20)
        with Server("echo-server", "--port", "0") as up:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        *TLS_SERVER) as proxy:
                for attempt in range(2):
                    got = tls_half_close_exchange(proxy.port, data)
                    self.assertEqual(len(got), len(data), "attempt %d" % attempt)
                    self.assertEqual(got, data)
                self.assertEqual(proxy.stop()[0], 0)
            up.stop()

    def test_starttls_upgrades_in_place(self):
        with Server("echo-server", "--port", "0") as up:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        "--starttls", *TLS_SERVER) as proxy:
                with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                    raw.sendall(b"STARTTLS\r\n")
                    self.assertEqual(raw.recv(100), b"OK STARTTLS\r\n")
                    with client_ctx().wrap_socket(raw, server_hostname="localhost") as c:
                        c.sendall(b"secret")
                        self.assertEqual(c.recv(100), b"secret")
                # Anything but STARTTLS is refused, and nothing reaches the upstream.
                with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                    raw.sendall(b"HELLO\n")
                    self.assertEqual(raw.recv(100), b"ERR expected STARTTLS\r\n")
                    self.assertEqual(raw.recv(100), b"")
                self.assertEqual(proxy.stop()[0], 0)
            up.stop()

    def test_nothing_crosses_in_plaintext_after_a_failed_starttls(self):
        # A recording upstream: every connection and every byte it gets.
        import threading
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        lsock.settimeout(0.2)
        got = {"conns": 0, "bytes": b""}
        done = threading.Event()

        def upstream():
            while not done.is_set():
                try:
                    c, _ = lsock.accept()
                except socket.timeout:
                    continue
                got["conns"] += 1
                c.settimeout(0.5)
                try:
                    while True:
                        d = c.recv(4096)
                        if not d:
                            break
                        got["bytes"] += d
                except OSError:
                    pass
                c.close()

        t = threading.Thread(target=upstream)
        t.start()
        try:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream",
                        "127.0.0.1:%d" % lsock.getsockname()[1], "--starttls",
                        *TLS_SERVER) as proxy:
                # Bytes pipelined after the line: refused before any upgrade.
                with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                    raw.settimeout(10)
                    raw.sendall(b"STARTTLS\r\nUSER alice PASS secret\r\n")
                    self.assertEqual(raw.recv(100), b"ERR expected STARTTLS\r\n")
                    self.assertEqual(raw.recv(100), b"")
                # Plaintext where the ClientHello should be: the handshake fails, the
                # connection is closed, and the plaintext goes nowhere.
                with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                    raw.settimeout(10)
                    raw.sendall(b"STARTTLS\n")
                    self.assertEqual(raw.recv(100), b"OK STARTTLS\r\n")
                    raw.sendall(b"USER alice PASS secret\r\n" * 20)
                    rest = b""
                    try:
                        while True:
                            d = raw.recv(4096)
                            if not d:
                                break
                            rest += d
                    except ConnectionResetError:
                        pass
                    self.assertNotIn(b"secret", rest)
                # The proxy still serves a client that does it right.
                with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                    raw.sendall(b"STARTTLS\n")
                    self.assertEqual(raw.recv(100), b"OK STARTTLS\r\n")
                    with client_ctx().wrap_socket(raw, server_hostname="localhost") as c:
                        c.sendall(b"ok")
                        # Held open until it arrived: closing with the server's session
                        # tickets unread would make our kernel send a reset instead.
                        for _ in range(100):
                            if got["bytes"]:
                                break
                            time.sleep(0.05)
                code, _, err = proxy.stop()
                self.assertEqual(code, 0, err)
        finally:
            done.set()
            t.join()
            lsock.close()
        # Only the good client reached the upstream, and only with its own bytes.
        self.assertEqual(got["conns"], 1)
        self.assertEqual(got["bytes"], b"ok")

    def test_upstream_down_closes_the_client_with_a_reason_and_survives(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream",
                    "127.0.0.1:%d" % dead) as proxy:
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", proxy.port)) as c:
                    c.settimeout(10)
                    self.assertEqual(c.recv(100), b"")
            code, _, err = proxy.stop()
            self.assertEqual(code, 0)
            self.assertIn("cannot connect to 127.0.0.1:%d: Connection refused" % dead, err)

    def test_workers(self):
        with Server("echo-server", "--port", "0") as up:
            with Server("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", up.endpoints[0],
                        "--workers", "2") as proxy:
                self.assertGreaterEqual(len(os.listdir("/proc/%d/task" % proxy.proc.pid)), 2)
                for i in range(8):
                    r = run("echo-client", proxy.endpoints[0], "--message", "w%d" % i)
                    self.assertEqual((r.returncode, r.stdout), (0, "w%d\n" % i), r.stderr)
                self.assertEqual(proxy.stop()[0], 0)
            up.stop()

    def test_usage(self):
        r = run("tls-proxy", "--listen", "127.0.0.1:0")
        self.assertEqual(r.returncode, 2)
        r = run("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--starttls")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--starttls needs --cert and --key", r.stderr)


class VirtualClock(unittest.TestCase):
    """The TLS handshake timeout runs on the loop's clock: simulated time would reach it before
    the peer's real answer, so TLS on either side refuses --virtual-clock; plain still works."""

    def test_every_tls_use_is_refused_as_a_usage_error(self):
        cert = ("--cert", CERTS["srv.pem"], "--key", CERTS["srv.key"])
        cases = {
            ("echo-server", "--port", "0") + cert: "echo-server",
            ("sendfile", "serve", CERTS["ca.pem"], "--port", "0") + cert: "sendfile serve",
            ("exec", "cat", "--connect", "127.0.0.1:1", "--tls"): "exec",
            ("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1") + cert:
                "tls-proxy",
            ("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
             "--upstream-tls"): "tls-proxy",
            ("tls-proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--cafile",
             CERTS["ca.pem"]): "tls-proxy",
        }
        for args, what in cases.items():
            r = run("--virtual-clock", *args, timeout=10)
            self.assertEqual((r.returncode, r.stdout), (2, ""), (args, r.stderr))
            self.assertEqual(r.stderr, "loopctl: error: --virtual-clock cannot be used with %s "
                             "over TLS: its TLS handshake timeout would expire before real "
                             "network I/O completes (see loopctl --help)\n" % what, args)

    def test_a_plain_proxy_still_forwards(self):
        with Server("echo-server", "--port", "0") as up:
            with Server("--virtual-clock", "tls-proxy", "--listen", "127.0.0.1:0", "--upstream",
                        up.endpoints[0]) as proxy:
                r = run("echo-client", proxy.endpoints[0], "--message", "plain")
                self.assertEqual((r.returncode, r.stdout), (0, "plain\n"), r.stderr)
                self.assertEqual(proxy.stop()[0], 0)
            self.assertEqual(up.stop()[0], 0)


if __name__ == "__main__":
    main()
