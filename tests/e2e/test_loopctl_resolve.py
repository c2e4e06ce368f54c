"""loopctl resolve: the same results as Python's socket.getaddrinfo, one JSON object a line."""
import socket
import unittest

from loopctl_testlib import main, parse_jsonl, run
from trace_schema import check_trace

FAMILIES = {socket.AF_INET: "AF_INET", socket.AF_INET6: "AF_INET6"}
TYPES = {socket.SOCK_STREAM: "SOCK_STREAM", socket.SOCK_DGRAM: "SOCK_DGRAM",
         socket.SOCK_RAW: "SOCK_RAW"}


def python_says(host, port, family=0, type=0):
    """socket.getaddrinfo's answer in loopctl's JSON shape (sorted, for comparing)."""
    out = []
    for fam, typ, proto, _, addr in socket.getaddrinfo(host, port, family, type):
        out.append({"family": FAMILIES[fam], "type": TYPES[typ], "proto": proto,
                    "address": addr[0], "port": addr[1]})
    return sorted(out, key=lambda r: sorted(r.items()))


def loopctl_says(*args):
    r = run("resolve", *args)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    recs = parse_jsonl(r.stdout)
    for rec in recs:
        assert set(rec) == {"family", "type", "proto", "address", "port"}, rec
    return sorted(recs, key=lambda r: sorted(r.items()))


class Resolve(unittest.TestCase):
    def test_numeric_v4_matches_python(self):
        got = loopctl_says("127.0.0.1", "80")
        self.assertEqual(got, python_says("127.0.0.1", 80))
        self.assertIn({"family": "AF_INET", "type": "SOCK_STREAM", "proto": 6,
                       "address": "127.0.0.1", "port": 80}, got)

    def test_family_and_type_filters(self):
        got = loopctl_says("localhost", "8080", "--family", "inet", "--type", "stream")
        self.assertEqual(got, python_says("localhost", 8080, socket.AF_INET, socket.SOCK_STREAM))
        self.assertTrue(got)
        self.assertTrue(all(r["family"] == "AF_INET" and r["type"] == "SOCK_STREAM" for r in got))
        got = loopctl_says("127.0.0.1", "53", "--type", "dgram")
        self.assertEqual(got, [{"family": "AF_INET", "type": "SOCK_DGRAM", "proto": 17,
                                "address": "127.0.0.1", "port": 53}])

    def test_ipv6(self):
        try:
            want = python_says("::1", 443, socket.AF_INET6, socket.SOCK_STREAM)
        except socket.gaierror:
            self.skipTest("no IPv6 resolution here")
        got = loopctl_says("::1", "443", "--family", "inet6", "--type", "stream")
        self.assertEqual(got, want)
        self.assertEqual(got[0]["address"], "::1")

    def test_no_port_is_port_0_and_service_names_work(self):
        got = loopctl_says("127.0.0.1", "--type", "stream")
        self.assertEqual([r["port"] for r in got], [0])
        got = loopctl_says("127.0.0.1", "http", "--type", "stream")
        self.assertEqual(got, python_says("127.0.0.1", "http", 0, socket.SOCK_STREAM))

    def test_unknown_host_is_exit_1_with_gai_strerror(self):
        host = "no-such-host.invalid"
        try:
            socket.getaddrinfo(host, None)
            self.skipTest("the resolver here answers for .invalid")
        except socket.gaierror as e:
            why = e.strerror
        r = run("resolve", host)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr, "loopctl: error: cannot resolve %s: %s\n" % (host, why))

    def test_unknown_service_is_named(self):
        try:
            socket.getaddrinfo("127.0.0.1", "no-such-service")
            self.skipTest("the resolver here knows no-such-service")
        except socket.gaierror as e:
            if e.errno != socket.EAI_SERVICE:
                self.skipTest("this resolver reports an unknown service differently")
            why = e.strerror
        r = run("resolve", "127.0.0.1", "no-such-service")
        self.assertEqual((r.returncode, r.stdout), (1, ""))
        self.assertEqual(r.stderr, "loopctl: error: cannot resolve 127.0.0.1: unknown service "
                                   "'no-such-service' (%s)\n" % why)
        r = run("resolve", "127.0.0.1", "no-such-service", "--type", "dgram")
        self.assertIn("unknown service 'no-such-service' for --type dgram", r.stderr)

    def test_usage_errors(self):
        for args in (["resolve"], ["resolve", "localhost", "--family", "ipx"],
                     ["resolve", "localhost", "--type", "raw"], ["resolve", "x", "1", "2"],
                     ["resolve", "localhost", "--bogus"], ["resolve", "localhost", "99999"],
                     ["resolve", "localhost", "65536"], ["resolve", "localhost", "-1"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("loopctl: error: "), (args, r.stderr))

    def test_port_range(self):
        # A number is a port: getaddrinfo itself would wrap 99999 to 34463.
        r = run("resolve", "localhost", "99999")
        self.assertEqual(r.stderr,
                         "loopctl: error: port: 99999 is outside 0-65535 (see loopctl --help)\n")
        self.assertEqual(r.stdout, "")
        got = loopctl_says("127.0.0.1", "65535", "--type", "stream")
        self.assertEqual([r["port"] for r in got], [65535])

    def test_trace_is_valid(self):
        r = run("--trace", "resolve", "127.0.0.1", "80")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(parse_jsonl(r.stdout))
        check_trace(self, parse_jsonl(r.stderr))

    def test_help_lists_defaults(self):
        r = run("resolve", "--help")
        self.assertEqual(r.returncode, 0)
        for text in ("--family", "--type", "inet6", "dgram", "any"):
            self.assertIn(text, r.stdout)


if __name__ == "__main__":
    main()
