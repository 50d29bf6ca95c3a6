#!/usr/bin/env bash
#! Builds the out-of-tree module tests/linux/rust-ioreq-be/ against Debian's headers for the pinned kernel: build/linux/module/rust-ioreq-be.ko.
#
# Usage: tools/linux-module.sh [BUILD_DIR]      (BUILD_DIR defaults to <repo>/build)
#
# Why a module at all: docs/backend-abi.md, "Linux backend".
#
# Steps, each skipped when its result is already there (the .debs are cached and re-checked):
#  1. `apt-get download` of the pinned headers and kbuild packages (the same kernel ABI and
#     version as tools/linux-image.sh pins) into build/linux/debs/; apt checks them against the
#     signed index, this script checks their sha256 too. linux-headers-*-arm64 is arm64;
#     linux-headers-*-common is arch `all`; linux-kbuild-6.1 holds host programs (fixdep,
#     modpost, ...) and so is the build machine's architecture (amd64 here).
#  2. `dpkg-deb -x` all three into build/linux/kbuild/. The arm64 headers' Makefile is one line,
#     `include /usr/src/linux-headers-<abi>-common/Makefile`: it is rewritten to the extracted
#     copy, so nothing is installed on the host.
#  3. The module sources are copied to build/linux/module/ (kbuild writes its objects next to
#     the sources, and the worktree stays clean) and built with
#     `make -C <headers> M=<dir> DEB_BUILD_ARCH=amd64 DEB_HOST_ARCH=arm64
#     DEB_HOST_GNU_TYPE=aarch64-linux-gnu modules`: the headers' .kernelvariables then set
#     CROSS_COMPILE=aarch64-linux-gnu- and CC=aarch64-linux-gnu-gcc-12, the compiler Debian
#     built the kernel with.
#  4. The .ko's vermagic must be exactly the pinned kernel's (VERMAGIC below; tools/linux-image.sh
#     compares it with the stock modules' again when it packs the module).
#
# Re-pinning: together with tools/linux-image.sh (same KERNEL_ABI/KERNEL_VERSION); set the three
# sha256 values to `sha256sum build/linux/debs/linux-{headers,kbuild}*.deb` of the new download.
set -euo pipefail

KERNEL_ABI=6.1.0-50
KERNEL_VERSION=6.1.176-1
KBUILD_SERIES=6.1
HEADERS_PKG=linux-headers-$KERNEL_ABI-arm64
HEADERS_SHA256=64c93d13ce119aaaf6604482f3237a132709217723a6f78f3775380cbc8519be
COMMON_PKG=linux-headers-$KERNEL_ABI-common
COMMON_SHA256=7f6f7bee50efbc36dc02c976be5982b96cf36abe544f03f09368e98cfcc5ac3b
KBUILD_PKG=linux-kbuild-$KBUILD_SERIES
KBUILD_SHA256=667d2e1e94047031c3bcefa4bb67c2520bbc3cc1cce0aa592e67b108dbbead03
# What the pinned kernel's own modules carry (`.modinfo` of any .ko in linux-image-<abi>-arm64).
VERMAGIC="$KERNEL_ABI-arm64 SMP mod_unload modversions aarch64"
MODULE=rust-ioreq-be

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
out=$build/linux
debs=$out/debs
kbuild=$out/kbuild
src=$top/tests/linux/$MODULE
moddir=$out/module

say() { printf 'linux-module: %s\n' "$*" >&2; }
die() { printf 'linux-module: ERROR: %s\n' "$*" >&2; exit 1; }

host_arch=$(dpkg --print-architecture)
[ "$host_arch" = amd64 ] || die "the pinned $KBUILD_PKG is amd64 (its programs run on the build machine); this one is $host_arch: pin the $host_arch package and its sha256"

sha_ok() { echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

ensure_apt_arm64() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        [ "$(id -u)" = 0 ] || die "the arm64 architecture is not enabled; as root run once:
    dpkg --add-architecture arm64 && apt-get update"
        say "dpkg --add-architecture arm64"
        dpkg --add-architecture arm64
    fi
    if ! compgen -G '/var/lib/apt/lists/*_binary-arm64_Packages*' >/dev/null; then
        [ "$(id -u)" = 0 ] || die "no arm64 package lists; as root run once: apt-get update"
        say "apt-get update (no arm64 package lists yet)"
        apt-get update -q >&2
    fi
}

