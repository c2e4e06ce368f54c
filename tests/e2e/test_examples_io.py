"""The fd-watcher and signal examples of the asyncio docs, run as programs."""
import os
import signal
import subprocess
import sys
import unittest

BINARY_DIR = os.environ.get("LOOP_BINARY_DIR", os.path.join(os.path.dirname(__file__), "../../build"))


def example(name):
    return os.path.join(BINARY_DIR, "examples", name)


class WatchFd(unittest.TestCase):
    def test_prints_received_abc_and_exits(self):
        r = subprocess.run([example("watch_fd")], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "Received: abc\n")
        self.assertEqual(r.stderr, "")


class Signals(unittest.TestCase):
    def run_and_send(self, sig):
        p = subprocess.Popen([example("signals")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            first = p.stdout.readline()
            second = p.stdout.readline()
            self.assertEqual(first, "Event loop running forever, press Ctrl+C to interrupt.\n")
            self.assertEqual(second, "pid %d: send SIGINT or SIGTERM to exit.\n" % p.pid)
            p.send_signal(sig)
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        return p.returncode, out, err

    def test_sigint_stops_the_loop(self):
        code, out, err = self.run_and_send(signal.SIGINT)
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "got signal SIGINT: exit\n")
        self.assertEqual(err, "")

    def test_sigterm_stops_the_loop(self):
        code, out, err = self.run_and_send(signal.SIGTERM)
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "got signal SIGTERM: exit\n")


if __name__ == "__main__":
    unittest.main()
