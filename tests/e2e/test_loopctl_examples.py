"""loopctl's conventions and the documented timer examples (hello, date), end to end."""
import datetime
import json
import os
import re
import subprocess
import tempfile
import unittest

from loopctl_testlib import LOOPCTL, SOURCE_DIR, main, parse_jsonl, run

DATE_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")


class Conventions(unittest.TestCase):
    def test_version(self):
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.strip(), r"^loopctl \d+\.\d+\.\d+$")

    def test_help_lists_subcommands_and_defaults(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for name in ("hello", "date", "--trace", "--trace-format", "--debug"):
            self.assertIn(name, r.stdout)
        r = run("date", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--interval", r.stdout)
        self.assertIn("=1", r.stdout)  # the default is shown
        self.assertIn("=5", r.stdout)

    def test_unknown_option_is_usage_error(self):
        r = run("--no-such-option", "hello")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)
        self.assertNotIn("terminate called", r.stderr)

    def test_missing_subcommand_is_usage_error(self):
        r = run()
        self.assertEqual(r.returncode, 2)
        self.assertIn("loopctl: error: ", r.stderr)

    def test_bad_value_is_usage_error(self):
        for args in (("date", "--interval", "abc"), ("date", "--interval", "0"),
                     ("--trace-format=xml", "hello"), ("--slow-callback-ms=-3", "hello")):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertRegex(r.stderr, r"^loopctl: error: ", args)

    def test_usage_errors_are_one_line_that_says_what(self):
        cases = {
            ("bogus",): "unknown subcommand 'bogus'",
            ("-x",): "unknown option '-x'",
            ("--trace=", "hello"): "--trace=: an empty destination",
            ("echo-client", "127.0.0.1:9", "--count", "-1"): "--count: '-1' is not a number >= 0",
            ("echo-client", "127.0.0.1:9", "--count", "x"): "--count: 'x' is not a number >= 0",
            ("echo-server", "--port", "0", "--backlog", "0"):
                "--backlog: '0' is not a number greater than 0",
            ("sendfile", "send", "f", "127.0.0.1:9", "--offset", "-5"): "--offset: '-5' is not",
            ("watch-fd", "--fd", "-3"): "--fd: '-3' is not a number >= 0",
            ("echo-server", "--port", "0", "--unix", ""): "--unix: an empty unix socket path",
            ("sendfile", "serve", "f", "--port", "0", "--unix", ""): "--unix: an empty unix",
            ("hello", "--bogus"): "--bogus",
        }
        for args, said in cases.items():
            r = run(*args, timeout=10)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertTrue(r.stderr.startswith("loopctl: error: " + said) or
                            r.stderr.startswith("loopctl: error: ") and said in r.stderr,
                            (args, r.stderr))
            self.assertEqual(r.stderr.count("\n"), 1, (args, r.stderr))  # one line
            self.assertLess(len(r.stderr), 200, (args, r.stderr))
            self.assertEqual(r.stdout, "", args)

    def test_lost_output_is_a_runtime_failure(self):
        # A full disk, or a closed stdout: exit 1 and say so, never a silent success. A server
        # whose `listening on` line is lost stops (a script waiting for it would wait forever).
        for args in (("hello",), ("resolve", "localhost"), ("echo-server", "--port", "0"),
                     ("udp-echo-server", "--port", "0")):
            with open("/dev/full", "w") as full:
                r = subprocess.run([LOOPCTL, *args], stdout=full, stderr=subprocess.PIPE,
                                   text=True, timeout=10)
            self.assertEqual(r.returncode, 1, args)
            self.assertEqual(r.stderr, "loopctl: error: cannot write to standard output: "
                             "No space left on device\n", args)
        r = subprocess.run([LOOPCTL, "hello"], stderr=subprocess.PIPE, text=True, timeout=10,
                           preexec_fn=lambda: os.close(1))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr,
                         "loopctl: error: cannot write to standard output: Bad file descriptor\n")

    def test_unwritable_trace_file_is_runtime_error(self):
        r = run("--trace=/nonexistent-dir/trace.jsonl", "hello")
        self.assertEqual(r.returncode, 1)
        self.assertIn("loopctl: error: cannot open trace file /nonexistent-dir/trace.jsonl", r.stderr)


class Hello(unittest.TestCase):
    def test_output_to_the_letter(self):
        r = run("hello")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout, "Hello World\n")
        self.assertEqual(r.stderr, "")

    def test_bare_trace_goes_to_stderr_and_names_the_callback(self):
        r = run("--trace", "hello")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout, "Hello World\n")
        recs = parse_jsonl(r.stderr)
        kinds = [rec["ev"] for rec in recs]
        self.assertEqual(kinds[0], "loop_start")
        self.assertIn("iteration", kinds)
        callbacks = [rec for rec in recs if rec["ev"] == "callback"]
        self.assertEqual(len(callbacks), 1)
        self.assertIn("hello_world", callbacks[0]["name"])
        self.assertGreaterEqual(callbacks[0]["duration"], 0)
        for rec in recs:
            self.assertIsInstance(rec["ts"], (int, float))

    def test_chrome_trace_to_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.json")
            r = run("--trace=" + path, "--trace-format=chrome", "hello")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(path) as f:
                doc = json.load(f)
            events = doc["traceEvents"] if isinstance(doc, dict) else doc
            complete = [e for e in events if e.get("ph") == "X"]
            self.assertTrue(any("hello_world" in e["name"] for e in complete))

    def test_example_twin(self):
        import subprocess
        exe = os.path.join(os.environ.get("LOOP_BINARY_DIR", ""), "examples", "hello_world")
        out = subprocess.run([exe], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.stdout, "Hello World\n")


class Date(unittest.TestCase):
    def test_defaults_print_five_lines_a_second_apart(self):
        # Virtual clock: the same schedule without five seconds of waiting.
        r = run("--virtual-clock", "date")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 5)
        stamps = []
        for line in lines:
            self.assertRegex(line, DATE_LINE)
            stamps.append(datetime.datetime.strptime(line, "%Y-%m-%d %H:%M:%S.%f"))
        for a, b in zip(stamps, stamps[1:]):
            self.assertAlmostEqual((b - a).total_seconds(), 1.0, places=3)

    def test_real_time_interval_and_duration(self):
        import time
        t0 = time.monotonic()
        r = run("date", "--interval", "0.2", "--duration", "1")
        elapsed = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        # As the example: reschedule while time() + interval < end -> ticks at 0, .2, .4, .6, .8
        self.assertEqual(len(lines), 5)
        for line in lines:
            self.assertRegex(line, DATE_LINE)
        self.assertGreaterEqual(elapsed, 0.75)

    def test_trace_has_timers(self):
        r = run("--virtual-clock", "--trace", "date", "--interval", "1", "--duration", "3")
        self.assertEqual(r.returncode, 0)
        recs = parse_jsonl(r.stderr)
        scheduled = [x for x in recs if x["ev"] == "timer_scheduled"]
        self.assertEqual(len(scheduled), 2)
        timer_cbs = [x for x in recs if x["ev"] == "callback" and x["kind"] == "timer"]
        self.assertEqual(len(timer_cbs), 2)
        for cb in timer_cbs:
            self.assertIn("display_date", cb["name"])
            self.assertGreaterEqual(cb["started"], cb["scheduled"])


if __name__ == "__main__":
    main()
