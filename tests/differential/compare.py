#!/usr/bin/env python3
"""Runs every scenario of a differential pair and compares the two outputs line by line.

    compare.py PROGRAM SCRIPT.py [SCENARIO...]

PROGRAM is the libloop half (scenario.hpp), SCRIPT.py the asyncio half (differential.py),
run with the python3 that runs this script. Both must list the same scenarios, exit 0, and
print the same lines. Every mismatch is reported (a unified diff, asyncio's lines first)
before the exit status says whether there was one.
"""
import difflib
import subprocess
import sys

TIMEOUT = 60


def run(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return out, f"timed out after {TIMEOUT} s", None
    return p.stdout, p.stderr, p.returncode


def names(argv):
    out, err, rc = run(argv + ["--list"])
    if rc != 0:
        sys.exit(f"{' '.join(argv)} --list failed ({rc}): {err}")
    return out.split()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cpp = [sys.argv[1]]
    py = [sys.executable, sys.argv[2]]
    wanted = sys.argv[3:]
    cpp_names, py_names = names(cpp), names(py)
    failures = []
    for only, where in ((set(cpp_names) - set(py_names), "the C++ program only"),
                        (set(py_names) - set(cpp_names), "the Python script only")):
        for name in sorted(only):
            failures.append(f"{name}: in {where}")
    for name in wanted or [n for n in cpp_names if n in py_names]:
        py_out, py_err, py_rc = run(py + [name])
        cpp_out, cpp_err, cpp_rc = run(cpp + [name])
        problems = []
        if py_rc != 0:
            problems.append(f"asyncio exited {py_rc}:\n{py_err}")
        if cpp_rc != 0:
            problems.append(f"libloop exited {cpp_rc}:\n{cpp_err}")
        if not py_out.strip():
            problems.append("asyncio printed nothing: the scenario checks nothing")
        if py_out != cpp_out:
            diff = difflib.unified_diff(py_out.splitlines(), cpp_out.splitlines(),
                                        "asyncio", "libloop", lineterm="")
            problems.append("\n".join(diff))
        if problems:
            failures.append(f"{name}:\n" + "\n".join(problems))
        else:
            print(f"ok {name} ({len(py_out.splitlines())} lines)")
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