# Downloads <pkg>:<arch>=<version> into $debs unless a copy with the right sha256 is there, and
# prints its path.
fetch_deb() {
    local pkg=$1 arch=$2 sha=$3 path=$debs/${1}_${KERNEL_VERSION}_$2.deb
    if [ -f "$path" ] && sha_ok "$path" "$sha"; then
        echo "$path"
        return 0
    fi
    rm -f "$path"
    ensure_apt_arm64
    say "apt-get download $pkg:$arch=$KERNEL_VERSION"
    # The sandbox user _apt cannot write into a root-owned build tree: download as the caller.
    if ! (cd "$debs" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
            "$pkg:$arch=$KERNEL_VERSION") >&2; then
        say "apt offers these versions of $pkg:$arch now:"
        apt-cache madison "$pkg:$arch" >&2 || true
        die "cannot download $pkg:$arch=$KERNEL_VERSION; re-pin it (see the top of $0)"
    fi
    [ -f "$path" ] || die "apt-get download did not write $path"
    if ! sha_ok "$path" "$sha"; then
        local got
        got=$(sha256sum "$path" | cut -d' ' -f1)
        rm -f "$path"
        die "sha256 of $(basename "$path") is $got, pinned $sha"
    fi
    echo "$path"
}

mkdir -p "$debs"
headers_deb=$(fetch_deb "$HEADERS_PKG" arm64 "$HEADERS_SHA256")
common_deb=$(fetch_deb "$COMMON_PKG" all "$COMMON_SHA256")
kbuild_deb=$(fetch_deb "$KBUILD_PKG" "$host_arch" "$KBUILD_SHA256")

headers=$kbuild/usr/src/$HEADERS_PKG
stamp=$kbuild/.extracted
want="$HEADERS_SHA256 $COMMON_SHA256 $KBUILD_SHA256"
if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    rm -rf "$kbuild" "$kbuild.tmp"
    mkdir -p "$kbuild.tmp"
    say "extracting $(basename "$headers_deb"), $(basename "$common_deb"), $(basename "$kbuild_deb")"
    for deb in "$headers_deb" "$common_deb" "$kbuild_deb"; do
        dpkg-deb -x "$deb" "$kbuild.tmp"
    done
    mk=$kbuild.tmp/usr/src/$HEADERS_PKG/Makefile
    grep -qx "include /usr/src/$COMMON_PKG/Makefile" "$mk" \
        || die "$HEADERS_PKG's Makefile is not the expected one-line include: $(head -c 200 "$mk")"
    echo "include $kbuild/usr/src/$COMMON_PKG/Makefile" > "$mk"
    echo "$want" > "$kbuild.tmp/.extracted"
    mv "$kbuild.tmp" "$kbuild"
fi
[ -x "$headers/scripts/basic/fixdep" ] || die "no $headers/scripts/basic/fixdep (is $KBUILD_PKG extracted?)"
command -v aarch64-linux-gnu-gcc-12 >/dev/null \
    || die "aarch64-linux-gnu-gcc-12 missing (package gcc-12-aarch64-linux-gnu; run make setup)"

ko=$moddir/$MODULE.ko
# Rebuilt when a source, this script or the headers changed.
newest=$(find "$src" "$0" "$stamp" -type f -newer "$ko" 2>/dev/null | head -1 || true)
if [ -f "$ko" ] && [ -z "$newest" ]; then
    exit 0
fi
rm -rf "$moddir"
mkdir -p "$moddir"
cp "$src"/*.c "$src"/Kbuild "$moddir/"
say "building $MODULE.ko against $HEADERS_PKG=$KERNEL_VERSION"
make -s -C "$headers" M="$moddir" DEB_BUILD_ARCH="$host_arch" DEB_HOST_ARCH=arm64 \
    DEB_HOST_GNU_TYPE=aarch64-linux-gnu modules >&2 \
    || die "building $MODULE.ko failed"
[ -f "$ko" ] || die "make wrote no $ko"
got=$(aarch64-linux-gnu-objcopy -O binary -j .modinfo "$ko" /dev/stdout | tr '\0' '\n' \
    | sed -n 's/^vermagic=//p')
[ "$got" = "$VERMAGIC" ] || die "$ko: vermagic \"$got\", the pinned kernel's is \"$VERMAGIC\""
say "$ko ($(wc -c < "$ko") bytes; vermagic $got)"
