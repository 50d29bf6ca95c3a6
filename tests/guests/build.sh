#!/bin/sh
# Builds the bare-metal test guests and writes, for every guest listed in GUESTS,
#   <build>/guests/<name>.elf   the linked ELF (symbols, for objdump/addr2line)
#   <build>/guests/<name>.img   the flat arm64 Image that Xen boots (a dom0less module)
# Usage: tests/guests/build.sh [BUILD_DIR]     (BUILD_DIR defaults to <repo>/build)
# Uses Debian's toolchain (/usr/bin/rustc, /usr/bin/cargo; -Zbuild-std via RUSTC_BOOTSTRAP)
# and binutils' aarch64-linux-gnu-ld/objcopy; see .cargo/config.toml for the link settings.
set -eu

GUESTS="hello frontend backend bench wakeup hostile-backend hostile-frontend"
TARGET=aarch64-unknown-none-softfloat

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$repo/build}
mkdir -p "$build/guests"
build=$(cd "$build" && pwd)
target_dir=$build/guests-target

# RUSTFLAGS would replace the target rustflags of .cargo/config.toml (linker script, ld flavor).
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS

cd "$here"
env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
    /usr/bin/cargo build --release \
    -Zbuild-std=core,alloc,compiler_builtins -Zbuild-std-features=compiler-builtins-mem \
    --target "$TARGET"

for name in $GUESTS; do
    elf=$build/guests/$name.elf
    img=$build/guests/$name.img
    cp "$target_dir/$TARGET/release/$name" "$elf"
    aarch64-linux-gnu-objcopy -O binary "$elf" "$img"
    magic=$(od -An -tx1 -j 0x38 -N 4 "$img" | tr -d ' \n')
    if [ "$magic" != "41524d64" ]; then
        echo "build.sh: $img has no arm64 Image magic at 0x38 (got '$magic')" >&2
        exit 1
    fi
    echo "build.sh: $img ($(wc -c < "$img") bytes)"
done
