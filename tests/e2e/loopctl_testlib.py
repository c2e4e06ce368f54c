"""Shared helpers for loopctl's end-to-end tests: run the binary, start servers, read traces."""
import json
import os
import re
import signal
import subprocess
import time
import unittest

LOOPCTL = os.environ.get("LOOPCTL") or os.path.join(
    os.environ.get("LOOP_BINARY_DIR", "build"), "cmd", "loopctl", "loopctl")
SOURCE_DIR = os.environ.get("LOOP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BINARY_DIR = os.environ.get("LOOP_BINARY_DIR", os.path.join(SOURCE_DIR, "build"))


def run(*args, timeout=30, input=None, env=None):
    """Runs loopctl to completion; returns CompletedProcess with text stdout/stderr."""
    full_env = dict(os.environ)
    full_env.pop("LOOP_DEBUG", None)
    if env:
        full_env.update(env)
    return subprocess.run([LOOPCTL, *args], capture_output=True, text=True, timeout=timeout,
                          input=input, env=full_env)


class Server:
    """A loopctl server subprocess; waits for its `listening on` line(s)."""

    def __init__(self, *args, lines=1, timeout=10, env=None):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen([LOOPCTL, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=full_env)
        self.endpoints = []
        deadline = time.monotonic() + timeout
        while len(self.endpoints) < lines:
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("server did not print its listening line")
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()
                raise RuntimeError("server exited early: " + err)
            m = re.match(r"listening on (.*)$", line.strip())
            if m:
                self.endpoints.append(m.group(1))

    @property
    def port(self):
        return int(self.endpoints[0].rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGINT, timeout=10):
        """Sends `sig`, waits; returns (returncode, rest of stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def parse_jsonl(text):
    """The JSON records of a JSON Lines trace (lines that are not JSON are an error)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main():
    unittest.main(verbosity=2)
