#!/usr/bin/env bash
#! Xen side of the build: the patched tree (a git repo), patch export, the Rust staticlib and the hypervisor.
#
#   tools/xen.sh tree     unpack the pristine tree to build/xen as a git repo and apply xen-patches/series
#   tools/xen.sh export   write build/xen's commits after the pristine tag back to xen-patches/
#   tools/xen.sh lib [release|debug]     build arch/ into build/rust-ioreq/<variant>/librust_ioreq.a
#                                        (LTO, short symbols, FP gate; debug: Rust debug assertions)
#   tools/xen.sh build [release|debug]   configure (defconfig + xen-patches/rust-ioreq.config, plus
#                                        CONFIG_DEBUG=y for debug) and build the hypervisor out of
#                                        tree into build/xen-<variant>/ (the image: build/xen-<variant>/xen)
#
# The debug variant is what `make test` boots: Xen's assertions, lock checks (a lock taken both
# with IRQs on and off is a BUG; on Arm only with xen-patches/0007, which turns them on) and
# type-safe frame numbers, and the component's own debug_assert!s. The release variant is what
# `make run` and `make bench` boot.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
tree="$build/xen"
patches="$top/xen-patches"
variant="${2:-release}"
case "$variant" in release|debug) ;; *) printf 'xen.sh: ERROR: variant must be release or debug, not %s\n' "$variant" >&2; exit 1 ;; esac
libdir="$build/rust-ioreq/$variant"
out="$build/xen-$variant"
XEN_MAKE=(make -C "$tree/xen" O="$out" XEN_TARGET_ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-
          "RUST_IOREQ_LIB=$libdir/librust_ioreq.a" "RUST_IOREQ_INCLUDE=$top/include")
# Xen 4.17 arm64 maps only its first 2 MiB at boot: a bigger image links and then hangs.
XEN_IMAGE_MAX=$((2 << 20))
SYMBOL_MAX=100

say() { printf 'xen.sh: %s\n' "$*" >&2; }
die() { printf 'xen.sh: ERROR: %s\n' "$*" >&2; exit 1; }

series_digest() {
    (cd "$patches" && cat series $(grep -v '^#' series | grep -v '^$')) | sha256sum | cut -d' ' -f1
}

git_x() { git -C "$tree" -c user.name=rust-ioreq -c user.email=rust-ioreq@localhost "$@"; }

cmd_tree() {
    local digest stamp="$tree/.rust-ioreq-series"
    digest=$(series_digest)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    if [ -d "$tree/.git" ]; then
        # Never throw away edits that were not exported yet.
        if [ -n "$(git_x status --porcelain --untracked-files=no)" ]; then
            die "build/xen has uncommitted edits; commit them and run 'make xen-export', or remove build/xen"
        fi
        if [ -f "$stamp" ] && [ "$(git_x rev-parse HEAD)" != "$(cat "$tree/.rust-ioreq-head" 2>/dev/null)" ]; then
            die "build/xen has commits that are not in xen-patches/; run 'make xen-export' first, or remove build/xen"
        fi
    fi
    [ -f "$build/xen-pristine/.unpacked" ] || "$top/tools/setup.sh" xen-source
    say "creating build/xen from the pristine tree"
    rm -rf "$tree"
    cp -a "$build/xen-pristine" "$tree"
    rm -f "$tree/.unpacked"
    git_x init -q
    git_x add -A -f .
    git_x commit -q -m "Xen 4.17.5 (Debian orig tarball 4.17.5+72-g01140da4e8)"
    git_x tag pristine
    local p
    while read -r p; do
        case "$p" in ''|'#'*) continue ;; esac
        say "applying $p"
        git_x am -q --keep-cr "$patches/$p" || { git_x am --abort || true; die "patch $p does not apply"; }
    done < "$patches/series"
    git_x rev-parse HEAD > "$tree/.rust-ioreq-head"
    echo "$digest" > "$stamp"
}

