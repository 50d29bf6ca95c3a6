#!/usr/bin/env bash
#! Builds the board device trees tools/scenario writes boot files for, into build/boards/dtb/.
#
# Usage: tools/board-dtbs.sh [BUILD_DIR]      (BUILD_DIR defaults to <repo>/build)
#
# - r8a77951-salvator-xs.dtb (Renesas R-Car H3 Salvator-XS): Debian's kernel package ships no
#   R-Car H3 tree, so it is compiled here the way the kernel's scripts/Makefile.lib does it
#   (cpp -nostdinc -undef -D__DTS__ -x assembler-with-cpp with the dt-bindings includes, then
#   dtc) from the pinned linux-source-6.1 package: `apt-get download` (apt checks it against
#   the signed index; this script checks its sha256 too), then only the files the tree needs
#   are extracted from its linux-source-6.1.tar.xz into build/boards/src/.
# - rk3568-rock-3a.dtb (Radxa ROCK 3A): shipped in the Debian arm64 kernel package that
#   tools/linux-image.sh pins and extracts (run `make linux` first); copied as it is.
# - qemu-virt.dtb: QEMU's own tree for the machine the harness boots (virt with EL2 and a
#   GICv3, 2 Cortex-A57, 2 GiB), which `make board-qemu` boots through U-Boot; dumped with
#   QEMU's dumpdtb each time (QEMU is not pinned: its tree is the machine it runs).
# - RK3588: neither package has a tree for it (Linux 6.1 has no RK3588 device tree), so no
#   RK3588 board is built; the script checks that this is still so and says it.
#
# Each step is skipped when its result is there and its inputs did not change (a stamp names
# the pins). Re-pinning: set LINUX_SOURCE_VERSION and LINUX_SOURCE_SHA256 to a version
# `apt-cache madison linux-source-6.1` lists and `sha256sum` of its download.
set -euo pipefail

LINUX_SOURCE_PKG=linux-source-6.1
LINUX_SOURCE_VERSION=6.1.176-1
LINUX_SOURCE_SHA256=9305d1a151b8e83dcb88aa11361e7b9513f0c252bdf7f5647e4542762d99c094
# What the R-Car tree includes, relative to the kernel tree (cpp follows these), and the
# Rockchip trees (to see whether an RK3588 one has appeared).
SOURCE_PATHS=(arch/arm64/boot/dts/renesas include/dt-bindings
              include/uapi/linux/input-event-codes.h arch/arm64/boot/dts/rockchip)
SALVATOR_DTS=arch/arm64/boot/dts/renesas/r8a77951-salvator-xs.dts

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
out=$build/boards
debs=$out/debs
src=$out/src
dtbs=$out/dtb

say() { printf 'board-dtbs: %s\n' "$*" >&2; }
die() { printf 'board-dtbs: ERROR: %s\n' "$*" >&2; exit 1; }

