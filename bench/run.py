#!/usr/bin/env python3
"""Runs the benchmarks side by side in one run and writes the results (issue 6).

    python3 bench/run.py [--quick] [--duration S] [--warmup S] [--only NAME,...]
                         [--skip echo,unix,udp,micro,tls,memory] [--name NAME] [--no-build]

Builds what it needs (bench_all, loopctl) in --build-dir, then:
  echo    every server x {1, 10, 100 KiB at 10 connections, 1 KiB at 1,000 connections} over TCP,
          1 KiB x 10 over unix sockets and UDP: bench/loadgen pinned to CPU 0, the server to CPU 1
          (taskset); the server's user/system CPU time per request over the measured window.
  micro   bench/micro/loop_micro (libloop) and micro.py (asyncio, uvloop), pinned to CPU 1;
          bench/micro/copy_alignment (the kernel's copy speed by the buffer's page offset).
  memory  the server's RSS holding N idle connections (10,000; 1,000 with --quick).
Writes bench/results/<date>-<name>.jsonl (one record per measurement) and <date>-<name>.md
(the tables, with the ratio libloop/peer). Standard library only. Every server it starts is
stopped (SIGTERM, then SIGKILL) in a finally block; every run is bounded in time.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import tls_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
SYS_PY = "/usr/bin/python3"  # Debian's: it has python3-uvloop (pyenv's python3 does not)
LOADGEN_CPU, SERVER_CPU = "0", "1"
NOTES = []  # what was skipped and why; goes into the markdown


def note(msg):
    NOTES.append(msg)
    print("note: " + msg, file=sys.stderr, flush=True)


# ---- Building ------------------------------------------------------------------------------

def build(build_dir, no_build):
    if not no_build:
        # The bench programs are off by default (make test does not build them): turn them on.
        subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DLOOP_BUILD_BENCH=ON",
                        "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build_dir, "-j2", "--target", "bench_all",
                        "loopctl"], check=True, stdout=subprocess.DEVNULL)
    return {
        "loadgen": os.path.join(build_dir, "bench", "loadgen"),
        "bin": os.path.join(build_dir, "bench"),
        "loopctl": os.path.join(build_dir, "cmd", "loopctl", "loopctl"),
    }


def loopctl_has(loopctl, sub):
    """Whether `loopctl` lists the subcommand (an unknown one prints the general help)."""
    if not os.access(loopctl, os.X_OK):
        return False
    out = subprocess.run([loopctl, "--help"], capture_output=True, text=True, timeout=10).stdout
    return re.search(r"^\s+%s\s" % re.escape(sub), out, re.M) is not None


# ---- The servers ---------------------------------------------------------------------------

class ServerSpec:
    """One server: how to start it for tcp/unix/udp (None = not supported)."""

    def __init__(self, name, group, libloop, tcp=None, unix=None, udp=None):
        self.name, self.group, self.libloop = name, group, libloop
        self.cmds = {"tcp": tcp, "unix": unix, "udp": udp}


def server_specs(paths):
    b, loopctl = paths["bin"], paths["loopctl"]
    py = os.path.join(BENCH, "servers", "pyecho.py")
    node = os.path.join(BENCH, "servers", "node_echo.js")
    specs = []
    if loopctl_has(loopctl, "echo-server"):
        specs.append(ServerSpec("loopctl-protocol", "protocol", True,
                                tcp=[loopctl, "echo-server", "--port", "0"],
                                unix=[loopctl, "echo-server", "--unix", "{path}"]))
        specs.append(ServerSpec("loopctl-protocol-trace", "protocol", True,
                                tcp=[loopctl, "--trace={trace}", "echo-server", "--port", "0"]))
    else:
        note("`loopctl echo-server` is not on this build yet: skipped; libloop's protocol "
             "echo is measured with bench/servers/loop_protocol_echo.cpp (create_server)")
    if loopctl_has(loopctl, "udp-echo-server"):
        specs.append(ServerSpec("loopctl-udp", "protocol", True,
                                udp=[loopctl, "udp-echo-server", "--port", "0"]))
    specs.append(ServerSpec("libloop-protocol", "protocol", True,
                            tcp=[os.path.join(b, "loop_protocol_echo"), "--port", "0"],
                            unix=[os.path.join(b, "loop_protocol_echo"), "--unix", "{path}"]))
    specs.append(ServerSpec("libloop-protocol-trace", "protocol", True,
                            tcp=[os.path.join(b, "loop_protocol_echo"), "--port", "0",
                                 "--trace", "{trace}"]))
    streams = os.path.join(b, "loop_streams_echo")
    if os.access(streams, os.X_OK):
        specs.append(ServerSpec("libloop-streams", "streams", True,
                                tcp=[streams, "--port", "0"], unix=[streams, "--unix", "{path}"]))
    else:
        note("libloop streams are not on main yet: the libloop streams echo server "
             "(bench/servers/loop_streams_echo.cpp) is skipped")
    specs.append(ServerSpec("libloop-sock", "sock", True,
                            tcp=[os.path.join(b, "loop_sock_echo"), "--port", "0"],
                            unix=[os.path.join(b, "loop_sock_echo"), "--unix", "{path}"]))
    specs.append(ServerSpec("libloop-udp", "protocol", True,
                            udp=[os.path.join(b, "loop_udp_echo"), "--port", "0"]))
    for impl in ("uvloop", "asyncio"):
        flag = ["--uvloop"] if impl == "uvloop" else []
        for mode in ("protocol", "streams", "sock"):
            base = [SYS_PY, py, "--mode", mode] + flag
            specs.append(ServerSpec("%s-%s" % (impl, mode), mode, False,
                                    tcp=base + ["--port", "0"],
                                    unix=base + ["--unix", "{path}"],
                                    udp=([SYS_PY, py, "--mode", "udp", "--port", "0"] + flag
                                         if mode == "protocol" else None)))
    if shutil.which("node"):
        specs.append(ServerSpec("node-net", "protocol", False,
                                tcp=["node", node, "--port", "0"],
                                unix=["node", node, "--unix", "{path}"],
                                udp=["node", node, "--udp", "--port", "0"]))
    else:
        note("node is not installed: Node.js skipped")
    specs.append(ServerSpec("asio", "protocol", False,
                            tcp=[os.path.join(b, "asio_echo"), "--port", "0"],
                            unix=[os.path.join(b, "asio_echo"), "--unix", "{path}"]))
    specs.append(ServerSpec("epoll-c", "limit", False,
                            tcp=[os.path.join(b, "epoll_echo"), "--port", "0"],
                            unix=[os.path.join(b, "epoll_echo"), "--unix", "{path}"],
                            udp=[os.path.join(b, "epoll_echo"), "--udp", "--port", "0"]))
    return specs


GLIBC_TUNABLES = ""  # set from --glibc-tunables


class Server:
    """A running server: started pinned to SERVER_CPU, stopped for sure in stop()."""

    def __init__(self, spec, family, tmp):
        self.spec, self.family = spec, family
        self.path = os.path.join(tmp, "%s.sock" % spec.name)
        self.trace = os.path.join(tmp, "%s.trace.jsonl" % spec.name)
        cmd = [a.replace("{path}", self.path).replace("{trace}", self.trace)
               for a in spec.cmds[family]]
        self.log = open(os.path.join(tmp, "%s-%s.log" % (spec.name, family)), "w+")
        env = dict(os.environ)
        if GLIBC_TUNABLES:  # --glibc-tunables: the same malloc settings for every server
            env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd,
                                     stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL, env=env)
        self.address = None

    def wait_listening(self, timeout=15):
        """Reads stdout until 'listening on ...'; returns the address (HOST:PORT or unix:PATH)."""
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                m = re.search(rb"listening on (\S+)", buf)
                if m:
                    self.address = m.group(1).decode()
                    return self.address
            if self.proc.poll() is not None:
                break
        raise RuntimeError("%s did not print 'listening on' (stdout %r)" % (self.spec.name, buf))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # A server that crashed on the way out (an abort, a segfault, an error exit) is reported:
        # its figures stand, but the crash is a bug to see (killed by our SIGTERM is fine).
        rc = self.proc.returncode
        self.crashed = rc not in (0, -signal.SIGTERM, -signal.SIGKILL)
        self.exit_status = rc
        self.proc.stdout.close()
        self.log.seek(0)
        err = self.log.read()[-2000:]
        self.log.close()
        if os.path.exists(self.trace):
            os.unlink(self.trace)
        return err

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None


def loadgen_target(family, address):
    if family == "unix":
        return ["--unix", address[len("unix:"):]]
    return ["--" + family, address]


# ---- The runs ------------------------------------------------------------------------------

def run_echo(specs, paths, family, conns, msg, args, tmp, out):
    for spec in specs:
        if spec.cmds[family] is None:
            continue
        rec = {"kind": "echo", "server": spec.name, "group": spec.group, "libloop": spec.libloop,
               "family": family, "conns": conns, "msg": msg}
        server = Server(spec, family, tmp)
        try:
            address = server.wait_listening()
            # The server's pid is taskset's: taskset execs the server in place.
            cmd = [paths["loadgen"], "--cpu", LOADGEN_CPU, "-c", str(conns), "-m", str(msg),
                   "-d", str(args.duration), "-w", str(args.warmup),
                   "--server-pid", str(server.proc.pid)] + loadgen_target(family, address)
            res = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=args.duration + args.warmup + 60)
            line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
            if line.startswith("{"):
                rec.update(json.loads(line))
                if "server_user_us_per_req" in rec:
                    rec["server_us_per_req"] = round(
                        rec["server_user_us_per_req"] + rec["server_sys_us_per_req"], 3)
            else:
                rec["error"] = "loadgen: " + res.stderr.strip()[-500:]
        except Exception as e:  # one server failing must not stop the run
            rec["error"] = str(e)
        finally:
            err = server.stop()
        if server.crashed:
            rec["server_exit"] = server.exit_status
            note("%s (%s %dx%d) exited with status %d when stopped: %s" %
                 (spec.name, family, conns, msg, server.exit_status, err.strip()[-300:]))
        if ("error" in rec or server.crashed) and err:
            rec["server_stderr"] = err[-500:]
        out(rec)


def run_memory(specs, paths, n, tmp, out):
    for spec in specs:
        if spec.cmds["tcp"] is None or spec.name.endswith("-trace"):
            continue
        rec = {"kind": "memory", "server": spec.name, "group": spec.group,
               "libloop": spec.libloop, "conns": n}
        server = Server(spec, "tcp", tmp)
        lg = None
        try:
            address = server.wait_listening()
            time.sleep(0.2)
            rec["rss_base_kib"] = server.rss_kib()
            lg = subprocess.Popen([paths["loadgen"], "--cpu", LOADGEN_CPU, "--idle", str(n),
                                   "--hold", "120", "--tcp", address],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
            r, _, _ = select.select([lg.stdout], [], [], 90)
            line = lg.stdout.readline() if r else ""
            if not line.startswith("{"):
                raise RuntimeError("idle loadgen: no answer (%s)" % line.strip())
            rec.update(json.loads(line))
            time.sleep(0.3)
            rec["rss_kib"] = server.rss_kib()
            rec["kib_per_conn"] = round((rec["rss_kib"] - rec["rss_base_kib"]) / n, 3)
        except Exception as e:
            rec["error"] = str(e)
        finally:
            if lg is not None:
                try:
                    lg.stdin.close()
                    lg.wait(timeout=10)
                except Exception:
                    lg.kill()
                    lg.wait()
            server.stop()
        out(rec)


def run_micro(paths, scale, out):
    """Each benchmark in its own process, so that one stuck peer cannot stall the run."""
    loop_micro = os.path.join(paths["bin"], "loop_micro")
    micro_py = os.path.join(BENCH, "micro", "micro.py")
    impls = [("libloop", [loop_micro]), ("asyncio", [SYS_PY, micro_py]),
             ("uvloop", [SYS_PY, micro_py, "--uvloop"])]
    for bench in ("call_soon", "timers", "timers_cancel", "add_reader", "sock_pingpong",
                  "executor"):
        for impl, cmd in impls:
            cmd = ["taskset", "-c", SERVER_CPU] + cmd + [bench, "--scale", str(scale)]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                lines = [l for l in res.stdout.splitlines() if l.startswith("{")]
                for line in lines:
                    rec = json.loads(line)
                    rec["kind"] = "micro"
                    out(rec)
                if res.returncode != 0 or not lines:
                    out({"kind": "micro", "impl": impl, "bench": bench,
                         "error": res.stderr[-500:]})
            except subprocess.TimeoutExpired:
                out({"kind": "micro", "impl": impl, "bench": bench, "error": "timed out"})
    # The kernel's copy into user memory by the buffer's page offset (why libloop's receive
    # buffers are page-aligned: libloop/src/io/io_buffer.hpp).
    cmd = ["taskset", "-c", SERVER_CPU, os.path.join(paths["bin"], "copy_alignment"),
           str(max(100, int(2000 * scale)))]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        for line in res.stdout.splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                rec["kind"] = "copy_alignment"
                out(rec)
    except (OSError, subprocess.TimeoutExpired) as e:
        out({"kind": "copy_alignment", "error": str(e)})


# ---- The report ----------------------------------------------------------------------------

def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"kind": "machine", "nproc": os.cpu_count(), "cpu": model,
            "kernel": platform.release(), "python": platform.python_version(),
            "sys_python": subprocess.run([SYS_PY, "--version"], capture_output=True,
                                         text=True).stdout.strip(),
            "node": (subprocess.run(["node", "--version"], capture_output=True, text=True)
                     .stdout.strip() if shutil.which("node") else None),
            "nofile_soft": soft, "nofile_hard": hard, "loadavg_at_start": load}


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%%.%df" % digits) % v
    return str(v)


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def summary(echo, scenarios):
    """Server CPU µs per request, every server x every scenario, with libloop-protocol/peer."""
    ref_name = "loopctl-protocol" if any(r["server"] == "loopctl-protocol" for r in echo) \
        else "libloop-protocol"
    ref = {(r["family"], r["conns"], r["msg"]): r.get("server_us_per_req") for r in echo
           if r["server"] == ref_name or (r["server"] == "libloop-udp" and r["family"] == "udp")}
    servers = []
    for r in echo:
        if r["server"] not in servers:
            servers.append(r["server"])
    cell = {(r["server"], r["family"], r["conns"], r["msg"]): r for r in echo}
    out = ["\n## Summary: server CPU µs per request (user+sys), and %s/this in brackets\n"
           % ref_name,
           "(UDP column: libloop-udp/this.)\n",
           "| server | " + " | ".join("%s %dx%s" % (f, c, ("%d KiB" % (m // 1024)) if m >= 1024
                                                    else "%d B" % m)
                                   for f, c, m in scenarios) + " |",
           "|---|" + "---|" * len(scenarios)]
    for name in servers:
        cells = []
        for key in scenarios:
            r = cell.get((name,) + key)
            v = r.get("server_us_per_req") if r else None
            cells.append("%s (%s)" % (fmt(v, 1), ratio(ref.get(key), v)) if v else "-")
        out.append("| %s | %s |" % (name, " | ".join(cells)))
    return out


def markdown(records, args):
    lines = []
    mach = next(r for r in records if r["kind"] == "machine")
    lines.append("# Benchmark run %s (%s)\n" % (mach["date"], args.name))
    lines.append("Machine: %d CPUs, %s, Linux %s; RLIMIT_NOFILE %s/%s (soft/hard); load "
                 "average at start %s. Load generator on CPU %s, server on CPU %s. Warm-up "
                 "%ss, measured %ss per run.\n" % (
                     mach["nproc"], mach["cpu"], mach["kernel"], mach["nofile_soft"],
                     mach["nofile_hard"], " ".join(mach["loadavg_at_start"]), LOADGEN_CPU,
                     SERVER_CPU, args.warmup, args.duration))
    echo = [r for r in records if r["kind"] == "echo"]
    scenarios = []
    for r in echo:
        key = (r["family"], r["conns"], r["msg"])
        if key not in scenarios:
            scenarios.append(key)
    lines += summary(echo, scenarios)
    for fam, conns, msg in scenarios:
        rows = [r for r in echo if (r["family"], r["conns"], r["msg"]) == (fam, conns, msg)]
        libs = [r for r in rows if r["libloop"] and r.get("server_us_per_req")
                and not r["server"].endswith("-trace")]
        lines.append("\n## Echo %s, %d connections, %s B messages\n" % (fam, conns, msg))
        head = ("| server | req/s | MiB/s | p50 µs | p99 µs | user µs/req | sys µs/req | "
                "CPU µs/req | " + " | ".join("%s/this" % r["server"] for r in libs) + " |")
        lines.append(head)
        lines.append("|" + "---|" * (8 + len(libs)))
        for r in rows:
            if "error" in r:
                lines.append("| %s | error: %s |" % (r["server"], r["error"][:120].replace(
                    "\n", " ")) + " |" * (7 + len(libs)))
                continue
            cells = [r["server"], fmt(r.get("rps"), 0), fmt(r.get("mib_s"), 1),
                     fmt(r.get("p50_us"), 0), fmt(r.get("p99_us"), 0),
                     fmt(r.get("server_user_us_per_req")), fmt(r.get("server_sys_us_per_req")),
                     fmt(r.get("server_us_per_req"))]
            cells += [ratio(l["server_us_per_req"], r.get("server_us_per_req")) for l in libs]
            if r.get("errors") or r.get("timeouts"):
                cells[0] += " (errors %s, timeouts %s)" % (r.get("errors"), r.get("timeouts"))
            lines.append("| " + " | ".join(cells) + " |")
    micro = [r for r in records if r["kind"] == "micro" and "error" not in r]
    if micro:
        lines.append("\n## Loop micro-benchmarks (lower is better)\n")
        lines.append("| benchmark | metric | libloop | asyncio | uvloop | libloop/asyncio | "
                     "libloop/uvloop |")
        lines.append("|---|---|---|---|---|---|---|")
        metrics = [("call_soon", "per_callback_us"), ("call_soon", "schedule_us"),
                   ("timers", "schedule_us"), ("timers", "schedule_warm_us"),
                   ("timers", "warm_page_faults"),
                   ("timers", "late_p99_ms"),
                   ("timers", "late_max_ms"), ("timers", "late_max_after_start_ms"),
                   ("timers_cancel", "schedule_us"),
                   ("timers_cancel", "cancel_us"), ("timers_cancel", "late_max_ms"),
                   ("timers_cancel", "late_max_after_start_ms"),
                   ("timers_cancel", "fired_cancelled"), ("add_reader", "per_trip_us"),
                   ("sock_pingpong", "per_trip_us"), ("executor", "per_trip_us")]
        for bench, metric in metrics:
            vals = {}
            for r in micro:
                if r["bench"] == bench:
                    vals[r["impl"]] = r.get(metric)
                    n = r.get("n")
            if not vals:
                continue
            lines.append("| %s (n=%s) | %s | %s | %s | %s | %s | %s |" % (
                bench, n, metric, fmt(vals.get("libloop"), 3), fmt(vals.get("asyncio"), 3),
                fmt(vals.get("uvloop"), 3),
                ratio(vals.get("libloop"), vals.get("asyncio")),
                ratio(vals.get("libloop"), vals.get("uvloop"))))
    for r in records:
        if r["kind"] == "micro" and "error" in r:
            lines.append("\nmicro %s failed: %s" % (r.get("impl"), r["error"][:300]))
        elif r["kind"] == "copy_alignment" and "error" in r:
            lines.append("\ncopy_alignment failed: %s" % r["error"][:300])
    copies = [r for r in records if r["kind"] == "copy_alignment" and "error" not in r]
    if copies:
        lines.append("\n## The kernel's copy into user memory, by the buffer's page offset\n")
        lines.append("A 256 KiB `pread` of a cached file (bench/micro/copy_alignment.c). On AMD "
                     "Zen, 1 to 31 bytes past a page boundary is about ten times slower.\n")
        lines.append("| offset | µs per 256 KiB | GB/s |")
        lines.append("|---|---|---|")
        for r in copies:
            lines.append("| %d | %s | %s |" % (r["offset"], fmt(r.get("us_per_256KiB"), 2),
                                                fmt(r.get("gb_s"), 2)))
    mem = [r for r in records if r["kind"] == "memory"]
    if mem:
        lib = [r for r in mem if r["libloop"] and r.get("rss_kib")]
        lines.append("\n## Memory: RSS holding %d idle connections (each echoed 16 bytes once)\n"
                     % mem[0]["conns"])
        lines.append("| server | RSS before MiB | RSS with conns MiB | KiB/conn | " +
                     " | ".join("%s/this" % r["server"] for r in lib) + " |")
        lines.append("|" + "---|" * (4 + len(lib)))
        for r in mem:
            if "error" in r:
                lines.append("| %s | error: %s |" % (r["server"], r["error"][:120]))
                continue
            cells = [r["server"], fmt(r["rss_base_kib"] / 1024, 1), fmt(r["rss_kib"] / 1024, 1),
                     fmt(r["kib_per_conn"])]
            cells += [ratio(l["rss_kib"], r["rss_kib"]) for l in lib]
            if r.get("errors"):
                cells[0] += " (errors %s)" % r["errors"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += tls_bench.markdown(records, fmt, ratio)
    if NOTES:
        lines.append("\n## Notes\n")
        lines += ["- " + n for n in NOTES]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--duration", type=float, help="measured seconds per echo run (3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per echo run (1)")
    parser.add_argument("--only", help="comma-separated server names (substring match)")
    parser.add_argument("--skip", default="",
                        help="comma-separated: echo,unix,udp,micro,tls,memory")
    parser.add_argument("--idle", type=int, help="idle connections for memory (10000)")
    parser.add_argument("--name", help="results name (default: full or quick)")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--report", help="only re-render the markdown of this .jsonl")
    parser.add_argument("--scenarios",
                        help="comma-separated FAMILY:CONNS:MSG echo scenarios, e.g. tcp:10:102400 "
                             "(default: all of them)")
    parser.add_argument("--glibc-tunables",
                        help="GLIBC_TUNABLES for every server, e.g. "
                             "glibc.malloc.trim_threshold=1000000000 (see docs/performance.md)")
    args = parser.parse_args()
    global GLIBC_TUNABLES
    GLIBC_TUNABLES = args.glibc_tunables or ""
    args.duration = args.duration or (0.6 if args.quick else 3.0)
    args.warmup = args.warmup or (0.2 if args.quick else 1.0)
    args.idle = args.idle or (1000 if args.quick else 10000)
    args.name = args.name or ("quick" if args.quick else "full")
    skip = set(filter(None, args.skip.split(",")))
    if args.report:
        records = [json.loads(l) for l in open(args.report)]
        saved = records[0].get("args", {})
        args.duration, args.warmup = saved.get("duration"), saved.get("warmup")
        args.name = saved.get("name", args.name)
        with open(args.report[:-len(".jsonl")] + ".md", "w") as f:
            f.write(markdown(records, args))
        return

    # As many fds as the hard limit allows, for the harness and (inherited) the servers.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 100:
        note("RLIMIT_NOFILE hard limit %d: idle connections lowered to %d" % (hard, hard - 100))
        args.idle = hard - 100

    paths = build(args.build_dir, args.no_build)
    specs = server_specs(paths)
    if args.only:
        wanted = args.only.split(",")
        specs = [s for s in specs if any(w in s.name for w in wanted)]

    date = datetime.date.today().isoformat()
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    base = os.path.join(BENCH, "results", "%s-%s" % (date, args.name))
    records = []
    mach = machine_info()
    mach["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    mach["args"] = vars(args)
    t_start = time.monotonic()
    with open(base + ".jsonl", "w") as jf, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        def out(rec):
            records.append(rec)
            jf.write(json.dumps(rec) + "\n")
            jf.flush()
            brief = {k: rec.get(k) for k in ("kind", "server", "impl", "bench", "family",
                                              "conns", "msg", "rps", "server_us_per_req",
                                              "rss_kib", "error") if rec.get(k) is not None}
            print(json.dumps(brief), flush=True)

        out(mach)
        if "echo" not in skip:
            scenarios = [("tcp", 10, 1024), ("tcp", 10, 10240), ("tcp", 10, 102400),
                         ("tcp", 1000, 1024)]
            if "unix" not in skip:
                scenarios.append(("unix", 10, 1024))
            if "udp" not in skip:
                scenarios.append(("udp", 10, 1024))
            if args.scenarios:
                scenarios = [(f, int(c), int(m)) for f, c, m in
                             (x.split(":") for x in args.scenarios.split(","))]
            for fam, conns, msg in scenarios:
                run_echo(specs, paths, fam, conns, msg, args, tmp, out)
        if "micro" not in skip:
            run_micro(paths, 0.1 if args.quick else 1.0, out)
        if "tls" not in skip and (not args.only or "tls" in args.only):
            tls_bench.run_tls(paths["loopctl"], max(2, int(args.duration)), tmp, out,
                              LOADGEN_CPU, SERVER_CPU)
        if "memory" not in skip:
            run_memory(specs, paths, args.idle, tmp, out)
    with open("/proc/loadavg") as f:
        NOTES.append("load average at the end: %s; the run took %.0f s. Other jobs share this "
                     "machine: compare by ratio within one run." % (
                         " ".join(f.read().split()[:3]), time.monotonic() - t_start))
    md = markdown(records, args)
    with open(base + ".md", "w") as f:
        f.write(md)
    print("wrote %s.jsonl and %s.md" % (base, base))


if __name__ == "__main__":
    main()
