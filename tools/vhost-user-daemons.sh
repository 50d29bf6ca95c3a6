#!/usr/bin/env bash
#! Builds the unmodified vhost-user backend daemons of the vhost-user scenarios from crates.io as static aarch64 Linux binaries: build/linux/vhost-device-*.
#
# Usage: tools/vhost-user-daemons.sh [--host] [BUILD_DIR]      (BUILD_DIR defaults to <repo>/build)
#
# --host: the same daemons for this machine instead (rustup's cargo, debug profile: it only
# compiles faster), into BUILD_DIR/vhost-user-host/bin, for the bridge's host tests
# (rust-ioreq-backend/tests/vhost_user.rs; make host-test passes the path in VHOST_DEVICE_RNG).
#
# rust-vmm's vhost-device-rng and vhost-device-vsock, at pinned versions, with the Cargo.lock it was published with
# (`cargo install --locked`): the daemon runs in the Linux backend domain and serves a device
# through rust-ioreq-backend's vhost-user bridge (`--vhost-user <index>=<socket>`). Built as
# rust-ioreq-backend is (tools/rust-ioreq-backend.sh: Debian's rustc-web, -Zbuild-std, static
# with aarch64-linux-gnu-gcc), in the same target directory, so std is compiled once for both.
# Not one line of the daemon is changed. Cargo does the up-to-date check.
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
# name@version of each daemon.
DAEMONS="vhost-device-rng@0.1.0 vhost-device-vsock@0.3.0"
# The host tests use only the rng daemon.
HOST_DAEMONS="vhost-device-rng@0.1.0"
host=
if [ "${1:-}" = --host ]; then
    host=1
    shift
fi
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
mkdir -p "$build/linux"
build=$(cd "$build" && pwd)
target_dir=$build/daemon-target
root=$build/vhost-user-root

say() { printf 'vhost-user-daemons.sh: %s\n' "$*" >&2; }
die() { printf 'vhost-user-daemons.sh: ERROR: %s\n' "$*" >&2; exit 1; }

command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing (run make setup)"
[ -d /usr/lib/rustlib/src/rust/library ] || die "no std sources in /usr/lib/rustlib/src (rust-web-src; run make setup)"

unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
if [ -n "$host" ]; then
    for daemon in $HOST_DAEMONS; do
        name=${daemon%@*}
        version=${daemon#*@}
        hroot=$build/vhost-user-host
        if ! [ -x "$hroot/bin/$name" ] || ! grep -qx "$daemon" "$hroot/.built-$name" 2>/dev/null; then
            say "building $name $version from crates.io for the host tests (once, ~1 min)"
            CARGO_TARGET_DIR="$build/vhost-user-host-target" cargo install -q --locked --force \
                --debug --root "$hroot" "$name@=$version" \
                || die "cargo install $name@$version (host) failed"
            echo "$daemon" > "$hroot/.built-$name"
        fi
    done
    exit 0
fi
for daemon in $DAEMONS; do
    name=${daemon%@*}
    version=${daemon#*@}
    out=$build/linux/$name
    bin=$root/bin/$name
    if ! [ -f "$bin" ] || ! grep -qx "$daemon" "$root/.built-$name" 2>/dev/null; then
        say "building $name $version from crates.io (once, 2 to 4 min)"
        env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
            /usr/bin/cargo install -q --locked --force --root "$root" --target "$TARGET" \
            -Zbuild-std=std,panic_abort "$name@=$version" \
            || die "cargo install $name@$version failed"
        echo "$daemon" > "$root/.built-$name"
    fi
    "$top/tools/install-static.sh" "$bin" "$out" vhost-user-daemons.sh
done
