#!/usr/bin/env bash
#! Xen side of the build: the patched tree (a git repo), patch export, the Rust staticlib and the hypervisor.
#
# Every command works on the Xen release XEN_VERSION (default 4.22.0; 4.17.5 the other pinned
# one; tools/setup.sh fetches and verifies their sources):
#
#   tools/xen.sh tree     copy the pristine tree to build/xen-<version> as a git repo and apply
#                         xen-patches/common/series, then the series of the tree's layout epoch
#                         (xen-patches/<epoch>/series: 4.17, 4.18, 4.19-4.20, 4.21+)
#   tools/xen.sh export   write build/xen-<version>'s commits after the pristine tag back to
#                         xen-patches/: a commit whose message has an "Xen-epoch: <epoch>" line
#                         to that epoch's directory, every other to common/
#   tools/xen.sh lib [release|debug]     build arch/ into build/rust-ioreq/<variant>/librust_ioreq.a
#                                        (LTO, short symbols, FP gate; debug: Rust debug assertions;
#                                        the same library for every Xen version)
#   tools/xen.sh build [release|debug]   configure (defconfig + xen-patches/rust-ioreq.config, plus
#                                        CONFIG_DEBUG=y for debug) and build the hypervisor out of
#                                        tree into build/xen-<version>-<variant>/ (the image:
#                                        build/xen-<version>-<variant>/xen)
#   tools/xen.sh epoch    print the layout epoch of XEN_VERSION's pristine tree
#
# The debug variant is what `make test` boots: Xen's assertions, lock checks (a lock taken both
# with IRQs on and off is a BUG; on Arm only with the spin-debug option of
# xen-patches/common, which turns them on) and type-safe frame numbers, and the component's own
# debug_assert!s. The release variant is what `make run` and `make bench` boot.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
version="${XEN_VERSION:-4.22.0}"
pristine="$build/xen-$version-pristine"
tree="$build/xen-$version"
patches="$top/xen-patches"
variant="${2:-release}"
case "$variant" in release|debug) ;; *) printf 'xen.sh: ERROR: variant must be release or debug, not %s\n' "$variant" >&2; exit 1 ;; esac
libdir="$build/rust-ioreq/$variant"
out="$build/xen-$version-$variant"
XEN_MAKE=(make -C "$tree/xen" O="$out" XEN_TARGET_ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-
          "RUST_IOREQ_LIB=$libdir/librust_ioreq.a" "RUST_IOREQ_INCLUDE=$top/include")
SYMBOL_MAX=100

say() { printf 'xen.sh: %s\n' "$*" >&2; }
die() { printf 'xen.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# The layout epoch of the tree in $1 (its xen/Makefile's version): which directory of
# xen-patches/ holds the dom0less hooks for it.
epoch_of() {
    local mk="$1/xen/Makefile" major minor
    [ -f "$mk" ] || die "no Xen tree at $1 (run 'make xen-source XEN_VERSION=$version')"
    major=$(sed -n 's/^export XEN_VERSION *= *\([0-9]*\).*/\1/p' "$mk")
    minor=$(sed -n 's/^export XEN_SUBVERSION *= *\([0-9]*\).*/\1/p' "$mk")
    [ -n "$major" ] && [ -n "$minor" ] || die "cannot read the Xen version from $mk"
    if [ "$major" != 4 ] || [ "$minor" -lt 17 ]; then
        die "Xen $major.$minor is older than 4.17, the oldest release xen-patches/ supports"
    elif [ "$minor" -le 18 ]; then
        echo "4.$minor"
    elif [ "$minor" -le 20 ]; then
        echo 4.19-4.20
    else
        echo 4.21+
    fi
}

# The patch files, in order: common/ first, then the epoch's.
series_files() {
    local dir p
    for dir in common "$1"; do
        [ -f "$patches/$dir/series" ] || die "no xen-patches/$dir/series"
        while read -r p; do
            case "$p" in ''|'#'*) continue ;; esac
            echo "$dir/$p"
        done < "$patches/$dir/series"
    done
}

series_digest() {
    (cd "$patches" && cat common/series "$1/series" $(series_files "$1")) | sha256sum | cut -d' ' -f1
}

git_x() { git -C "$tree" -c user.name=rust-ioreq -c user.email=rust-ioreq@localhost "$@"; }

cmd_tree() {
    [ -f "$pristine/.unpacked" ] || XEN_VERSION=$version "$top/tools/setup.sh" xen-source
    local epoch digest stamp="$tree/.rust-ioreq-series" name="build/xen-$version"
    epoch=$(epoch_of "$pristine")
    digest=$(series_digest "$epoch")
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    if [ -d "$tree/.git" ]; then
        # Never throw away edits that were not exported yet.
        if [ -n "$(git_x status --porcelain --untracked-files=no)" ]; then
            die "$name has uncommitted edits; commit them and run 'make xen-export', or remove $name"
        fi
        if [ -f "$stamp" ] && [ "$(git_x rev-parse HEAD)" != "$(cat "$tree/.rust-ioreq-head" 2>/dev/null)" ]; then
            die "$name has commits that are not in xen-patches/; run 'make xen-export' first, or remove $name"
        fi
    fi
    say "creating $name from the pristine tree (epoch $epoch)"
    rm -rf "$tree"
    cp -a "$pristine" "$tree"
    rm -f "$tree/.unpacked"
    git_x init -q
    git_x add -A -f .
    git_x commit -q -m "$(cat "$pristine/.unpacked")"
    git_x tag pristine
    local p
    for p in $(series_files "$epoch"); do
        say "applying $p"
        git_x am -q --keep-cr "$patches/$p" || { git_x am --abort || true; die "patch $p does not apply to Xen $version"; }
    done
    git_x rev-parse HEAD > "$tree/.rust-ioreq-head"
    echo "$digest" > "$stamp"
}

