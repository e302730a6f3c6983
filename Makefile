# implant-hub — every target uses the environment in .venv/ (created by `make setup`).
SHELL := /bin/bash
PY      := .venv/bin/python
ARCH    ?= aarch64
HOST_ARCH := $(shell uname -m)

CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L
CWARN   := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# -ffp-contract=off: no fused multiply-add, so x86_64 and aarch64 round identically.
# -fvisibility=hidden: only what the headers mark NK_API_BEGIN..NK_API_END is exported.
COPT    := -O3 -fPIC -ffp-contract=off -fno-math-errno -fvisibility=hidden
CFLAGS  := $(CSTD) $(CWARN) $(COPT) -Ic_kernels/include
SRCS    := $(sort $(wildcard c_kernels/src/*.c))
HDRS    := $(wildcard c_kernels/include/*.h)
CC_aarch64 := aarch64-linux-gnu-gcc
CC_armhf   := arm-linux-gnueabihf-gcc
QEMU_aarch64 := qemu-aarch64 -L /usr/aarch64-linux-gnu
QEMU_armhf   := qemu-arm -L /usr/arm-linux-gnueabihf
NATIVE_DIR := hub/kernels/_native

.PHONY: all setup sysdeps kernels cross test test-all test-build test-fast test-c test-cross \
        test-py lint fuzz fuzz-ci bench run clean proto proto-check hil hil-bci hil-faults bundle \
        hil-arm sysdeps-arm hil-mpy hil-timesync hil-soak flash-emulator hil-nwb \
        sorting-report

all: kernels

# ---------------------------------------------------------------- environment
setup: .venv/.stamp kernels
.venv/.stamp: pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[host,test]"
	@touch $@

# System packages the tests need (cross compilers, qemu, valgrind, reference codecs, an sshd
# for the deploy-over-ssh test).
SYSDEPS := gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross qemu-user \
           valgrind flac zstd clang libclang-rt-dev chromium openssh-server
sysdeps:
	@if ! command -v qemu-aarch64 >/dev/null || ! command -v $(CC_aarch64) >/dev/null \
	    || ! command -v $(CC_armhf) >/dev/null || ! command -v clang >/dev/null \
	    || ! command -v valgrind >/dev/null || ! command -v flac >/dev/null \
	    || ! command -v chromium >/dev/null || ! test -x /usr/sbin/sshd; then \
	  echo "installing system packages: $(SYSDEPS)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root (or sudo) for apt-get"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS) >/dev/null; \
	fi

# ---------------------------------------------------------------- kernels
build/native/libnk.so: $(SRCS) $(HDRS) Makefile
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -o $@ $(SRCS) -lm

# The cffi declarations, compiled once into a pure-Python module (out-of-line ABI mode).
FFI_MODULE := hub/kernels/_nk_cffi.py
$(FFI_MODULE): $(HDRS) hub/kernels/_build.py .venv/.stamp
	$(PY) hub/kernels/_build.py c_kernels/include $@

kernels: build/native/libnk.so $(FFI_MODULE)
	@mkdir -p $(NATIVE_DIR)
	@# copy + rename: a running hub keeps its mapping (cp in place would crash it)
	cp build/native/libnk.so $(NATIVE_DIR)/.libnk_$(HOST_ARCH).so.tmp
	mv -f $(NATIVE_DIR)/.libnk_$(HOST_ARCH).so.tmp $(NATIVE_DIR)/libnk_$(HOST_ARCH).so

build/%/libnk.so: $(SRCS) $(HDRS) Makefile
	@mkdir -p $(@D)
	$(CC_$*) $(CFLAGS) -shared -o $@ $(SRCS) -lm

# ---------------------------------------------------------------- hub distribution
# make bundle ARCH=aarch64|armhf|x86_64 → dist/implant-hub-<version>-<arch>.tar.gz (see
# packaging/bundle.py): hub wheel with libnk for ARCH, dependency wheels, unit, config,
# install.sh, SHA-256 manifest. Install: `hubctl deploy BUNDLE --to DIR|ssh://user@host`.
BUNDLE_LIB_x86_64  := build/native/libnk.so
BUNDLE_LIB_aarch64 := build/aarch64/libnk.so
BUNDLE_LIB_armhf   := build/armhf/libnk.so
bundle: setup $(BUNDLE_LIB_$(ARCH))
	@test -n "$(BUNDLE_LIB_$(ARCH))" || { echo "ARCH must be aarch64, armhf or x86_64"; exit 2; }
	$(PY) packaging/bundle.py --arch $(ARCH) --lib $(BUNDLE_LIB_$(ARCH))

# ---------------------------------------------------------------- C tests
# Every c_kernels/tests/*.c is a program that prints "<check> <hash> ok|FAIL" lines and exits
# non-zero on failure. They run natively, under ASan+UBSan, and under qemu for aarch64/armhf;
# the outputs must be identical (bit-identical kernels on every architecture).
CTESTS   := $(basename $(notdir $(wildcard c_kernels/tests/*.c)))
TESTHDRS := $(wildcard c_kernels/tests/*.h)
SANFLAGS := $(CSTD) $(CWARN) -O1 -g -ffp-contract=off -Ic_kernels/include \
            -fsanitize=address,undefined -fno-sanitize-recover=all

build/native/tests/%: c_kernels/tests/%.c $(SRCS) $(HDRS) $(TESTHDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(SRCS) -lm
build/san/tests/%: c_kernels/tests/%.c $(SRCS) $(HDRS) $(TESTHDRS)
	@mkdir -p $(@D)
	$(CC) $(SANFLAGS) -o $@ $< $(SRCS) -lm
build/aarch64/tests/%: c_kernels/tests/%.c $(SRCS) $(HDRS) $(TESTHDRS)
	@mkdir -p $(@D)
	$(CC_aarch64) $(CFLAGS) -static -o $@ $< $(SRCS) -lm
build/armhf/tests/%: c_kernels/tests/%.c $(SRCS) $(HDRS) $(TESTHDRS)
	@mkdir -p $(@D)
	$(CC_armhf) $(CFLAGS) -static -o $@ $< $(SRCS) -lm

test-c: $(addprefix build/native/tests/,$(CTESTS)) $(addprefix build/san/tests/,$(CTESTS))
	@set -e; for t in $(CTESTS); do \
	  build/native/tests/$$t > build/native/tests/$$t.txt; \
	  build/san/tests/$$t > build/san/tests/$$t.txt; \
	  diff -u build/native/tests/$$t.txt build/san/tests/$$t.txt; \
	  echo "C test $$t (native and ASan+UBSan): $$(grep -c ' ok$$' build/native/tests/$$t.txt) checks ok"; \
	done

cross: build/$(ARCH)/libnk.so $(addprefix build/$(ARCH)/tests/,$(CTESTS))
	@file build/$(ARCH)/libnk.so 2>/dev/null || true

# Bit-identity across architectures: every check's output hash must match the native run.
test-cross: $(foreach a,native aarch64 armhf,$(addprefix build/$(a)/tests/,$(CTESTS)))
	@set -e; for t in $(CTESTS); do \
	  build/native/tests/$$t > build/native/tests/$$t.txt; \
	  $(QEMU_aarch64) build/aarch64/tests/$$t > build/aarch64/tests/$$t.txt; \
	  $(QEMU_armhf) build/armhf/tests/$$t > build/armhf/tests/$$t.txt; \
	  diff -u build/native/tests/$$t.txt build/aarch64/tests/$$t.txt; \
	  diff -u build/native/tests/$$t.txt build/armhf/tests/$$t.txt; \
	  echo "C test $$t: aarch64 and armhf (qemu) bit-identical to $(HOST_ARCH) ($$(wc -l < build/native/tests/$$t.txt) lines)"; \
	done

# ---------------------------------------------------------------- fuzzing
# libFuzzer targets: c_kernels/fuzz/fuzz_*.c (LLVMFuzzerTestOneInput); atheris targets:
# tests/fuzz/fuzz_*.py. fuzz-ci is the bounded run CI does; `make fuzz` runs longer.
CFUZZ  := $(basename $(notdir $(wildcard c_kernels/fuzz/fuzz_*.c)))
PYFUZZ := $(wildcard tests/fuzz/fuzz_*.py)
FUZZ_SECONDS ?= 15
build/fuzz/%: c_kernels/fuzz/%.c $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	clang -std=c11 -g -O1 -ffp-contract=off -Ic_kernels/include \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -o $@ $< $(SRCS) -lm

fuzz-ci: setup $(addprefix build/fuzz/,$(CFUZZ))
	@set -e; for f in $(CFUZZ); do \
	  mkdir -p build/fuzz/$$f.corpus; \
	  echo "libFuzzer $$f for $(FUZZ_SECONDS) s"; \
	  build/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	    -artifact_prefix=build/fuzz/$$f- build/fuzz/$$f.corpus > build/fuzz/$$f.log 2>&1 \
	    || { tail -n 30 build/fuzz/$$f.log; echo "FAIL: $$f found a crash"; exit 1; }; \
	  tail -n 2 build/fuzz/$$f.log; \
	done
	@set -e; mkdir -p build/fuzz; for f in $(PYFUZZ); do \
	  n=$$(basename $$f .py); \
	  echo "atheris $$f for $(FUZZ_SECONDS) s"; \
	  $(PY) $$f -max_total_time=$(FUZZ_SECONDS) -atheris_runs=0 \
	    -artifact_prefix=build/fuzz/$$n- > build/fuzz/$$n.log 2>&1 \
	    || { tail -n 30 build/fuzz/$$n.log; echo "FAIL: $$f found a crash"; exit 1; }; \
	  tail -n 2 build/fuzz/$$n.log; \
	done

fuzz:
	$(MAKE) fuzz-ci FUZZ_SECONDS=300

# C driver for instruction counts (valgrind), used by the front-end benchmark.
build/native/bench/%: c_kernels/bench/%.c $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -g -o $@ $< $(SRCS) -lm

# ---------------------------------------------------------------- wire format
# The generated protobuf code is committed in hub/wire/; proto-check proves it matches proto/.
PROTOC := $(PY) -m grpc_tools.protoc -Iproto
proto: setup
	$(PROTOC) --python_out=hub/wire --pyi_out=hub/wire proto/hub.proto
proto-check: setup
	@rm -rf build/proto && mkdir -p build/proto
	@$(PROTOC) --python_out=build/proto --pyi_out=build/proto proto/hub.proto
	@diff -q build/proto/hub_pb2.py hub/wire/hub_pb2.py && \
	  diff -q build/proto/hub_pb2.pyi hub/wire/hub_pb2.pyi && echo "hub/wire/hub_pb2 is fresh"

# ---------------------------------------------------------------- Python
# --basetemp: this checkout's own scratch (several checkouts share the machine's /tmp)
test-py: setup
	$(PY) -m pytest -q -rs -p no:cacheprovider --basetemp=build/pytest tests

lint: setup
	$(PY) -m ruff check hub host_tools hil bench tests
	$(PY) -m mypy

# `make test` runs every check and ends with one PASS/FAIL line (and its wall time).
test:
	@start=$$(date +%s); \
	if $(MAKE) --no-print-directory test-all; then \
	  echo "PASS: make test ($$(( $$(date +%s) - start )) s)"; \
	else echo "FAIL: make test ($$(( $$(date +%s) - start )) s; the first failure is above)"; \
	  exit 1; fi
test-all: sysdeps setup proto-check test-c test-cross lint test-py fuzz-ci

# Every binary the tests run (C self-tests native, sanitized, cross; libFuzzer targets): CI
# builds them before it starts the CPU hogs, which are there to test the tests, not gcc.
test-build: setup $(foreach a,native san aarch64 armhf,$(addprefix build/$(a)/tests/,$(CTESTS))) \
            $(addprefix build/fuzz/,$(CFUZZ))

# Development loop (< 1 min): the unit tests, without the process chains (-m "not slow").
test-fast: setup
	@start=$$(date +%s); \
	if $(PY) -m pytest -q -p no:cacheprovider --basetemp=build/pytest -m "not slow" tests; then \
	  echo "PASS: make test-fast ($$(( $$(date +%s) - start )) s)"; \
	else echo "FAIL: make test-fast ($$(( $$(date +%s) - start )) s)"; exit 1; fi

bench: setup sysdeps build/native/bench/frontend_bench
	@mkdir -p out
	$(PY) -m bench --out out/bench.json $(BENCH_ARGS)

# docs/sorting.md from the hub re-run on every cached sorting recording (offline sorts cached;
# fill the cache with `nice -n 10 .venv/bin/python -m bench.sorting_fill`)
sorting-report: setup
	$(PY) -m bench.sorting_report --run

run: setup
	$(PY) -m hil.demo $(RUN_ARGS)

# Hardware-in-the-loop scenarios → out/hil/report.json + report.md (TCP uplink) and
# out/hil/ble_report.json + ble_report.md (BLE over the virtual air)
hil: setup
	$(PY) -m hil.scenarios $(HIL_ARGS); tcp=$$?; \
	$(PY) -m hil.ble_hil $(HIL_ARGS) && exit $$tcp

# Fault-injection soak (minutes, not CI): RST storms, squatters on the uplink and implant ports,
# intruder centrals, implant reconnects with new formats, corrupt state on restart; accounting
# and "nothing invented" checked → out/hil/faults.json + faults.md. FAULT_ARGS="--duration 600"
hil-faults: setup
	$(PY) -m hil.fault_soak $(FAULT_ARGS)

# The aarch64 hub in the HIL chain (hil/arm.py): bundle → Debian arm64 root (mmdebstrap,
# cached under ~/.cache/implant-hub) → hubctl deploy → bit identity → chain → out/hil/arm_summary.json
hil-arm: setup sysdeps-arm
	$(MAKE) bundle ARCH=aarch64
	$(PY) -m hil.arm --arch aarch64 --bundle dist/implant-hub-$$($(PY) -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')-aarch64.tar.gz $(HIL_ARM_ARGS)

# What make hil-arm and the ssh deploy test need beyond `sysdeps`.
SYSDEPS_ARM := mmdebstrap qemu-user-static binfmt-support arch-test openssh-server
sysdeps-arm:
	@if ! command -v mmdebstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null \
	    || ! command -v update-binfmts >/dev/null \
	    || { ! command -v sshd >/dev/null && ! test -x /usr/sbin/sshd; }; then \
	  echo "installing system packages: $(SYSDEPS_ARM)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS_ARM) >/dev/null; \
	fi

# The implant emulator as MicroPython firmware (hil/implant_fw, compiled with mpy-cross, run on
# the unix port): the chain's summary → out/hil/mpy_summary.json, then the MicroPython
# scenarios → out/hil/mpy_report.{json,md,html} (CI runs `--only summary --seconds 6`)
hil-mpy: setup
	$(PY) -m hil.mpy_hil $(HIL_ARGS)

# Two 10-minute time-sync sessions (+80 and −120 ppm; the drift-recovery table), not in CI
hil-timesync: setup
	$(PY) -m hil.mpy_hil --only timesync_plus80_10min --only timesync_minus120_10min \
	  --out out/hil-timesync $(HIL_ARGS)

# Long soak (≥ 30 min, not in CI): memory of every process of the chain over time
hil-soak: setup
	$(PY) -m hil.soak $(SOAK_ARGS)

# Deploy the firmware to a board: make flash-emulator PORT=/dev/ttyACM0 [FW_CONFIG=cfg.json]
flash-emulator: setup
	@test -n "$(PORT)" || { echo "usage: make flash-emulator PORT=/dev/ttyACM0"; exit 2; }
	$(PY) -m hil.flash --port $(PORT) $(if $(FW_CONFIG),--config $(FW_CONFIG))

# Closed-loop BCI (decoding, issue 15): tuned implant → hub → virtual BLE 2M → host decoder →
# cursor → simulated user → implant, real time (~15 min) → out/hil/bci/report.json + report.md.
# BCI_ARGS: --only spikes_tc,spikes_units,ecog_hg  --quick  --block-ms 20 (loaded machine)
hil-bci: setup
	$(PY) -m hil.closed_loop $(BCI_ARGS)
# The 60 s BLE session recorded to NWB and checked (tests/test_nwb.py, marked slow).
hil-nwb: setup
	NWB_LONG=1 $(PY) -m pytest -q -p no:cacheprovider -s tests/test_nwb.py -k sixty

clean:
	rm -rf build $(NATIVE_DIR) $(FFI_MODULE) out dist
