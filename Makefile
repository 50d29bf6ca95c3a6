# rust-ioreq: `make run` boots the demo, `make test` runs every check, `make bench` prints the
# benchmark table. All do all set-up first (as root: apt packages, deb-src entries, the pinned
# Xen source).

SHELL := /bin/bash
.DEFAULT_GOAL := help

BUILD      := $(CURDIR)/build
XEN        := $(BUILD)/xen/xen/xen
IMAGES     := $(BUILD)/guests
HARNESS    := $(CURDIR)/target/release/harness
SCENARIOS  := $(sort $(wildcard tests/scenarios/*.toml))
DEMO       ?= blk-rw
# The benchmark scenario: outside tests/scenarios, so `make test` does not run it.
BENCH      := tests/bench/bench.toml
# Seconds; empty = interactive console (quit with Ctrl-A X).
RUN_TIMEOUT ?=
# make soak: the scenario (a name in tests/scenarios/) and the boots per scheduler.
SCENARIO   ?= two-frontends
N          ?= 10

HARNESS_ARGS := --xen $(XEN) --images $(IMAGES) --out $(BUILD)/scenarios --logs $(BUILD)/logs

.PHONY: help setup xen-source xen-tree xen-export xen-lib xen guests linux host-tools \
        fmt-check clippy host-test check scenarios test run bench soak clean distclean

help:
	@echo "make run    set everything up, build, and boot the demo ($(DEMO)) on QEMU"
	@echo "            RUN_TIMEOUT=<s> makes it non-interactive; DEMO=<scenario> picks another"
	@echo "make test   fmt + clippy + host tests + Xen build + every QEMU scenario"
	@echo "make bench  boot $(BENCH) once and print its timing table (ratios from the same boot)"
	@echo "make soak   boot SCENARIO=<name> N=<n> times under each Xen scheduler (credit2, credit,"
	@echo "            null) and print the passes; failed boots' logs stay in build/logs/soak/"
	@echo "make xen-tree / xen-export   edit Xen as a git repo in build/xen, export to xen-patches/"

setup:
	@tools/setup.sh packages

xen-source: setup
	@tools/setup.sh xen-source

xen-tree: xen-source
	@tools/xen.sh tree

xen-export:
	@tools/xen.sh export

xen-lib: setup
	@tools/xen.sh lib

xen: xen-source xen-lib
	@tools/xen.sh build

guests: setup
	@tests/guests/build.sh $(BUILD)

# The Linux frontend: pinned Debian arm64 packages -> build/linux/{Image,initramfs.cpio.gz},
# linked into $(IMAGES) as linux.img and linux-initramfs.cpio.gz.
linux: setup
	@tools/linux-image.sh $(BUILD)

host-tools:
	@cargo build -q --release -p harness

fmt-check:
	cargo fmt --all --check
	cd arch && cargo fmt --check
	cd tests/guests && cargo fmt --all --check

# arch/ is aarch64-only at link time, but its lints hold on the host target too.
clippy:
	cargo clippy -q --workspace --all-targets -- -D warnings
	cd arch && cargo clippy -q -- -D warnings

host-test:
	cargo test -q --workspace
	python3 tools/check-fpsimd.py --self-test

check: fmt-check clippy host-test

scenarios: xen guests linux host-tools
	$(HARNESS) run $(HARNESS_ARGS) $(SCENARIOS)

test: setup check scenarios

run: xen guests linux host-tools
	$(HARNESS) boot $(HARNESS_ARGS) $(if $(RUN_TIMEOUT),--timeout $(RUN_TIMEOUT)) tests/scenarios/$(DEMO).toml

# The bench guest must hold no FP/SIMD instruction (no floating point in our aarch64 code); the
# table is printed even when the scenario fails (partial numbers), and make then fails too.
bench: xen guests host-tools
	@set -o pipefail; aarch64-linux-gnu-objdump -d --no-show-raw-insn $(IMAGES)/bench.elf \
	    | python3 tools/check-fpsimd.py
	@rm -f $(BUILD)/logs/bench.log; status=0; $(HARNESS) run $(HARNESS_ARGS) $(BENCH) || status=$$?; \
	echo; python3 tools/bench-report.py $(BUILD)/logs/bench.log || status=1; exit $$status

# Not part of `make test`: N boots x 3 schedulers take a while. The harness skips null when the
# scenario has more vCPUs than QEMU CPUs (null never time-shares a pCPU), and prints the host
# load before and after, since other QEMU runs on the host change TCG's timing.
soak: xen guests linux host-tools
	$(HARNESS) soak $(HARNESS_ARGS) --runs $(N) tests/scenarios/$(SCENARIO).toml

clean:
	rm -rf $(BUILD)/scenarios $(BUILD)/logs $(BUILD)/guests $(BUILD)/rust-ioreq
	cargo clean

distclean:
	rm -rf $(BUILD) target