sha_ok() { echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

source_deb=$debs/${LINUX_SOURCE_PKG}_${LINUX_SOURCE_VERSION}_all.deb

fetch_source() {
    if [ -f "$source_deb" ] && sha_ok "$source_deb" "$LINUX_SOURCE_SHA256"; then
        return 0
    fi
    rm -f "$source_deb"
    say "apt-get download $LINUX_SOURCE_PKG=$LINUX_SOURCE_VERSION (139 MB, once)"
    # The sandbox user _apt cannot write into a root-owned build tree: download as the caller.
    if ! (cd "$debs" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
            "$LINUX_SOURCE_PKG=$LINUX_SOURCE_VERSION") >&2; then
        say "apt offers these versions of $LINUX_SOURCE_PKG now:"
        apt-cache madison "$LINUX_SOURCE_PKG" >&2 || true
        die "cannot download $LINUX_SOURCE_PKG=$LINUX_SOURCE_VERSION; re-pin it (see the top of $0)"
    fi
    [ -f "$source_deb" ] || die "apt-get download did not write $source_deb"
    if ! sha_ok "$source_deb" "$LINUX_SOURCE_SHA256"; then
        local got
        got=$(sha256sum "$source_deb" | cut -d' ' -f1)
        rm -f "$source_deb"
        die "sha256 of $(basename "$source_deb") is $got, pinned $LINUX_SOURCE_SHA256"
    fi
}

# Extracts SOURCE_PATHS from the package's tarball (one pass over it, ~20 s).
extract_source() {
    local stamp=$src/.extracted tree=$src/linux-source-6.1
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$LINUX_SOURCE_SHA256" ]; then
        return 0
    fi
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    say "extracting ${SOURCE_PATHS[*]} from $(basename "$source_deb")"
    local members=() p
    for p in "${SOURCE_PATHS[@]}"; do members+=("linux-source-6.1/$p"); done
    dpkg-deb --fsys-tarfile "$source_deb" \
        | tar -xO ./usr/src/linux-source-6.1.tar.xz \
        | tar -xJ -C "$src.tmp" "${members[@]}"
    echo "$LINUX_SOURCE_SHA256" > "$src.tmp/.extracted"
    mv "$src.tmp" "$src"
    [ -f "$tree/$SALVATOR_DTS" ] || die "no $SALVATOR_DTS in $LINUX_SOURCE_PKG $LINUX_SOURCE_VERSION"
}

build_salvator() {
    local tree=$src/linux-source-6.1 dst=$dtbs/r8a77951-salvator-xs.dtb pp
    if [ -f "$dst" ] && [ "$dst" -nt "$src/.extracted" ] && [ "$dst" -nt "$0" ]; then
        return 0
    fi
    pp=$dtbs/r8a77951-salvator-xs.pp.dts
    # As scripts/Makefile.lib's dtc_cpp_flags: no system includes, no predefined macros.
    cpp -nostdinc -I "$tree/include" -I "$tree/arch/arm64/boot/dts" -undef -D__DTS__ \
        -x assembler-with-cpp -o "$pp" "$tree/$SALVATOR_DTS" \
        || die "cpp failed on $SALVATOR_DTS"
    dtc -q -I dts -O dtb -o "$dst.tmp" "$pp" || die "dtc failed on $SALVATOR_DTS"
    mv "$dst.tmp" "$dst"
    say "$dst ($(wc -c < "$dst") bytes, from $LINUX_SOURCE_PKG $LINUX_SOURCE_VERSION)"
}

copy_rock3a() {
    local dst=$dtbs/rk3568-rock-3a.dtb found
    found=$(compgen -G "$build/linux/root/usr/lib/linux-image-*-arm64/rockchip/rk3568-rock-3a.dtb" || true)
    [ -n "$found" ] || die "no rk3568-rock-3a.dtb under $build/linux/root: run make linux first"
    [ "$(wc -l <<<"$found")" = 1 ] || die "more than one kernel package extracted: $found"
    if ! cmp -s "$found" "$dst"; then
        cp "$found" "$dst.tmp"
        mv "$dst.tmp" "$dst"
        say "$dst ($(wc -c < "$dst") bytes, from the Debian kernel package)"
    fi
}

dump_qemu_virt() {
    local dst=$dtbs/qemu-virt.dtb
    # The machine options must be the harness's (tools/scenario/src/generate.rs, MACHINE, CPU
    # and the defaults DEFAULT_SMP and DEFAULT_MEM_MIB): the tree describes that machine.
    qemu-system-aarch64 -machine "virt,virtualization=on,gic-version=3,dumpdtb=$dst.tmp" \
        -cpu cortex-a57 -smp 2 -m 2048M -nographic >/dev/null 2>&1 \
        || die "qemu-system-aarch64 cannot dump its virt tree (make setup installs qemu-system-arm)"
    # QEMU puts fresh random kaslr-seed and rng-seed values into /chosen on every dump: a
    # changed file is not news.
    [ -f "$dst" ] || say "$dst ($(wc -c < "$dst.tmp") bytes, QEMU's virt machine)"
    mv "$dst.tmp" "$dst"
}

check_rk3588() {
    local in_source in_kernel
    in_source=$(compgen -G "$src/linux-source-6.1/arch/arm64/boot/dts/rockchip/rk3588*" | wc -l || true)
    in_kernel=$(compgen -G "$build/linux/root/usr/lib/linux-image-*-arm64/rockchip/rk3588*" | wc -l || true)
    if [ "$in_source" != 0 ] || [ "$in_kernel" != 0 ]; then
        say "note: an RK3588 tree is now available ($in_source files in the source, $in_kernel" \
            "in the kernel package): tools/scenario has no RK3588 board yet"
    fi
}

mkdir -p "$debs" "$dtbs"
fetch_source
extract_source
build_salvator
copy_rock3a
dump_qemu_virt
check_rk3588
ls "$dtbs"/*.dtb >/dev/null
