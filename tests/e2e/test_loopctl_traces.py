"""Every subcommand's --trace output validates against docs/trace.schema.json, and the
validator itself rejects what breaks the schema."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from trace_schema import errors as schema_errors
from loopctl_testlib import LOOPCTL, SOURCE_DIR, Server, main, parse_jsonl, run

with open(os.path.join(SOURCE_DIR, "docs", "trace.schema.json")) as f:
    SCHEMA = json.load(f)


def errors(value, schema):
    return schema_errors(value, schema, schema)


def subcommands():
    out, inside = [], False
    for line in run("--help").stdout.splitlines():
        if line.startswith("Subcommands:"):
            inside = True
        elif inside and line.strip():
            out.append(line.split()[0])
        elif inside:
            break
    return out


class Traces(unittest.TestCase):
    def check(self, text, expect=()):
        recs = parse_jsonl(text)
        self.assertTrue(recs, "empty trace")
        for rec in recs:
            self.assertEqual(errors(rec, SCHEMA), [], rec)
        kinds = {r["ev"] for r in recs}
        for k in expect:
            self.assertIn(k, kinds)
        return recs

    def test_validator_rejects_broken_records(self):
        self.assertEqual(errors({"ts": 1.0, "ev": "loop_start"}, SCHEMA), [])
        self.assertTrue(errors({"ev": "loop_start"}, SCHEMA))
        self.assertTrue(errors({"ts": "now", "ev": "loop_start"}, SCHEMA))
        self.assertTrue(errors({"ts": 1.0, "ev": "no_such_event"}, SCHEMA))
        self.assertTrue(errors({"ts": 1.0, "ev": "callback"}, SCHEMA))  # fields missing

    def test_examples(self):
        self.check(run("--trace", "hello").stderr, ["loop_start", "iteration", "callback"])
        self.check(run("--trace", "--virtual-clock", "date").stderr,
                   ["timer_scheduled", "callback"])
        self.check(run("--trace", "watch-fd").stderr, ["reader_added", "reader_removed"])
        self.check(run("--trace", "watch-fd", "--fd", "0", input="x\n").stderr)
        proc = subprocess.Popen([LOOPCTL, "--trace", "signals"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        proc.stdout.readline()
        proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        self.check(err, ["signal"])

    def test_echo_server_client_and_proxy(self):
        with Server("--trace", "echo-server", "--port", "0") as srv:
            with Server("--trace", "tls-proxy", "--listen", "127.0.0.1:0", "--upstream",
                        srv.endpoints[0]) as proxy:
                r = run("--trace", "echo-client", proxy.endpoints[0], "--count", "2")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.check(r.stderr, ["connection_made", "data_received"])
                code, _, err = proxy.stop()
                self.assertEqual(code, 0)
                self.check(err, ["server_listening", "connection_accepted", "server_closed"])
            code, _, err = srv.stop()
            self.assertEqual(code, 0)
            self.check(err, ["connection_made", "data_received", "eof_received", "connection_lost"])

    def test_workers_trace_every_loop_into_one_file(self):
        # Each worker's loop writes to the one trace, its records tagged "loop"; the kernel
        # spreads the connections over the workers (SO_REUSEPORT), so 64 reach both.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "workers.jsonl")
            with Server("--trace=" + path, "echo-server", "--port", "0", "--workers", "2") as srv:
                for _ in range(64):
                    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
                        c.sendall(b"x")
                        self.assertEqual(c.recv(10), b"x")
                code, _, err = srv.stop()
                self.assertEqual(code, 0, err)
            with open(path) as f:
                recs = self.check(f.read(), ["loop_start", "connection_accepted", "loop_close"])
        self.assertEqual({r.get("loop") for r in recs}, {0, 1})
        self.assertEqual(sorted(r["loop"] for r in recs if r["ev"] == "loop_start"), [0, 1])
        accepted = [r["loop"] for r in recs if r["ev"] == "connection_accepted"]
        self.assertEqual(len(accepted), 64)
        self.assertEqual(set(accepted), {0, 1})

    def test_every_other_subcommand_that_exists(self):
        subs = subcommands()
        with tempfile.TemporaryDirectory() as d:
            if "udp-echo-server" in subs and "udp-echo-client" in subs:
                with Server("--trace", "udp-echo-server", "--port", "0") as srv:
                    r = run("--trace", "udp-echo-client", srv.endpoints[0])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.check(r.stderr)
                    code, _, err = srv.stop()
                    self.check(err, ["datagram_received"])
            if "exec" in subs:
                with socket.socket() as ls:
                    ls.bind(("127.0.0.1", 0))
                    ls.listen(1)
                    ls.settimeout(30)
                    ep = "127.0.0.1:%d" % ls.getsockname()[1]
                    p = subprocess.Popen([LOOPCTL, "--trace", "exec", "echo hi", "--connect", ep],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
                    conn, _ = ls.accept()
                    with conn:
                        conn.settimeout(30)
                        while conn.recv(100):
                            pass
                    _, err = p.communicate(timeout=30)
                    self.assertEqual(p.returncode, 0, err)
                    self.check(err, ["subprocess_started", "pipe_data_received",
                                     "subprocess_exited"])
                with Server("--trace", "echo-server", "--port", "0", "--exec", "cat") as srv:
                    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as c:
                        c.sendall(b"x")
                        c.shutdown(socket.SHUT_WR)
                        self.assertEqual(c.recv(10), b"x")
                    code, _, err = srv.stop()
                    self.check(err, ["subprocess_started", "pipe_data_received",
                                     "subprocess_exited"])
            if "resolve" in subs:
                r = run("--trace", "resolve", "localhost", "80")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.check(r.stderr)
            if "sendfile" in subs:
                path = os.path.join(d, "f")
                with open(path, "wb") as f:
                    f.write(os.urandom(100000))
                with Server("--trace", "sendfile", "serve", path, "--port", "0") as srv:
                    with socket.create_connection(("127.0.0.1", srv.port)) as c:
                        got = b"".join(iter(lambda: c.recv(65536), b""))
                    self.assertEqual(len(got), 100000)
                    code, _, err = srv.stop()
                    self.check(err, ["connection_made"])


if __name__ == "__main__":
    main()
