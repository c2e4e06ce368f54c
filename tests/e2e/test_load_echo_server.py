"""Load: 10,000 concurrent connections to `loopctl echo-server` (issue 7), bounded in time.
All connections are opened and held at once, then each sends its own pseudo-random bytes in
two rounds and checks the echo byte for byte; the server's RSS is read before, at the peak and
after (all closed); the server then stops cleanly (exit 0, nothing on stderr).
LOAD_CONNECTIONS overrides the count (it is capped by RLIMIT_NOFILE)."""
import asyncio
import json
import os
import random
import resource
import subprocess
import time
import unittest

from loopctl_testlib import Server, main

ROUNDS = 2
SIZE = 1024
BOUND = 120  # seconds for the whole exchange


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def hold_and_echo(port, n):
    connecting = asyncio.Semaphore(256)  # the listen backlog, not the number held

    async def connect():
        async with connecting:
            return await asyncio.open_connection("127.0.0.1", port)

    conns = await asyncio.gather(*(connect() for _ in range(n)), return_exceptions=True)
    held = [c for c in conns if not isinstance(c, BaseException)]
    failures = [repr(c) for c in conns if isinstance(c, BaseException)]

    async def exchange(i, r, w):
        rnd = random.Random(i)
        for _ in range(ROUNDS):
            data = rnd.randbytes(SIZE)
            w.write(data)
            await w.drain()
            if await r.readexactly(SIZE) != data:
                return False
        return True

    results = await asyncio.gather(*(exchange(i, r, w) for i, (r, w) in enumerate(held)),
                                   return_exceptions=True)
    return held, failures, results


class LoadEchoServer(unittest.TestCase):
    def test_ten_thousand_concurrent_connections_every_byte_checked(self):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        n = min(int(os.environ.get("LOAD_CONNECTIONS", "10000")), soft - 200)
        with Server("echo-server", "--port", "0") as srv:
            pid = srv.proc.pid
            rss_before = rss_kib(pid)
            peak = {}

            async def run():
                start = time.monotonic()
                held, failures, results = await asyncio.wait_for(
                    hold_and_echo(srv.port, n), BOUND)
                peak["rss"] = rss_kib(pid)
                peak["seconds"] = time.monotonic() - start
                for r, w in held:
                    w.close()
                await asyncio.gather(*(w.wait_closed() for r, w in held),
                                     return_exceptions=True)
                return held, failures, results

            held, failures, results = asyncio.run(run())
            self.assertEqual(failures, [])
            self.assertEqual(len(held), n)
            bad = [r for r in results if r is not True]
            self.assertEqual(bad, [], f"{len(bad)} connections lost or corrupted")
            time.sleep(0.5)  # let the server see every close
            rss_after = rss_kib(pid)
            code, out, err = srv.stop(timeout=60)
            self.assertEqual(code, 0, err)
            self.assertEqual(err, "")
            print(f"\nload: {n} connections held, {n * ROUNDS * SIZE} bytes echoed and checked "
                  f"in {peak['seconds']:.1f}s; server RSS {rss_before} KiB before, "
                  f"{peak['rss']} KiB at the peak, {rss_after} KiB after")


    def test_the_bench_load_generator_twice_every_byte_checked_rss_flat(self):
        # bench/loadgen (raw epoll, no libloop): N connections each echoing 1 KiB requests
        # back to back for a bounded time, every answer compared byte for byte; a request
        # unanswered for 2 s kills its connection and counts as an error. Two waves: the
        # server's RSS after the second must be where the first left it (nothing grows with
        # the connections served).
        loadgen = os.path.join(os.environ.get("LOOP_BINARY_DIR", "build"), "bench", "loadgen")
        if not os.access(loadgen, os.X_OK):
            self.fail("no load generator at %s (built with the tests)" % loadgen)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        n = min(int(os.environ.get("LOAD_CONNECTIONS", "10000")), (soft - 200) // 2)
        seconds = os.environ.get("LOAD_SECONDS", "5")
        with Server("echo-server", "--port", "0", "--backlog", "4096") as srv:
            pid = srv.proc.pid
            after = []
            for wave in range(2):
                r = subprocess.run([loadgen, "--tcp", "127.0.0.1:%d" % srv.port, "-c", str(n),
                                    "-m", "1024", "-d", seconds, "-w", "1", "--cpu", "0"],
                                   capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, r.stderr)
                res = json.loads(r.stdout)
                self.assertEqual((res["errors"], res["timeouts"]), (0, 0), res)
                self.assertGreater(res["requests"], n)  # every connection went round at least once
                time.sleep(0.5)  # let the server see every close
                after.append(rss_kib(pid))
                print("\nload wave %d: %d connections, %d requests (%.0f/s) checked, server RSS "
                      "%d KiB after" % (wave + 1, n, res["requests"], res["rps"], after[-1]))
            # Under AddressSanitizer freed memory sits in its quarantine (256 MB), so RSS
            # grows with every free there: the check means something only without it.
            if "ASAN_OPTIONS" not in os.environ:
                self.assertLessEqual(after[1], after[0] * 1.25 + 2048, after)
            code, out, err = srv.stop(timeout=60)
            self.assertEqual(code, 0, err)


if __name__ == "__main__":
    main()
