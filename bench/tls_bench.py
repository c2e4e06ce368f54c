"""TLS figures for bench/run.py: `loopctl echo-server --cert/--key` next to `openssl s_server`.

- Handshakes: `openssl s_time -new` (a fresh full handshake per connection, TLS 1.3, nothing
  sent after it) for D seconds; handshakes/s, and the server's CPU µs per handshake from
  /proc/PID/stat (utime + stime), as the echo runs measure it.
- Echo: one TLS connection from a Python ssl client keeping 8 lines of 4 KiB in flight for D
  seconds; MiB/s echoed and the server's CPU µs per MiB. s_server's `-rev` echoes each line
  reversed, the same number of bytes; the client checks the byte count of every answer.

Both servers run pinned to the server CPU, the clients to the load generator's CPU. The
certificate is made here, at run time (a throwaway self-signed one for localhost).
"""
import os
import re
import socket
import ssl
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_cert(tmp):
    cert, key = os.path.join(tmp, "tls-cert.pem"), os.path.join(tmp, "tls-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on %d" % port)


def start_servers(loopctl, cert, key, server_cpu):
    """(name, argv) for each server, on a port chosen now."""
    out = []
    port = free_port()
    out.append(("loopctl-tls", port, ["taskset", "-c", server_cpu, loopctl, "echo-server",
                                      "--port", str(port), "--cert", cert, "--key", key]))
    port = free_port()
    out.append(("openssl-s_server", port, ["taskset", "-c", server_cpu, "openssl", "s_server",
                                           "-accept", "127.0.0.1:%d" % port, "-cert", cert,
                                           "-key", key, "-rev", "-quiet", "-naccept", "1000000"]))
    return out


def handshakes(port, seconds, client_cpu):
    res = subprocess.run(["taskset", "-c", client_cpu, "openssl", "s_time", "-connect",
                          "127.0.0.1:%d" % port, "-new", "-time", str(int(seconds))],
                         capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"(\d+) connections in (\d+) real seconds", res.stdout)
    if not m:
        raise RuntimeError("s_time: %s" % (res.stdout + res.stderr)[-300:])
    return int(m.group(1))


ECHO_CLIENT = r"""
import os, socket, ssl, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
line = b"a" * 4095 + b"\n"
inflight, done, pending = 0, 0, 0
deadline = time.monotonic() + seconds
start = time.monotonic()
while True:
    while inflight < 8 and time.monotonic() < deadline:
        s.sendall(line)
        inflight += 1
    if inflight == 0:
        break
    data = s.recv(1 << 16)
    if not data:
        raise SystemExit("server closed")
    pending += len(data)
    while pending >= len(line):
        pending -= len(line)
        inflight -= 1
        done += len(line)
print(done, time.monotonic() - start)
"""


def echo(port, seconds, client_cpu):
    res = subprocess.run(["taskset", "-c", client_cpu, "/usr/bin/python3", "-c", ECHO_CLIENT,
                          str(port), str(seconds)], capture_output=True, text=True,
                         timeout=seconds + 60)
    parts = res.stdout.split()
    if res.returncode != 0 or len(parts) != 2:
        raise RuntimeError("echo client: %s" % res.stderr[-300:])
    return int(parts[0]), float(parts[1])


def run_tls(loopctl, duration, tmp, out, client_cpu, server_cpu):
    cert, key = make_cert(tmp)
    for name, port, argv in start_servers(loopctl, cert, key, server_cpu):
        # Nothing piped: s_server writes a line per connection, and a full pipe would stall it.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        rec = {"kind": "tls", "server": name}
        try:
            wait_port(port)
            handshakes(port, 1, client_cpu)  # warm-up
            c0 = cpu_seconds(proc.pid)
            n = handshakes(port, duration, client_cpu)
            c1 = cpu_seconds(proc.pid)
            rec["handshakes"] = n
            rec["handshakes_per_s"] = round(n / duration, 1)
            rec["server_us_per_handshake"] = round((c1 - c0) * 1e6 / max(n, 1), 1)
            c0 = cpu_seconds(proc.pid)
            nbytes, secs = echo(port, duration, client_cpu)
            c1 = cpu_seconds(proc.pid)
            mib = nbytes / (1 << 20)
            rec["echo_mib_s"] = round(mib / secs, 1)
            rec["server_us_per_mib"] = round((c1 - c0) * 1e6 / max(mib, 1e-9), 0)
        except Exception as e:  # one failing server must not stop the run
            rec["error"] = str(e)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out(rec)


def markdown(records, fmt, ratio):
    tls = [r for r in records if r.get("kind") == "tls"]
    if not tls:
        return []
    lib = next((r for r in tls if r["server"] == "loopctl-tls" and "error" not in r), None)
    lines = ["\n## TLS (TLS 1.3, RSA 2048): handshakes and echo\n",
             "| server | handshakes/s | server CPU µs/handshake | echo MiB/s | "
             "server CPU µs/MiB | loopctl/this µs/handshake | loopctl/this µs/MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in tls:
        if "error" in r:
            lines.append("| %s | error: %s | | | | | |" % (r["server"], r["error"][:120]))
            continue
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r["server"], fmt(r["handshakes_per_s"], 0), fmt(r["server_us_per_handshake"], 0),
            fmt(r["echo_mib_s"], 1), fmt(r["server_us_per_mib"], 0),
            ratio(lib and lib["server_us_per_handshake"], r["server_us_per_handshake"]),
            ratio(lib and lib["server_us_per_mib"], r["server_us_per_mib"])))
    return lines
