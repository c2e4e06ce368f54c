#!/usr/bin/env bash
# cmake --install, then a consumer built against the installed tree with find_package and with
# pkg-config; then the .deb from CPack, unpacked with dpkg into a scratch root, runs.
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -x "$work/prefix/bin/loopctl"
"$work/prefix/bin/loopctl" --version | grep -Eq '^loopctl [0-9]+\.[0-9]+\.[0-9]+$'

# find_package(libloop)
cmake -S "$src/tests/packaging/consumer" -B "$work/consumer-cmake" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer-cmake" >/dev/null
"$work/consumer-cmake/consumer" | grep -qx 'answer 42'
echo "find_package consumer: ok"

# pkg-config libloop
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$work/prefix/lib/x86_64-linux-gnu/pkgconfig"
g++ "$src/tests/packaging/consumer/main.cpp" -o "$work/consumer-pc" \
  $(pkg-config --cflags libloop) $(pkg-config --libs libloop)
"$work/consumer-pc" | grep -qx 'answer 42'
echo "pkg-config consumer: ok"

# The .deb, installed with dpkg into a scratch root.
(cd "$build" && cpack -G DEB -B "$work/pkg" >/dev/null)
deb=$(ls "$work"/pkg/*.deb)
mkdir -p "$work/root/var/lib/dpkg/updates" "$work/root/var/lib/dpkg/info"
touch "$work/root/var/lib/dpkg/status"
dpkg --root="$work/root" --force-not-root --force-depends --log=/dev/null -i "$deb" >/dev/null
"$work/root/usr/bin/loopctl" --version | grep -Eq '^loopctl [0-9]+\.[0-9]+\.[0-9]+$'
dpkg --root="$work/root" -L loopctl | grep -q '/usr/include/loop/loop.hpp'
echo "deb: ok ($(basename "$deb"))"
echo "1 passed, 0 failed"
