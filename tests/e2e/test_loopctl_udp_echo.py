"""loopctl udp-echo-server and udp-echo-client, against Python sockets as the other end."""
import os
import signal
import socket
import tempfile
import threading
import time
import unittest

from loopctl_testlib import Server, main, parse_jsonl, run
from trace_schema import check_trace


def udp_socket(family=socket.AF_INET, timeout=5):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    return s


def free_udp_port():
    """A port nothing listens on (bound, then released)."""
    with udp_socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeerThread:
    """A UDP peer in a thread: answers each datagram with reply(data) (None: no answer)."""

    def __init__(self, reply):
        self.sock = udp_socket(timeout=0.2)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.reply = reply
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.received.append(data)
            answer = self.reply(data)
            if answer is not None:
                self.sock.sendto(answer, addr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join()
        self.sock.close()


class UdpEchoServer(unittest.TestCase):
    def test_echoes_each_datagram_to_its_own_sender(self):
        with Server("udp-echo-server", "--port", "0") as srv:
            host, port = srv.endpoints[0].rsplit(":", 1)
            self.assertEqual(host, "127.0.0.1")
            self.assertNotEqual(int(port), 0)
            a, b = udp_socket(), udp_socket()
            with a, b:
                garbage = bytes(range(256)) * 4
                a.sendto(b"from a", ("127.0.0.1", srv.port))
                b.sendto(garbage, ("127.0.0.1", srv.port))
                a.sendto(b"again a", ("127.0.0.1", srv.port))
                self.assertEqual(b.recvfrom(65536)[0], garbage)
                self.assertEqual(a.recvfrom(65536)[0], b"from a")
                self.assertEqual(a.recvfrom(65536)[0], b"again a")
                big = os.urandom(60000)
                b.sendto(big, ("127.0.0.1", srv.port))
                self.assertEqual(b.recvfrom(65536)[0], big)
            code, out, err = srv.stop()
            self.assertEqual(code, 0, err)
            self.assertEqual(out, "")
            self.assertEqual(err, "")

    def test_empty_datagram_is_echoed(self):
        # datagram_received(b'') as in asyncio, and the transport sends an empty datagram back
        # as asyncio 3.13 does (3.7 to 3.12 dropped it: an echo server that never answered).
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "t.jsonl")
            with Server("--trace=" + trace, "udp-echo-server", "--port", "0") as srv:
                with udp_socket(timeout=5) as a:
                    a.sendto(b"", ("127.0.0.1", srv.port))
                    self.assertEqual(a.recvfrom(100)[0], b"")
                    a.sendto(b"next", ("127.0.0.1", srv.port))
                    self.assertEqual(a.recvfrom(100)[0], b"next")
                self.assertEqual(srv.stop()[0], 0)
            with open(trace) as f:
                recs = parse_jsonl(f.read())
        self.assertEqual([r["bytes"] for r in recs if r["ev"] == "datagram_received"], [0, 4])

    def test_ipv6_host_plain_or_bracketed_as_echo_server_takes_it(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            with udp_socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            self.skipTest("no ::1")
        for host in ("::1", "[::1]"):
            with Server("udp-echo-server", "--host", host, "--port", "0") as srv:
                self.assertRegex(srv.endpoints[0], r"^\[::1\]:\d+$")
                with udp_socket(socket.AF_INET6) as a:
                    a.sendto(b"six", ("::1", srv.port))
                    self.assertEqual(a.recvfrom(100)[0], b"six")
                self.assertEqual(srv.stop(signal.SIGTERM)[0], 0)
        # Brackets around anything else: said at once, as a usage error, by every --host.
        for args in (("udp-echo-server",), ("echo-server",), ("sendfile", "serve", "/dev/null")):
            r = run(*args, "--host", "[::1", "--port", "0", timeout=10)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(r.stderr, "loopctl: error: --host: '[::1' is not an IPv6 address "
                                       "in brackets such as [::1] (see loopctl --help)\n", args)

    def test_virtual_clock_still_serves(self):
        with Server("--virtual-clock", "udp-echo-server", "--port", "0") as srv:
            with udp_socket() as a:
                a.sendto(b"simulated", ("127.0.0.1", srv.port))
                self.assertEqual(a.recvfrom(100)[0], b"simulated")
            self.assertEqual(srv.stop()[0], 0)

    def test_survives_a_client_that_went_away(self):
        with Server("udp-echo-server", "--port", "0") as srv:
            # Its echo draws an ICMP port unreachable: error_received, and nothing more.
            for _ in range(3):
                gone = udp_socket()
                gone.sendto(b"x" * 100, ("127.0.0.1", srv.port))
                gone.close()
            time.sleep(0.2)
            with udp_socket() as a:
                a.sendto(b"still there?", ("127.0.0.1", srv.port))
                self.assertEqual(a.recvfrom(100)[0], b"still there?")
            self.assertIsNone(srv.proc.poll())
            code, _, err = srv.stop()
            self.assertEqual(code, 0, err)

    def test_sigint_and_sigterm_exit_0(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with Server("udp-echo-server", "--port", "0") as srv:
                code, out, err = srv.stop(sig)
                self.assertEqual((code, out, err), (0, "", ""), sig)

    def test_usage_and_runtime_errors(self):
        r = run("udp-echo-server", "--port", "70000")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)
        self.assertIn("70000", r.stderr)
        r = run("udp-echo-server", "--bogus")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)
        with udp_socket() as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            r = run("udp-echo-server", "--port", str(port), timeout=10)
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr, "loopctl: error: cannot listen on 127.0.0.1:%d: "
                             "Address already in use\n" % port)

    def test_help_lists_defaults(self):
        r = run("udp-echo-server", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("127.0.0.1", r.stdout)
        self.assertIn("8888", r.stdout)

    def test_trace_shows_the_datagrams(self):
        with tempfile.TemporaryDirectory() as d:
            trace = os.path.join(d, "t.jsonl")
            with Server("--trace=" + trace, "udp-echo-server", "--port", "0") as srv:
                with udp_socket() as a:
                    a.sendto(b"12345", ("127.0.0.1", srv.port))
                    self.assertEqual(a.recvfrom(100)[0], b"12345")
                    me = "127.0.0.1:%d" % a.getsockname()[1]
                code, _, err = srv.stop()
                self.assertEqual(code, 0, err)
            with open(trace) as f:
                recs = parse_jsonl(f.read())
        check_trace(self, recs)
        got = [r for r in recs if r["ev"] == "datagram_received"]
        self.assertEqual([(r["bytes"], r["peer"]) for r in got], [(5, me)])
        self.assertIn("signal", [r["ev"] for r in recs])


class UdpEchoClient(unittest.TestCase):
    def test_prints_each_echo(self):
        with PeerThread(lambda d: d) as peer:
            r = run("udp-echo-client", "127.0.0.1:%d" % peer.port)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, "Hello World!\n")
            r = run("udp-echo-client", "127.0.0.1:%d" % peer.port, "--message", "ping",
                    "--count", "3")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, "ping\nping\nping\n")
            self.assertEqual(r.stderr, "")
            self.assertEqual(peer.received, [b"Hello World!"] + [b"ping"] * 3)

    def test_against_loopctl_udp_echo_server_with_a_valid_trace(self):
        with Server("udp-echo-server", "--port", "0") as srv:
            r = run("--trace", "udp-echo-client", srv.endpoints[0], "--count", "2")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, "Hello World!\nHello World!\n")
            recs = parse_jsonl(r.stderr)
            check_trace(self, recs)
            self.assertEqual(
                [x["bytes"] for x in recs if x["ev"] == "datagram_received"], [12, 12])
            self.assertEqual(srv.stop()[0], 0)

    def test_no_echo_within_the_timeout_is_exit_1(self):
        with PeerThread(lambda d: None) as peer:
            start = time.monotonic()
            r = run("udp-echo-client", "127.0.0.1:%d" % peer.port, "--timeout", "0.5")
            elapsed = time.monotonic() - start
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stdout, "")
            self.assertEqual(r.stderr, "loopctl: error: no echo from 127.0.0.1:%d within 0.5 s\n"
                             % peer.port)
            self.assertGreaterEqual(elapsed, 0.5)

    def test_refused_is_exit_1_at_once(self):
        port = free_udp_port()
        start = time.monotonic()
        r = run("udp-echo-client", "127.0.0.1:%d" % port)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr,
                         "loopctl: error: no echo from 127.0.0.1:%d: Connection refused\n" % port)
        self.assertLess(time.monotonic() - start, 4, "ECONNREFUSED must not wait for --timeout")

    def test_a_wrong_echo_is_exit_1(self):
        with PeerThread(lambda d: d.upper()) as peer:
            r = run("udp-echo-client", "127.0.0.1:%d" % peer.port, "--message", "abc")
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stdout, "ABC\n")
            self.assertIn("loopctl: error: 1 of 1 echoes did not match", r.stderr)

    def test_a_longer_echo_is_a_mismatch_that_says_so(self):
        with PeerThread(lambda d: d + b"EXTRA") as peer:
            r = run("udp-echo-client", "127.0.0.1:%d" % peer.port, "--message", "abc")
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stdout, "abcEXTRA\n")
            self.assertEqual(r.stderr, "loopctl: error: 1 of 1 echoes did not match: echo 1 "
                                       "came back with 5 bytes more than the message sent\n")

    def test_virtual_clock_is_refused_as_a_usage_error(self):
        with PeerThread(lambda d: d) as peer:
            r = run("--virtual-clock", "udp-echo-client", "127.0.0.1:%d" % peer.port)
            self.assertEqual((r.returncode, r.stdout), (2, ""))
            self.assertEqual(r.stderr, "loopctl: error: --virtual-clock cannot be used with "
                             "udp-echo-client: its timeouts would expire before real network "
                             "I/O completes (see loopctl --help)\n")

    def test_usage_errors(self):
        for args in (["udp-echo-client"], ["udp-echo-client", "127.0.0.1:70000"],
                     ["udp-echo-client", "nohostport"], ["udp-echo-client", "unix:/tmp/x"],
                     ["udp-echo-client", "127.0.0.1:9", "--timeout", "0"],
                     ["udp-echo-client", "127.0.0.1:9", "--bogus"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("loopctl: error: "), (args, r.stderr))

    def test_help_lists_defaults(self):
        r = run("udp-echo-client", "--help")
        self.assertEqual(r.returncode, 0)
        for text in ("Hello World!", "--count", "--timeout", "5"):
            self.assertIn(text, r.stdout)


if __name__ == "__main__":
    main()
