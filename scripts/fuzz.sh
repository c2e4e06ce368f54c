#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (ASan + UBSan) in build-fuzz/ and runs each
# for a bounded time over its corpus in fuzz/corpus/<target>/ (read only: new inputs go to
# build-fuzz/corpus/<target>/). A crash, a leak, a sanitizer report or a failed check stops the
# run, leaves the input in build-fuzz/artifacts/, and fails the script; turn it into a
# regression test in tests/unit/ and add it to the corpus.
#   scripts/fuzz.sh [target...]        FUZZ_SECONDS=9 per target (default: all seven, ~1 min)
#   FUZZ_MERGE=1 scripts/fuzz.sh       also merge what was found into fuzz/corpus/ (to commit)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
dir=$src/build-fuzz
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-9}
CLANGXX=${CLANGXX:-$(command -v clang++ || command -v clang++-14 || true)}
[ -n "$CLANGXX" ] || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 1; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$src"/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

# -fsanitize=fuzzer-no-link gives the project's code the coverage hooks libFuzzer follows; the
# fuzz programs themselves link with -fsanitize=fuzzer (fuzz/CMakeLists.txt).
cmake -S "$src" -B "$dir" -DCMAKE_CXX_COMPILER="$CLANGXX" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
  -DLOOP_SANITIZE=address,undefined -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link \
  -DLOOP_BUILD_FUZZERS=ON -DLOOP_BUILD_TESTS=OFF -DLOOP_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$dir" -j "$JOBS" --target "${targets[@]}"

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$dir/artifacts"
status=0
summary=()
for t in "${targets[@]}"; do
  corpus=$src/fuzz/corpus/${t#fuzz_}
  scratch=$dir/corpus/${t#fuzz_}
  mkdir -p "$corpus" "$scratch"
  log=$dir/$t.log
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb bounds memory.
  if "$dir/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" "$scratch" "$corpus" \
      >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    summary+=("$t: ${execs:-?} executions in ${SECONDS_PER_TARGET}s, $cov, corpus $(ls "$corpus" | wc -l) + $(ls "$scratch" | wc -l) new")
  else
    status=1
    summary+=("$t: FAILED (see $log and $dir/artifacts/)")
    tail -60 "$log" >&2
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$dir/fuzz/$t" -merge=1 "$corpus" "$scratch" >>"$log" 2>&1 || true
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
exit $status
