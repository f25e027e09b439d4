# Convenience entry points. The build itself is CMake (CMakeLists.txt); these targets install the
# Debian packages it needs (scripts/deps.sh), configure, build and run.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all deps build demo test test-sanitize fuzz bench gpu-check clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/dpformer demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer build; long-running tests (label "slow") are skipped.
test-sanitize: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDPFORMER_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j$(JOBS) -LE slow

# libFuzzer targets of tests/fuzz, built with clang (ASan + UBSan), each run for FUZZ_SECONDS on a
# scratch copy of its corpus; fails on any crash, leak, hang or sanitizer report (docs/fuzzing.md).
fuzz:
	@scripts/deps.sh fuzz
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPFORMER_FUZZ=ON -DDPFORMER_CUDA=OFF -DDPFORMER_MPI=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzzers
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: build
	bench/step.sh $(BUILD)/dpformer

# On a machine with an NVIDIA GPU and the CUDA toolkit: build the CUDA backend, run the GPU parity
# tests, compute-sanitizer and the GPU step benchmark next to PyTorch (scripts/gpu_check.sh).
gpu-check: deps
	scripts/gpu_check.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-gpu
