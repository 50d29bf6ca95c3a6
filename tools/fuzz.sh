#!/usr/bin/env bash
#! `make fuzz`: runs every cargo-fuzz target of rust-ioreq/fuzz for a fixed budget and prints,
#! per target, executions, executions per second, coverage, corpus size and crashes.
#
#   tools/fuzz.sh run      build (installing cargo-fuzz first if needed), then fuzz each target
#   tools/fuzz.sh corpus   merge build/fuzz/corpus/<t> into rust-ioreq/fuzz/corpus-min/<t>
#
# Environment: FUZZ_SECONDS (per target, default 60) or FUZZ_RUNS (executions per target; wins
# if set), FUZZ_TARGETS (default: all), FUZZ_NICE (default 19).
#
# Why stable + RUSTC_BOOTSTRAP=1: cargo-fuzz passes -Z flags (sanitizer coverage passes) that
# need a nightly compiler, and the machines have only rustup's stable toolchain, with no way
# to download another. RUSTC_BOOTSTRAP=1 lets stable rustc accept them (docs/fuzzing.md).
# Built with --sanitizer none: the core is #![forbid(unsafe_code)], so AddressSanitizer finds
# nothing the Rust checks do not, at half the speed; -a keeps debug assertions and overflow
# checks on, so an overflow is a crash.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS="config config_mutated syndrome engine doorbell transport dt"

top=$(cd "$(dirname "$0")/.." && pwd)
tools="$top/build/fuzz-tools"
work="$top/build/fuzz"
crate="$top/rust-ioreq"
bin_dir="$crate/fuzz/target/x86_64-unknown-linux-gnu/release"
seeds="$crate/fuzz/corpus-min"

targets=${FUZZ_TARGETS:-$ALL_TARGETS}
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-}
niceness=${FUZZ_NICE:-19}

say() { printf 'fuzz: %s\n' "$*" >&2; }
die() { printf 'fuzz: ERROR: %s\n' "$*" >&2; exit 1; }

# Longest input per target: enough for every operation sequence or tree the body reads.
max_len() {
    case "$1" in
        config) echo 40960 ;;
        config_mutated | syndrome) echo 128 ;;
        engine) echo 2048 ;;
        # About a hundred operations: every state is a few steps away, at twice the speed.
        doorbell | transport) echo 1024 ;;
        dt) echo 512 ;;
        *) die "unknown target $1" ;;
    esac
}

# libfuzzer-sys compiles libFuzzer (C++).
need_cxx() {
    command -v c++ >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || die "no C++ compiler: run 'apt-get install g++' as root"
    say "installing g++ (libFuzzer is C++)"
    apt-get install -y -q g++ >/dev/null
}

install_cargo_fuzz() {
    need_cxx
    if "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
        return 0
    fi
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION into build/fuzz-tools (once, ~2 min)"
    nice -n "$niceness" cargo install --quiet --locked --force \
        --root "$tools" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
}

build() {
    install_cargo_fuzz
    say "building the fuzz targets (release, debug assertions, no sanitizer)"
    (cd "$crate" && RUSTC_BOOTSTRAP=1 nice -n "$niceness" \
        "$tools/bin/cargo-fuzz" build -O -a --sanitizer none)
}

# The last value of `key: N` in a libFuzzer log.
last() {
    grep -oE "$1: *[0-9]+" "$2" | tail -1 | grep -oE "[0-9]+$" || echo "?"
}

run() {
    build
    mkdir -p "$work/logs"
    local failed=0 t log corpus artifacts budget status execs rate cov ft units crashes
    printf '\n%-15s %12s %8s %6s %7s %8s %8s\n' target execs exec/s cov ft corpus crashes
    for t in $targets; do
        log="$work/logs/$t.log"
        corpus="$work/corpus/$t"
        artifacts="$work/artifacts/$t"
        mkdir -p "$corpus" "$artifacts" "$seeds/$t"
        if [ -n "$runs" ]; then budget="-runs=$runs"; else budget="-max_total_time=$seconds"; fi
        local before
        before=$(find "$artifacts" -type f | wc -l)
        status=0
        # The first corpus directory gets the new inputs; corpus-min/ is only read.
        nice -n "$niceness" "$bin_dir/$t" "$budget" -max_len="$(max_len "$t")" \
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$artifacts/" "$corpus" "$seeds/$t" >"$log" 2>&1 || status=$?
        execs=$(last 'stat::number_of_executed_units' "$log")
        rate=$(last 'stat::average_exec_per_sec' "$log")
        cov=$(last cov "$log")
        ft=$(last ft "$log")
        units=$(find "$corpus" -type f | wc -l)
        crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
        if [ "$status" != 0 ] && [ "$crashes" = 0 ]; then crashes=1; fi
        printf '%-15s %12s %8s %6s %7s %8s %8s\n' "$t" "$execs" "$rate" "$cov" "$ft" "$units" "$crashes"
        if [ "$crashes" != 0 ]; then
            failed=1
            say "$t crashed (exit $status): see $log and $artifacts/"
        fi
    done
    echo
    say "logs in build/fuzz/logs/, corpora in build/fuzz/corpus/, crashes in build/fuzz/artifacts/"
    return "$failed"
}

# Minimises the working corpus of each target (with what is already committed) into
# corpus-min/ with -merge=1 on edge coverage only (-use_counters=0), so that about a hundred
# inputs at most cover it. The crash-* files (minimised crash inputs) are always kept.
corpus() {
    build
    local t tmp
    mkdir -p "$work/logs"
    for t in $targets; do
        tmp=$(mktemp -d)
        mkdir -p "$seeds/$t" "$work/corpus/$t"
        nice -n "$niceness" "$bin_dir/$t" -merge=1 -use_counters=0 -use_value_profile=0 \
            -max_len="$(max_len "$t")" "$tmp" "$seeds/$t" "$work/corpus/$t" \
            >"$work/logs/$t.merge.log" 2>&1 || die "merge of $t failed: $work/logs/$t.merge.log"
        find "$seeds/$t" -maxdepth 1 -type f -name 'crash-*' -exec cp {} "$tmp/" \;
        rm -rf "${seeds:?}/$t"
        mv "$tmp" "$seeds/$t"
        chmod 755 "$seeds/$t"
        say "$t: $(find "$seeds/$t" -type f | wc -l) inputs in corpus-min/$t"
    done
}

case "${1:-run}" in
    run) run ;;
    corpus) corpus ;;
    build) build ;;
    *) die "usage: $0 run|corpus|build" ;;
esac
