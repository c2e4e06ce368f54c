#!/usr/bin/env bash
# Deterministic per-request costs of one echo server, for a machine too noisy for CPU times:
#   bench/profile_echo.sh BUILD_DIR SERVER-CMD...
# 1. user-space instructions per request (valgrind --tool=callgrind, counters zeroed after a
#    warm-up, dumped after a fixed number of seconds of 10 x 1 KiB echo), and
# 2. system calls per request (strace -c over 2 s of the same load).
# Prints one JSON line. The server is started on 127.0.0.1 port 0 and always stopped.
set -euo pipefail
build=$1
shift
loadgen=$build/bench/loadgen
tmp=$(mktemp -d)
srv=
cleanup() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

start() {  # start [wrapper...] -- server...: sets $srv and $port
  mkfifo "$tmp/out"
  "$@" >"$tmp/out" 2>"$tmp/err" &
  srv=$!
  exec 3<"$tmp/out"
  local line
  read -r -t 60 line <&3
  port=${line##*:}
  rm "$tmp/out"
}
stop() {
  kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  srv=
  exec 3<&-
}

# 1. callgrind
start valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" "$@"
"$loadgen" --cpu -1 --tcp "127.0.0.1:$port" -c 10 -m 1024 -d 2 -w 0 >/dev/null || true
callgrind_control -z "$srv" >/dev/null
reqs=$("$loadgen" --cpu -1 --tcp "127.0.0.1:$port" -c 10 -m 1024 -d 4 -w 0 |
  sed -E 's/.*"requests":([0-9]+).*/\1/')
callgrind_control -d "$srv" >/dev/null
sleep 0.5
stop
ir=$(grep -h '^summary:' "$tmp"/cg.*.[0-9]* 2>/dev/null | tail -1 | awk '{print $2}')

# 2. strace -c
start "$@"
"$loadgen" --cpu -1 --tcp "127.0.0.1:$port" -c 10 -m 1024 -d 3 -w 0 >"$tmp/lg" &
lg=$!
sleep 0.5
timeout -s INT 2 strace -c -f -p "$srv" -o "$tmp/strace" || true
wait $lg || true
stop
# Requests during the strace window: recvfrom/read calls that returned data are not separable
# from EAGAIN ones, so normalise by sendto (one per echo for every server here).
python3 - "$tmp/strace" "$ir" "$reqs" "$*" <<'EOF'
import json, sys
path, ir, reqs, cmd = sys.argv[1:]
calls = {}
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
sends = calls.get("sendto", 0) or calls.get("write", 0) or calls.get("writev", 0) or 1
per = {k: round(v / sends, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
       if v / sends >= 0.01}
print(json.dumps({"server": cmd, "requests_under_callgrind": int(reqs or 0),
                  "instructions_per_request": round(int(ir) / int(reqs)) if ir and reqs else None,
                  "syscalls_per_send": per}))
EOF
