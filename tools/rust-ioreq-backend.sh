#!/usr/bin/env bash
#! Builds the userspace backend daemon rust-ioreq-backend as a static aarch64 Linux binary: build/linux/rust-ioreq-backend.
#
# Usage: tools/rust-ioreq-backend.sh [BUILD_DIR]      (BUILD_DIR defaults to <repo>/build)
#
# Debian's toolchain, as for the guests (no rustup): /usr/bin/rustc and /usr/bin/cargo with
# RUSTC_BOOTSTRAP=1 and -Zbuild-std=std,panic_abort (Debian ships no prebuilt std for
# aarch64-unknown-linux-gnu; rust-web-src has its sources), linked by aarch64-linux-gnu-gcc
# against libc6-dev-arm64-cross with +crt-static: one file with no shared library, copied into
# the backend initramfs as /bin/rust-ioreq-backend by tools/linux-image.sh. Its own target
# directory (build/daemon-target) keeps the host workspace's target/ untouched. Cargo does the
# up-to-date check; the stripped copy is only replaced when it changed (the initramfs is
# rebuilt when the copy is newer).
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
mkdir -p "$build/linux"
build=$(cd "$build" && pwd)
target_dir=$build/daemon-target
out=$build/linux/rust-ioreq-backend

say() { printf 'rust-ioreq-backend.sh: %s\n' "$*" >&2; }
die() { printf 'rust-ioreq-backend.sh: ERROR: %s\n' "$*" >&2; exit 1; }

command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing (run make setup)"
[ -d /usr/lib/rustlib/src/rust/library ] || die "no std sources in /usr/lib/rustlib/src (rust-web-src; run make setup)"

# RUSTFLAGS from the caller would replace the target flags below.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
cd "$top"
env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    /usr/bin/cargo build -q --release -p rust-ioreq-backend --target "$TARGET" \
    -Zbuild-std=std,panic_abort
bin=$target_dir/$TARGET/release/rust-ioreq-backend
"$top/tools/install-static.sh" "$bin" "$out" rust-ioreq-backend.sh
