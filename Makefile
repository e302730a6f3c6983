# implant-hub — every target uses the environment in .venv/ (created by `make setup`).
SHELL := /bin/bash
PY      := .venv/bin/python
ARCH    ?= aarch64
HOST_ARCH := $(shell uname -m)

CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L
CWARN   := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# -ffp-contract=off: no fused multiply-add, so x86_64 and aarch64 round identically.
COPT    := -O3 -fPIC -ffp-contract=off -fno-math-errno -fvisibility=default
CFLAGS  := $(CSTD) $(CWARN) $(COPT) -Ic_kernels/include
SRCS    := $(sort $(wildcard c_kernels/src/*.c))
HDRS    := $(wildcard c_kernels/include/*.h)
CC_aarch64 := aarch64-linux-gnu-gcc
CC_armhf   := arm-linux-gnueabihf-gcc
QEMU_aarch64 := qemu-aarch64 -L /usr/aarch64-linux-gnu
QEMU_armhf   := qemu-arm -L /usr/arm-linux-gnueabihf
NATIVE_DIR := hub/kernels/_native

.PHONY: all setup sysdeps kernels cross test test-c test-cross test-py lint proto proto-check \
        fuzz fuzz-ci bench run clean

all: kernels

# ---------------------------------------------------------------- environment
setup: .venv/.stamp kernels
.venv/.stamp: pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[host,test]"
	@touch $@

# System packages the tests need (cross compilers, qemu, valgrind, reference codecs).
SYSDEPS := gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross qemu-user \
           valgrind flac zstd clang libclang-rt-dev
sysdeps:
	@if ! command -v qemu-aarch64 >/dev/null || ! command -v $(CC_aarch64) >/dev/null \
	    || ! command -v $(CC_armhf) >/dev/null || ! command -v clang >/dev/null \
	    || ! command -v valgrind >/dev/null || ! command -v flac >/dev/null; then \
	  echo "installing system packages: $(SYSDEPS)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root (or sudo) for apt-get"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS) >/dev/null; \
	fi

# ---------------------------------------------------------------- kernels
build/native/libnk.so: $(SRCS) $(HDRS) Makefile
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -shared -o $@ $(SRCS) -lm

kernels: build/native/libnk.so
	@mkdir -p $(NATIVE_DIR)/include
	cp build/native/libnk.so $(NATIVE_DIR)/libnk_$(HOST_ARCH).so
	cp $(HDRS) $(NATIVE_DIR)/include/

build/%/libnk.so: $(SRCS) $(HDRS) Makefile
	@mkdir -p $(@D)
	$(CC_$*) $(CFLAGS) -shared -o $@ $(SRCS) -lm

cross: build/$(ARCH)/libnk.so build/$(ARCH)/nk_selftest
	@file build/$(ARCH)/libnk.so 2>/dev/null || true

# ---------------------------------------------------------------- C tests
build/native/nk_selftest: c_kernels/tests/nk_selftest.c $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(SRCS) -lm
build/%/nk_selftest: c_kernels/tests/nk_selftest.c $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC_$*) $(CFLAGS) -static -o $@ $< $(SRCS) -lm
build/san/nk_selftest: c_kernels/tests/nk_selftest.c $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(CWARN) -O1 -g -ffp-contract=off -Ic_kernels/include \
	  -fsanitize=address,undefined -fno-sanitize-recover=all -o $@ $< $(SRCS) -lm

test-c: build/san/nk_selftest build/native/nk_selftest
	build/san/nk_selftest > build/san/selftest.txt
	build/native/nk_selftest > build/native/selftest.txt
	diff -u build/native/selftest.txt build/san/selftest.txt
	@echo "C self-test (ASan+UBSan): $$(grep -c ' ok' build/native/selftest.txt) checks, outputs identical"

# Bit-identity across architectures: every kernel's output hash must match the native run.
test-cross: build/native/nk_selftest build/aarch64/nk_selftest build/armhf/nk_selftest
	build/native/nk_selftest > build/native/selftest.txt
	$(QEMU_aarch64) build/aarch64/nk_selftest > build/aarch64/selftest.txt
	$(QEMU_armhf) build/armhf/nk_selftest > build/armhf/selftest.txt
	diff -u build/native/selftest.txt build/aarch64/selftest.txt
	diff -u build/native/selftest.txt build/armhf/selftest.txt
	@echo "cross: aarch64 and armhf (qemu) outputs bit-identical to $(HOST_ARCH): $$(wc -l < build/native/selftest.txt) hashes"

# ---------------------------------------------------------------- Python
test-py: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: setup
	$(PY) -m ruff check hub host_tools hil tests
	$(PY) -m mypy

test: sysdeps setup test-c test-cross lint test-py

bench: setup sysdeps
	@mkdir -p out
	$(PY) -m host_tools.bench --out out/bench.json $(BENCH_ARGS)

run: setup
	$(PY) -m hil.demo $(RUN_ARGS)

clean:
	rm -rf build $(NATIVE_DIR) out
