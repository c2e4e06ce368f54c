"""loopctl watch-fd and signals: the documented examples and the real-descriptor modes."""
import os
import signal
import subprocess
import tempfile
import time
import unittest

from loopctl_testlib import LOOPCTL, main, parse_jsonl, run


class WatchFd(unittest.TestCase):
    def test_example_output_to_the_letter(self):
        r = run("watch-fd")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "Received: abc\n")

    def test_example_trace_shows_reader_and_callbacks(self):
        r = run("--trace", "watch-fd")
        self.assertEqual(r.returncode, 0)
        recs = parse_jsonl(r.stderr)
        kinds = [x["ev"] for x in recs]
        self.assertIn("reader_added", kinds)
        self.assertIn("reader_removed", kinds)
        names = [x["name"] for x in recs if x["ev"] == "callback"]
        self.assertIn("wsock.send", names)
        self.assertTrue(any("reader" in n for n in names), names)

    def test_pipe_on_stdin_until_eof(self):
        r = run("watch-fd", "--fd", "0", input="one\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "Received: one\n")

    def test_raw_passes_bytes_through(self):
        data = "".join("line %d\n" % i for i in range(2000))
        r = run("watch-fd", "--fd", "0", "--raw", input=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data)

    def test_fifo_waits_for_a_writer_and_stops_at_eof(self):
        with tempfile.TemporaryDirectory() as d:
            fifo = os.path.join(d, "fifo")
            os.mkfifo(fifo)
            proc = subprocess.Popen([LOOPCTL, "watch-fd", "--path", fifo],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)
            self.assertIsNone(proc.poll(), "watch-fd must wait for a writer, not see EOF")
            with open(fifo, "w") as w:
                w.write("hello\n")
                w.flush()
                time.sleep(0.2)
                w.write("world\n")
            out, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual(out.replace("Received: ", "").split(), ["hello", "world"])

    def test_errors(self):
        r = run("watch-fd", "--path", "/nonexistent/x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("loopctl: error: cannot open /nonexistent/x: No such file or directory",
                      r.stderr)
        with tempfile.NamedTemporaryFile() as f:
            r = run("watch-fd", "--path", f.name)
            self.assertEqual(r.returncode, 1)
            self.assertIn("regular file", r.stderr)
        # epoll refuses files that are always ready (EPERM): said in words, not as a syscall.
        r = run("watch-fd", "--path", "/dev/null")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "loopctl: error: cannot watch /dev/null: this file does not "
                                   "support waiting for readiness (epoll refuses it); watch a "
                                   "pipe, FIFO, tty or socket\n")
        r = run("watch-fd", "--fd", "97")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot watch fd 97: Bad file descriptor", r.stderr)
        r = run("watch-fd", "--fd", "0", "--path", "/tmp")
        self.assertEqual(r.returncode, 2)

    def test_sigint_stops_cleanly_with_a_complete_chrome_trace(self):
        import json
        with tempfile.TemporaryDirectory() as d:
            fifo = os.path.join(d, "fifo")
            trace = os.path.join(d, "t.json")
            os.mkfifo(fifo)
            proc = subprocess.Popen([LOOPCTL, "--trace=" + trace, "--trace-format=chrome",
                                     "watch-fd", "--path", fifo],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 128 + signal.SIGINT, err)
            with open(trace) as f:
                doc = json.load(f)  # complete, valid JSON
            self.assertTrue(any(e.get("name") == "signal" for e in doc))


class Signals(unittest.TestCase):
    def _start(self, *args):
        proc = subprocess.Popen([LOOPCTL, "signals", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        return proc, first, second

    def test_sigint_and_sigterm(self):
        for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
            proc, first, second = self._start()
            self.assertEqual(first, "Event loop running forever, press Ctrl+C to interrupt.\n")
            self.assertEqual(second, "pid %d: send SIGINT or SIGTERM to exit.\n" % proc.pid)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual(out, "got signal %s: exit\n" % name)

    def test_custom_signal_list(self):
        proc, first, second = self._start("--signals", "usr1,HUP")
        self.assertEqual(second, "pid %d: send SIGUSR1 or SIGHUP to exit.\n" % proc.pid)
        proc.send_signal(signal.SIGHUP)
        out, _ = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(out, "got signal SIGHUP: exit\n")

    def test_bad_signals_are_usage_errors(self):
        for arg in ("SIGKILL", "NOPE", "SIGINT,,SIGTERM", "0"):
            r = run("signals", "--signals", arg)
            self.assertEqual(r.returncode, 2, arg)
            self.assertTrue(r.stderr.startswith("loopctl: error: "), r.stderr)


if __name__ == "__main__":
    main()
