#!/usr/bin/env bash
#! Installs a static aarch64 program stripped: tools/install-static.sh <built binary> <installed copy> <who is speaking>.
#
# Refuses a binary that is not static (a program interpreter or a NEEDED library: it would not
# run from the busybox initramfs); replaces the copy only when it changed, so that the
# initramfs built from it (tools/linux-image.sh) is rebuilt only then.
set -euo pipefail
bin=$1
out=$2
who=$3
die() { printf '%s: ERROR: %s\n' "$who" "$*" >&2; exit 1; }
[ -f "$bin" ] || die "cargo wrote no $bin"
if aarch64-linux-gnu-readelf -ld "$bin" | grep -qE 'INTERP|NEEDED'; then
    die "$bin is not static: $(aarch64-linux-gnu-readelf -d "$bin" | grep NEEDED | tr -s ' ')"
fi
aarch64-linux-gnu-strip -o "$out.tmp" "$bin"
if cmp -s "$out.tmp" "$out"; then
    rm "$out.tmp"
else
    mv "$out.tmp" "$out"
    printf '%s: %s (%s bytes, static aarch64)\n' "$who" "$out" "$(wc -c < "$out")" >&2
fi
