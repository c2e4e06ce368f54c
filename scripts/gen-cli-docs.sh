#!/usr/bin/env bash
# Regenerates the shell completions and the man page from loopctl's CLI11 definitions.
# `make completions` runs it; a test fails when the committed copies drift from the binary.
set -euo pipefail
loopctl=${1:-build/cmd/loopctl/loopctl}
cd "$(dirname "$0")/.."
"$loopctl" completion bash > completions/loopctl.bash
"$loopctl" completion zsh > completions/_loopctl
"$loopctl" completion fish > completions/loopctl.fish
"$loopctl" manpage > docs/loopctl.1
echo "regenerated completions/ and docs/loopctl.1"
