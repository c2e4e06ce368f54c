# Thin wrapper over CMake: the README's two commands start here.
#   make run [ARGS="date --interval 0.5"]   install what is missing, build, run loopctl
#                                            (default: echo-server --trace on 127.0.0.1:8888)
#   make test                                install what is missing, build, run every test:
#                                            the suite, then the same under ASan+UBSan, the
#                                            thread-crossing tests under TSan, the fuzzers
#   make test SANITIZERS=0                   only the normal suite (a quick local check)
#   make test-sanitizers                     only the sanitizer and fuzzer part
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ARGS ?= echo-server --trace
CMAKE_FLAGS ?=
SANITIZERS ?= 1

.PHONY: all deps configure build run test test-sanitizers clean format bench package completions

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/cmd/loopctl/loopctl $(ARGS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --no-tests=error -j $(JOBS) --timeout 300
ifneq ($(SANITIZERS),0)
	JOBS=$(JOBS) scripts/test-sanitizers.sh
endif

# build-asan/, build-tsan/, build-fuzz/: see scripts/test-sanitizers.sh and docs/reliability.md.
test-sanitizers: deps
	JOBS=$(JOBS) scripts/test-sanitizers.sh

# make bench [BENCH_ARGS=--quick]: the benchmarks side by side (bench/run.py), on demand only.
bench: configure
	@scripts/install-deps.sh --bench
	python3 bench/run.py --build-dir $(BUILD_DIR) $(BENCH_ARGS)

package: build
	cd $(BUILD_DIR) && cpack

completions: build
	scripts/gen-cli-docs.sh $(BUILD_DIR)/cmd/loopctl/loopctl

format:
	@find libloop cmd examples tests bench -name '*.[ch]pp' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) build-asan build-tsan build-fuzz
