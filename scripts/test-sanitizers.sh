#!/usr/bin/env bash
# The suite under sanitizers, then the fuzz targets for a bounded time. Called by `make test`.
#   scripts/test-sanitizers.sh [asan] [tsan] [fuzz]     (default: all three, in that order)
# asan: the whole suite (unit + e2e) built with -fsanitize=address,undefined in build-asan/.
# tsan: the tests that cross threads (threadsafe, executor, signals, DNS, the slab allocator's
#   cross-thread frees) in build-tsan/.
# fuzz: scripts/fuzz.sh (clang + libFuzzer), a bounded time per target over fuzz/corpus/.
# Any report fails: the sanitizers exit non-zero (halt_on_error, exitcode), and every report is
# also written under <build>/sanitizer-logs/, which must be empty at the end — this catches a
# report from a loopctl child whose exit status an e2e test does not look at.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
supp=$src/tests/sanitizers

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(asan tsan fuzz)

# The installed-tree test links an uninstrumented consumer against the library: not meaningful
# under sanitizers (and it rebuilds the package); the normal suite runs it.
EXCLUDE='^packaging:'

# Fails if any sanitizer wrote a report (see above), printing them.
check_logs() {
  local dir=$1
  if compgen -G "$dir/*" >/dev/null; then
    echo "test-sanitizers: sanitizer reports in $dir:" >&2
    cat "$dir"/* >&2
    return 1
  fi
}

# Before trusting a clean run: the canary's misdeeds must fail it (non-zero exit) and leave a
# report in the log directory, with the options in force.
check_canary() { # build-dir log-dir misdeed...
  local dir=$1 logs=$2 k
  shift 2
  for k in "$@"; do
    if "$dir/sanitizer_canary" "$k" 2>/dev/null; then
      echo "test-sanitizers: the canary's '$k' was not reported: reports would not fail" >&2
      return 1
    fi
    # ASan and TSan honour log_path; GCC's UBSan next to ASan writes to stderr regardless, so
    # for UBSan the non-zero exit is what fails a run.
    if [ "$k" != ub ] && ! compgen -G "$logs/*" >/dev/null; then
      echo "test-sanitizers: the canary's '$k' left no report in $logs" >&2
      return 1
    fi
    rm -f "$logs"/*
  done
}

# Called as `configure_build ... || return 1`: the steps run in `step || status=1`, where bash
# ignores set -e, so a failed build would otherwise go on to a ctest that finds no tests.
configure_build() { # dir sanitizers [targets...]
  local dir=$1 san=$2
  shift 2
  # -O1 -g1: what the sanitizers' docs advise (readable stacks, line numbers), and much
  # faster to compile than -O2 -g on 2 cores. Asserts stay on (no NDEBUG).
  cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
    -DLOOP_SANITIZE="$san" >/dev/null || return 1
  if [ $# -eq 0 ]; then
    cmake --build "$dir" -j "$JOBS" || return 1
  else
    cmake --build "$dir" -j "$JOBS" --target "$@" || return 1
  fi
}

run_asan() {
  local dir=$src/build-asan logs=$src/build-asan/sanitizer-logs
  configure_build "$dir" address,undefined || return 1
  rm -rf "$logs" && mkdir -p "$logs"
  # exitcode: a report makes any sanitized process (a test, or loopctl under an e2e test) exit
  # 86, whatever it would have returned. detect_leaks: leaks at exit are reports too.
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:exitcode=86:abort_on_error=0:strict_init_order=1:check_initialization_order=1:detect_stack_use_after_return=1:log_path=$logs/asan:suppressions=$supp/asan.supp"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan:suppressions=$supp/ubsan.supp"
  check_canary "$dir" "$logs" leak ub || return 1
  local rc=0
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$JOBS" --timeout 600 \
    -E "$EXCLUDE") || rc=$?
  check_logs "$logs" || rc=1
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
  return $rc
}

# The test programs that cross threads: call_soon_threadsafe, run_in_executor, signal handlers
# (a signal from another thread), getaddrinfo on the executor, the Poller's wake-up, blocks
# freed on another thread than the one that allocated them. Selected by program name.
TSAN_PROGRAMS='(thread|executor|signal|dns|call_soon|current_loop|poller|slab)'

run_tsan() {
  local dir=$src/build-tsan logs=$src/build-tsan/sanitizer-logs targets=()
  local f name
  for f in "$src"/tests/unit/*/test_*.cpp; do
    name=$(basename "$f" .cpp)
    [[ $name =~ $TSAN_PROGRAMS ]] && targets+=("$name")
  done
  [ ${#targets[@]} -eq 0 ] && { echo "test-sanitizers: no TSan test programs" >&2; return 1; }
  # The differential scenarios of signals, the executor and call_soon_threadsafe.
  targets+=(diff_loop_services)
  configure_build "$dir" thread sanitizer_canary "${targets[@]}" || return 1
  rm -rf "$logs" && mkdir -p "$logs"
  export TSAN_OPTIONS="halt_on_error=1:exitcode=86:second_deadlock_stack=1:log_path=$logs/tsan:suppressions=$supp/tsan.supp"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  check_canary "$dir" "$logs" race || return 1
  local rc=0
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$JOBS" --timeout 600 \
    -R "^test_[a-z_]*${TSAN_PROGRAMS}[a-z_]*:|^differential: diff_loop_services$") || rc=$?
  check_logs "$logs" || rc=1
  unset TSAN_OPTIONS UBSAN_OPTIONS
  return $rc
}

status=0
for step in "${steps[@]}"; do
  start=$(date +%s)
  case $step in
    asan) run_asan || status=1 ;;
    tsan) run_tsan || status=1 ;;
    fuzz) "$src/scripts/fuzz.sh" || status=1 ;;
    *) echo "test-sanitizers: unknown step $step (asan, tsan, fuzz)" >&2; exit 2 ;;
  esac
  echo "test-sanitizers: $step done in $(($(date +%s) - start))s (status so far: $status)"
done
exit $status
