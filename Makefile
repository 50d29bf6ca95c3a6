# rust-ioreq: `make run` boots the demo, `make test` runs every check, `make bench` prints the
# benchmark table. All do all set-up first (as root: apt packages, deb-src entries, the pinned
# Xen source).

SHELL := /bin/bash
.DEFAULT_GOAL := help

BUILD      := $(CURDIR)/build
# The Xen release `make run`, `make bench` and the board files use: the newest, 4.22.0, or
# XEN_VERSION=4.17.5. `make test` builds every release of XEN_VERSIONS and boots every scenario
# on each (tools/setup.sh fetches and verifies their sources; docs/xen-versions.md).
XEN_VERSION ?= 4.22.0
XEN_VERSIONS ?= 4.22.0 4.17.5
export XEN_VERSION
xen_image = $(BUILD)/xen-$(1)-$(2)/xen
# `make test` boots the debug Xen (assertions, lock checks, type-safe frame numbers); `make run`
# and `make bench` boot the release build.
XEN_DEBUG  := $(call xen_image,$(XEN_VERSION),debug)
XEN_RELEASE := $(call xen_image,$(XEN_VERSION),release)
IMAGES     := $(BUILD)/guests
HARNESS    := $(CURDIR)/target/release/harness
SCENARIOS  := $(sort $(wildcard tests/scenarios/*.toml))
# Demos that are not also a scenario (`make run DEMO=<name>` looks here first): `make test` boots
# them too, judged up to the frontend's END, with their logs in build/logs/<version>/demos/.
DEMOS      := $(sort $(wildcard tests/demos/*.toml))
DEMO       ?= blk-rw
DEMO_FILE   = $(firstword $(wildcard tests/demos/$(DEMO).toml) tests/scenarios/$(DEMO).toml)
# The benchmark scenarios, one boot each: outside tests/scenarios, so `make test` does not run
# them. bench.toml: the bare-metal bench guest's table; bench-linux.toml: the Linux frontend's.
BENCH      := tests/bench/bench.toml tests/bench/bench-linux.toml
# Seconds; empty = interactive console (quit with Ctrl-A X).
RUN_TIMEOUT ?=
# make soak: the scenario (a name in tests/scenarios/) and the boots per scheduler.
SCENARIO   ?= two-frontends
N          ?= 10
# `make board`: the board (`target/release/scenario board --list`) and how boot.scr reads its
# files: distro (the partition U-Boot found it on), tftp, or a U-Boot command.
BOARD      ?= r8a77951-salvator-xs
LOAD       ?= distro
BOARD_DTBS := $(BUILD)/boards/dtb
BOARD_OUT  := $(BUILD)/boards/out
SCENARIO_TOOL := $(CURDIR)/target/release/scenario
CHECKER    := $(CURDIR)/target/release/rust-ioreq-check
BOARD_ARGS := --dtbs $(BOARD_DTBS) --xen $(XEN_RELEASE) --images $(IMAGES) --out $(BOARD_OUT)
# `make fuzz`: seconds per target, or executions per target (FUZZ_RUNS wins when set).
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=

HARNESS_OUT  := --images $(IMAGES) --out $(BUILD)/scenarios/$(XEN_VERSION) --logs $(BUILD)/logs/$(XEN_VERSION)
HARNESS_ARGS := --xen $(XEN_DEBUG) $(HARNESS_OUT)
HARNESS_RELEASE_ARGS := --xen $(XEN_RELEASE) $(HARNESS_OUT)

.PHONY: help setup xen-source xen-tree xen-export xen-lib xen xen-all guests linux linux-module linux-daemon linux-vhost-user host-tools \
        fmt-check clippy host-test bad-configs check-config check scenarios test run bench soak \
        fuzz fuzz-corpus board-dtbs board boards board-qemu clean distclean

help:
	@echo "make run    set everything up, build, and boot the demo ($(DEMO)) on QEMU"
	@echo "            RUN_TIMEOUT=<s> makes it non-interactive; DEMO=<scenario> picks another"
	@echo "make test   fmt + clippy + host tests + Xen builds + every QEMU scenario on the debug"
	@echo "            Xen of each release in XEN_VERSIONS ($(XEN_VERSIONS))"
	@echo "make bench  boot $(BENCH) once each and print their timing tables (ratios from the same boot)"
	@echo "make soak   boot SCENARIO=<name> N=<n> times under each Xen scheduler (credit2, credit,"
	@echo "            null) and print the passes; failed boots' logs stay in build/logs/<version>/soak/"
	@echo "make fuzz   run every fuzz target for FUZZ_SECONDS=$(FUZZ_SECONDS) (or FUZZ_RUNS=<n> executions) each"
	@echo "make xen-tree / xen-export   edit Xen $(XEN_VERSION) as a git repo in build/xen-$(XEN_VERSION),"
	@echo "            export to xen-patches/ (XEN_VERSION=4.17.5 for the other release)"
	@echo "make check-config DTB=<host.dtb|.dts>   check a host device tree as Xen will at boot"
	@echo "make board BOARD=<board> SCENARIO=<name> [LOAD=distro|tftp|<cmd>]   boot files for a"
	@echo "            real board in build/boards/out/<board>/<name>/, checked (docs/boards.md)"
	@echo "make boards every scenario on every board, written and checked, and blk-rw booted"
	@echo "            through U-Boot on QEMU (make board-qemu); part of make test"

setup:
	@tools/setup.sh packages

xen-source: setup
	@tools/setup.sh xen-source

xen-tree: xen-source
	@tools/xen.sh tree

xen-export:
	@tools/xen.sh export

xen-lib: setup
	@tools/xen.sh lib release
	@tools/xen.sh lib debug

# Both variants of XEN_VERSION: each ~25 s to build.
xen: xen-source
	@tools/xen.sh build debug
	@tools/xen.sh build release

# What `make test` boots: the debug build of every release in XEN_VERSIONS, and the release
# build of XEN_VERSION (the board files and the U-Boot boot).
xen-all: setup
	@set -e; for v in $(XEN_VERSIONS); do \
	    XEN_VERSION=$$v tools/setup.sh xen-source; XEN_VERSION=$$v tools/xen.sh build debug; done
	@tools/setup.sh xen-source
	@tools/xen.sh build release

guests: setup
	@tests/guests/build.sh $(BUILD)

# The Linux guests: pinned Debian arm64 packages -> build/linux/{Image,initramfs.cpio.gz,...},
# linked into $(IMAGES) as linux.img and linux-*initramfs.cpio.gz. The backend's initramfs holds
# the daemon rust-ioreq-backend (static aarch64) and
# the out-of-tree module rust-ioreq-be.ko, built first against the pinned kernel's headers.
linux: linux-module linux-daemon linux-vhost-user
	@tools/linux-image.sh $(BUILD)

# Unmodified vhost-user daemons (rust-vmm's vhost-device-*, crates.io) for the backend initramfs.
linux-vhost-user: setup
	@tools/vhost-user-daemons.sh $(BUILD)

# The userspace backend daemon (rust-ioreq-backend/), static aarch64, for the backend initramfs.
linux-daemon: setup
	@tools/rust-ioreq-backend.sh $(BUILD)

linux-module: setup
	@tools/linux-module.sh $(BUILD)

host-tools:
	@cargo build -q --release -p harness -p rust-ioreq-check -p scenario

fmt-check:
	cargo fmt --all --check
	cd arch && cargo fmt --check
	cd tests/guests && cargo fmt --all --check

# arch/ is aarch64-only at link time, but its lints hold on the host target too.
clippy:
	cargo clippy -q --workspace --all-targets -- -D warnings
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo clippy -q -p rust-ioreq --test loom -- -D warnings
	cd arch && cargo clippy -q -- -D warnings

# The workspace tests include the bad-configuration corpus (tests/bad-configs/, needs dtc from
# `make setup`); `make bad-configs` runs it alone. tests/loom.rs model-checks the engine's
# atomics: a build of its own (`--cfg loom`).
# The vhost-user bridge's host tests talk to a host build of the unmodified vhost-device-rng.
host-test:
	@tools/vhost-user-daemons.sh --host $(BUILD)
	VHOST_DEVICE_RNG=$(BUILD)/vhost-user-host/bin/vhost-device-rng cargo test -q --workspace
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -q -p rust-ioreq --test loom --release
	python3 tools/check-fpsimd.py --self-test

bad-configs:
	cargo test -q -p rust-ioreq-check --test bad_configs

# ARGS passes options (--ipa-bits, --gic-spis, --module <addr>=<file>).
check-config: host-tools
	@test -n "$(DTB)" || { echo "usage: make check-config DTB=<host.dtb|host.dts> [ARGS=...]"; exit 2; }
	@target/release/rust-ioreq-check $(ARGS) $(DTB)

check: fmt-check clippy host-test

# Every scenario on the debug Xen of each release in XEN_VERSIONS; each release's logs in
# build/logs/<version>/. Both run even when the first fails.
scenarios: xen-all guests linux host-tools
	@status=0; for v in $(XEN_VERSIONS); do \
	    echo "== Xen $$v: $(words $(SCENARIOS)) scenarios"; \
	    $(HARNESS) run --xen $(call xen_image,$$v,debug) --images $(IMAGES) \
	        --out $(BUILD)/scenarios/$$v --logs $(BUILD)/logs/$$v $(SCENARIOS) || status=1; \
	    echo "== Xen $$v: $(words $(DEMOS)) demo(s) of tests/demos/"; \
	    $(HARNESS) run --xen $(call xen_image,$$v,debug) --images $(IMAGES) \
	        --out $(BUILD)/scenarios/$$v/demos --logs $(BUILD)/logs/$$v/demos $(DEMOS) || status=1; \
	done; exit $$status

test: setup check boards scenarios
	@echo "make test: every check passed (Xen $(XEN_VERSIONS))"

run: xen guests linux host-tools
	$(HARNESS) boot $(HARNESS_RELEASE_ARGS) $(if $(RUN_TIMEOUT),--timeout $(RUN_TIMEOUT)) $(DEMO_FILE)

# The bench guest must hold no FP/SIMD instruction (no floating point in our aarch64 code); the
# tables are printed even when a scenario fails (partial numbers), and make then fails too.
bench: xen guests linux host-tools
	@set -o pipefail; aarch64-linux-gnu-objdump -d --no-show-raw-insn $(IMAGES)/bench.elf \
	    | python3 tools/check-fpsimd.py
	@logs="$(foreach b,$(BENCH),$(BUILD)/logs/$(XEN_VERSION)/$(basename $(notdir $(b))).log)"; rm -f $$logs; \
	status=0; $(HARNESS) run $(HARNESS_RELEASE_ARGS) $(BENCH) || status=$$?; \
	echo; python3 tools/bench-report.py $$logs || status=1; exit $$status

# The board trees: R-Car H3 Salvator-XS compiled from the pinned linux-source-6.1, ROCK 3A's
# from the kernel package `make linux` fetches (tools/board-dtbs.sh).
board-dtbs: linux
	@tools/board-dtbs.sh $(BUILD)

# Boards cannot be booted here: their files are written and checked (dtc, the load plan against
# RAM, reservations and devices, SPIs, rust-ioreq-check; docs/boards.md). Release Xen: what a
# board runs.
board: xen guests linux host-tools board-dtbs
	@$(SCENARIO_TOOL) board --board $(BOARD) $(BOARD_ARGS) --load '$(LOAD)' tests/scenarios/$(SCENARIO).toml
	@$(SCENARIO_TOOL) check-board --board $(BOARD) --checker $(CHECKER) $(BOARD_OUT)/$(BOARD)/$(SCENARIO)

# The one board booted here: QEMU's virt machine started by Debian's U-Boot for QEMU, whose
# distro boot finds boot.scr on the qemu-virt output's disk.img; the script loads Xen, the
# images and the host DTB and starts Xen; the harness judges the scenario as usual, and also
# that U-Boot ran the script to its end. ~10 s per scenario.
BOARD_QEMU_SCENARIOS ?= blk-rw
define board_qemu
	@for s in $(BOARD_QEMU_SCENARIOS); do \
	    $(SCENARIO_TOOL) board --board qemu-virt $(BOARD_ARGS) tests/scenarios/$$s.toml >/dev/null \
	    && $(SCENARIO_TOOL) check-board --board qemu-virt --checker $(CHECKER) $(BOARD_OUT)/qemu-virt/$$s \
	        >/dev/null || exit 1; \
	done
	$(HARNESS) run --xen $(XEN_RELEASE) --images $(IMAGES) --out $(BUILD)/scenarios/$(XEN_VERSION) \
	    --logs $(BUILD)/logs/$(XEN_VERSION)/uboot --uboot $(BOARD_OUT) \
	    $(foreach s,$(BOARD_QEMU_SCENARIOS),tests/scenarios/$(s).toml)
endef

# Every scenario on every board: one line each; a refusal scenario must be refused for the same
# node and property (or, for sched=null, may pass where the board has the pCPUs). Then the
# qemu-virt files of BOARD_QEMU_SCENARIOS are booted through U-Boot (as make board-qemu).
boards: xen guests linux host-tools board-dtbs
	@$(SCENARIO_TOOL) boards $(BOARD_ARGS) --checker $(CHECKER) $(SCENARIOS)
	$(board_qemu)

board-qemu: xen guests linux host-tools board-dtbs
	$(board_qemu)

# Not part of `make test`: N boots x 3 schedulers take a while. The harness skips null when the
# scenario has more vCPUs than QEMU CPUs (null never time-shares a pCPU), and prints the host
# load before and after, since other QEMU runs on the host change TCG's timing.
soak: xen guests linux host-tools
	$(HARNESS) soak $(HARNESS_ARGS) --runs $(N) tests/scenarios/$(SCENARIO).toml

# Not part of `make test`: libFuzzer through cargo-fuzz on rustup's stable toolchain
# (RUSTC_BOOTSTRAP=1), cargo-fuzz installed into build/fuzz-tools on first use; nice -n 19, one
# target at a time. Prints execs, exec/s, coverage, corpus size and crashes per target; fails on
# a crash. docs/fuzzing.md.
fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) tools/fuzz.sh run

# Minimises build/fuzz/corpus/ into the committed regression corpus rust-ioreq/fuzz/corpus-min/.
fuzz-corpus:
	@tools/fuzz.sh corpus

clean:
	rm -rf $(BUILD)/scenarios $(BUILD)/logs $(BUILD)/guests $(BUILD)/rust-ioreq
	cargo clean

distclean:
	rm -rf $(BUILD) target