cmd_export() {
    local name="build/xen-$version" epoch
    [ -d "$tree/.git" ] || die "no $name git tree; run 'make xen-tree XEN_VERSION=$version' first"
    [ -z "$(git_x status --porcelain --untracked-files=no)" ] || die "commit your edits in $name first"
    epoch=$(epoch_of "$tree")
    # Each commit goes where its message says: "Xen-epoch: <epoch>" or common/.
    local c dir n=0 tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp/common" "$tmp/$epoch"
    for c in $(git_x rev-list --reverse pristine..HEAD); do
        dir=$(git_x log -1 --format=%B "$c" | sed -n 's/^Xen-epoch: *//p' | head -n1)
        dir=${dir:-common}
        [ "$dir" = common ] || [ "$dir" = "$epoch" ] \
            || die "commit $(git_x log -1 --format='%h %s' "$c") says Xen-epoch: $dir, but $name is epoch $epoch"
        n=$((n + 1))
        git_x format-patch -q --no-signature --zero-commit --start-number "$n" -o "$tmp/$dir" -1 "$c"
    done
    for dir in common "$epoch"; do
        mkdir -p "$patches/$dir"
        rm -f "$patches/$dir"/*.patch
        cp "$tmp/$dir"/*.patch "$patches/$dir/" 2>/dev/null || true
        (cd "$patches/$dir" && { echo "# Applied in order by tools/xen.sh tree ($dir); regenerate with 'make xen-export'."; ls ./*.patch 2>/dev/null | sed 's|^\./||'; } > series)
    done
    rm -rf "$tmp"
    git_x rev-parse HEAD > "$tree/.rust-ioreq-head"
    series_digest "$epoch" > "$tree/.rust-ioreq-series"
    say "exported $n patches to xen-patches/common and xen-patches/$epoch"
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
    # A tree with edits or commits of its own builds (that is how Xen changes are tried before
    # `make xen-export`), but what is built is then not xen-patches/: say so, loudly.
    if [ -n "$(git_x status --porcelain --untracked-files=no)" ] \
        || [ "$(git_x rev-parse HEAD)" != "$(cat "$tree/.rust-ioreq-head" 2>/dev/null)" ]; then
        say "WARNING: build/xen-$version has edits or commits that are not in xen-patches/: building them as they are"
    fi
    cmd_lib
    # Out-of-tree builds need a clean source tree: drop an older in-tree build's leftovers.
    if [ -f "$tree/xen/.config" ]; then
        say "cleaning an in-tree build out of build/xen-$version"
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
    local log="$build/logs/xen-build-$version-$variant.log"
    say "building Xen ($variant; log: ${log#$top/})"
    "${XEN_MAKE[@]}" -j"$(nproc)" > "$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "Xen build ($variant) failed"; }
    local syms="$out/xen-syms"
    [ -f "$out/xen" ] && [ "$syms" -nt "$libdir/librust_ioreq.a" ] || die "Xen build failed (no fresh xen-syms)"
    # Xen's own table: every name, Rust's included, must fit symbols_expand_symbol()'s buffer.
    local long
    long=$(aarch64-linux-gnu-nm "$syms" | awk -v m=$SYMBOL_MAX 'length($3) > m {print $3}')
    [ -z "$long" ] || die "xen-syms has symbols over $SYMBOL_MAX characters: $long"
    # What Xen maps of itself at boot: 4.17 one 2 MiB block (a bigger image links and then
    # hangs; xen-patches/4.17 makes that a link error too), from 4.18 XEN_VIRT_SIZE, 8 MiB.
    local image_max=$((2 << 20))
    grep -rqs "define XEN_VIRT_SIZE" "$tree/xen/arch/arm/include" && image_max=$((8 << 20))
    local start end size
    start=$(aarch64-linux-gnu-nm "$syms" | awk '$3 == "_start" {print $1}')
    end=$(aarch64-linux-gnu-nm "$syms" | awk '$3 == "_end" {print $1}')
    size=$((16#$end - 16#$start))
    [ "$size" -le "$image_max" ] || die "Xen image is $size bytes, over the $image_max limit"
    say "xen $version ($variant): $size bytes loaded (limit $image_max), $(aarch64-linux-gnu-nm "$syms" | grep -c ' rust_ioreq_\| [tT] .*::') Rust symbols"
}

case "${1:-}" in
    tree) cmd_tree ;;
    export) cmd_export ;;
    lib) cmd_lib ;;
    build) cmd_build ;;
    epoch) epoch_of "$pristine" ;;
    *) die "usage: [XEN_VERSION=<version>] $0 tree|export|epoch|lib [release|debug]|build [release|debug]" ;;
esac