cmd_export() {
    [ -d "$tree/.git" ] || die "no build/xen git tree; run 'make xen-tree' first"
    [ -z "$(git_x status --porcelain --untracked-files=no)" ] || die "commit your edits in build/xen first"
    rm -f "$patches"/*.patch
    git_x format-patch -q --no-signature --zero-commit -o "$patches" pristine..HEAD
    (cd "$patches" && { echo "# Applied in order by tools/xen.sh tree; regenerate with 'make xen-export'."; ls ./*.patch | sed 's|^\./||'; } > series)
    git_x rev-parse HEAD > "$tree/.rust-ioreq-head"
    series_digest > "$tree/.rust-ioreq-series"
    say "exported $(grep -c '\.patch$' "$patches/series") patches to xen-patches/"
}

debian_cargo() {
    env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$build/arch-target" /usr/bin/cargo "$@"
}

# Fails with the offending lines if the objects use any FP/SIMD register or instruction.
fp_simd_gate() {
    local objdump_out
    objdump_out=$(aarch64-linux-gnu-objdump -d --no-show-raw-insn "$@")
    python3 "$top/tools/check-fpsimd.py" <<<"$objdump_out"
}

cmd_lib() {
    # Cargo profiles in arch/Cargo.toml: `release`, and `xen-debug` (release + debug assertions).
    local profile=release
    [ "$variant" = debug ] && profile=xen-debug
    local out="$libdir/librust_ioreq.a" raw="$build/arch-target/aarch64-unknown-none-softfloat/$profile/librust_ioreq_xen.a"
    mkdir -p "$libdir"
    (cd "$top/arch" && debian_cargo rustc -q --profile "$profile" --crate-type staticlib \
        -Zbuild-std=core,alloc,compiler_builtins -Zbuild-std-features=compiler-builtins-mem \
        --target aarch64-unknown-none-softfloat)
    if [ -f "$out" ] && [ "$out" -nt "$raw" ]; then
        return 0
    fi
    local work="$libdir/work"
    rm -rf "$work" && mkdir -p "$work"
    # .llvmbc/.llvmcmd carry LLVM bitcode: useless to ld.bfd, as large as the code itself, and
    # they make binutils hand the object to an LLVM plugin that cannot read it (no symbols).
    aarch64-linux-gnu-objcopy --remove-section=.llvmbc --remove-section=.llvmcmd "$raw" "$work/stripped.a"
    local symfix="${SYMFIX:-$top/target/release/symfix}"
    [ -n "${SYMFIX:-}" ] || (cd "$top" && cargo build -q --release -p symfix)
    aarch64-linux-gnu-nm -j --defined-only "$work/stripped.a" | grep -v -e ':$' -e '^$' \
        | "$symfix" > "$work/redefine-syms"
    aarch64-linux-gnu-objcopy --redefine-syms="$work/redefine-syms" "$work/stripped.a" "$work/librust_ioreq.a"
    local long
    long=$(aarch64-linux-gnu-nm -j "$work/librust_ioreq.a" 2>/dev/null | grep -v ':$' | awk -v m=$SYMBOL_MAX 'length($0) > m')
    [ -z "$long" ] || die "symbols longer than $SYMBOL_MAX characters would overflow Xen's symbol buffer:
$long"
    (cd "$work" && aarch64-linux-gnu-ar x librust_ioreq.a && fp_simd_gate ./*.o) \
        || die "FP/SIMD gate failed for the Rust staticlib"
    mv "$work/librust_ioreq.a" "$out"
    say "built $out ($variant, $(stat -c %s "$out") bytes; FP/SIMD gate passed)"
}

cmd_build() {
    cmd_tree
    cmd_lib
    # Out-of-tree builds need a clean source tree: drop an older in-tree build's leftovers.
    if [ -f "$tree/xen/.config" ]; then
        say "cleaning an in-tree build out of build/xen"
        make -C "$tree/xen" XEN_TARGET_ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- -s distclean
    fi
    mkdir -p "$out"
    local frag="$patches/rust-ioreq.config" cfgstamp="$out/.rust-ioreq-config"
    # What the variant adds to the fragment, and what Kconfig must then have kept.
    local extra=() kept=()
    if [ "$variant" = debug ]; then
        extra=(CONFIG_DEBUG=y)
        kept=(CONFIG_DEBUG=y CONFIG_DEBUG_LOCKS=y)
    fi
    local wanted
    wanted=$( (cat "$frag"; printf '%s\n' "${extra[@]}") | sha256sum)
    if [ ! -f "$out/.config" ] || [ "$wanted" != "$(cat "$cfgstamp" 2>/dev/null)" ]; then
        say "configuring $variant: defconfig + xen-patches/rust-ioreq.config ${extra[*]}"
        "${XEN_MAKE[@]}" -s defconfig
        (cat "$frag"; printf '%s\n' "${extra[@]}") >> "$out/.config"
        "${XEN_MAKE[@]}" -s olddefconfig
        local line
        while read -r line; do
            case "$line" in CONFIG_*) grep -qx "$line" "$out/.config" || die "Kconfig dropped '$line' (a missing dependency?)";; esac
        done < <(cat "$frag"; printf '%s\n' "${kept[@]}")
        echo "$wanted" > "$cfgstamp"
    fi
    mkdir -p "$build/logs"
    local log="$build/logs/xen-build-$variant.log"
    say "building Xen ($variant; log: ${log#$top/})"
    "${XEN_MAKE[@]}" -j"$(nproc)" > "$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "Xen build ($variant) failed"; }
    local syms="$out/xen-syms"
    [ -f "$out/xen" ] && [ "$syms" -nt "$libdir/librust_ioreq.a" ] || die "Xen build failed (no fresh xen-syms)"
    # Xen's own table: every name, Rust's included, must fit symbols_expand_symbol()'s buffer.
    local long
    long=$(aarch64-linux-gnu-nm "$syms" | awk -v m=$SYMBOL_MAX 'length($3) > m {print $3}')
    [ -z "$long" ] || die "xen-syms has symbols over $SYMBOL_MAX characters: $long"
    local start end size
    start=$(aarch64-linux-gnu-nm "$syms" | awk '$3 == "_start" {print $1}')
    end=$(aarch64-linux-gnu-nm "$syms" | awk '$3 == "_end" {print $1}')
    size=$((16#$end - 16#$start))
    [ "$size" -le "$XEN_IMAGE_MAX" ] || die "Xen image is $size bytes, over the $XEN_IMAGE_MAX limit"
    say "xen ($variant): $size bytes loaded (limit $XEN_IMAGE_MAX), $(aarch64-linux-gnu-nm "$syms" | grep -c ' rust_ioreq_\| [tT] .*::') Rust symbols"
}

case "${1:-}" in
    tree) cmd_tree ;;
    export) cmd_export ;;
    lib) cmd_lib ;;
    build) cmd_build ;;
    *) die "usage: $0 tree|export|lib [release|debug]|build [release|debug]" ;;
esac
