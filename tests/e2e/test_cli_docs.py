"""Shell completions and the man page: generated from the CLI11 definitions, committed copies
in step with the binary, and bash completion working for real."""
import os
import subprocess
import unittest

from loopctl_testlib import LOOPCTL, SOURCE_DIR, main, run

COPIES = {
    ("completion", "bash"): "completions/loopctl.bash",
    ("completion", "zsh"): "completions/_loopctl",
    ("completion", "fish"): "completions/loopctl.fish",
    ("manpage",): "docs/loopctl.1",
}


def bash_complete(line):
    """What bash completion offers for `line` (the cursor at its end)."""
    script = os.path.join(SOURCE_DIR, "completions", "loopctl.bash")
    words = line.split(" ")
    quoted = " ".join("'%s'" % w for w in words)
    prog = f"""
source '{script}'
complete -p loopctl >/dev/null || exit 3
COMP_WORDS=({quoted})
COMP_CWORD={len(words) - 1}
COMP_LINE='{line}'
_loopctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise AssertionError("bash failed: " + out.stderr)
    return out.stdout.split()


class Drift(unittest.TestCase):
    def test_committed_copies_match_the_binary(self):
        for args, rel in COPIES.items():
            r = run(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(SOURCE_DIR, rel)) as f:
                self.assertEqual(f.read(), r.stdout,
                                 f"{rel} is stale: run `make completions` and commit")

    def test_every_subcommand_is_in_every_completion_and_the_man_page(self):
        help_text = run("--help").stdout
        subs = []
        in_subs = False
        for line in help_text.splitlines():
            if line.startswith("Subcommands:"):
                in_subs = True
                continue
            if in_subs:
                if not line.strip():
                    break
                subs.append(line.split()[0])
        self.assertIn("hello", subs)
        for args, rel in COPIES.items():
            text = run(*args).stdout
            for sub in subs:
                self.assertIn(sub, text, (rel, sub))


class BashCompletion(unittest.TestCase):
    def test_subcommands(self):
        got = bash_complete("loopctl ")
        self.assertIn("hello", got)
        self.assertIn("date", got)
        self.assertIn("--trace", got)
        self.assertEqual(bash_complete("loopctl he"), ["hello"])

    def test_subcommand_options(self):
        got = bash_complete("loopctl date --")
        self.assertIn("--interval", got)
        self.assertIn("--duration", got)
        self.assertNotIn("--trace-format", got)

    def test_option_values(self):
        self.assertEqual(sorted(bash_complete("loopctl --trace-format ")), ["chrome", "jsonl"])
        self.assertEqual(sorted(bash_complete("loopctl completion ")),
                         ["--help", "-h", "bash", "fish", "zsh"])


class ManPage(unittest.TestCase):
    def test_renders(self):
        path = os.path.join(SOURCE_DIR, "docs", "loopctl.1")
        try:
            r = subprocess.run(["man", "-l", path], capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, MANWIDTH="100"))
        except FileNotFoundError:
            self.skipTest("man is not installed")
        self.assertIn("SUBCOMMANDS", r.stdout)
        self.assertIn("EXIT STATUS", r.stdout)


if __name__ == "__main__":
    main()
