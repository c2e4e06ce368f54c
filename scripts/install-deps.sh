#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only those that are missing.
# Called by `make run` / `make test` (and `make bench` with --bench); safe to run again (it does nothing when all are present).
set -euo pipefail

packages=(
  g++ cmake make pkg-config dpkg-dev file
  libasio-dev libcli11-dev nlohmann-json3-dev catch2 libssl-dev
  openssl python3 procps
  clang libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer
)
# make bench: uvloop is a peer (run with Debian's /usr/bin/python3); nothing else needs it.
[ "${1:-}" = "--bench" ] && packages+=(python3-uvloop)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
