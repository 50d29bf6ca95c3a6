#!/usr/bin/env bash
#! Installs the host packages, fetches and verifies the pinned Xen source, and unpacks it under build/.
# Idempotent: every step checks whether its result is already there.
set -euo pipefail

XEN_DEB_VERSION="4.17.5+72-g01140da4e8-1"
XEN_ORIG_SHA256="53922f4d0a02c577f2ea9d63f65989cd88715779eebeed879ca1d314103ee06e"
# Debian's Rust 1.96 is the whole toolchain where there is no rustup: rustc, cargo, the
# standard library's source (aarch64 -Zbuild-std), rustfmt and clippy (`make check`).
PACKAGES=(rustc-web cargo-web rust-web-src rustfmt-web rust-web-clippy
          gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
          libc6-dev-arm64-cross qemu-system-arm device-tree-compiler bison flex python3 dpkg-dev
          cpio xz-utils git make cpp u-boot-tools u-boot-qemu e2fsprogs)
SRC_LIST=/etc/apt/sources.list.d/rust-ioreq-deb-src.sources

top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
dl="$build/downloads"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

install_packages() {
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        die "missing packages; run as root, or install them yourself:
    apt-get update && apt-get install -y $missing"
    fi
    say "installing: $missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
}

# deb-src entries are copied from the machine's own deb entries, so no mirror host is
# written in this repository and whatever mirror the machine uses also serves the source.
write_deb_src() {
    [ -f "$SRC_LIST" ] && return 0
    [ "$(id -u)" = 0 ] || die "no deb-src entries yet; run as root once to add $SRC_LIST"
    local tmp
    tmp=$(mktemp)
    python3 - "$tmp" <<'PY'
import glob, re, sys
out = []
def emit(uri, suite, comps, signed):
    if "debian" not in uri or not re.match(r"^(bookworm)(-updates|-security)?$", suite):
        return
    stanza = [f"Types: deb-src", f"URIs: {uri}", f"Suites: {suite}", f"Components: {comps}"]
    if signed:
        stanza.append(f"Signed-By: {signed}")
    out.append("\n".join(stanza))
for path in glob.glob("/etc/apt/sources.list.d/*.sources") + ["/etc/apt/sources.list.d/debian.sources"]:
    try:
        text = open(path).read()
    except OSError:
        continue
    for block in re.split(r"\n\s*\n", text):
        fields = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
        if "deb" not in fields.get("Types", "").split():
            continue
        for uri in fields.get("URIs", "").split():
            for suite in fields.get("Suites", "").split():
                emit(uri, suite, fields.get("Components", "main"), fields.get("Signed-By"))
for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line.strip())
        if m:
            emit(m.group(2), m.group(3), m.group(4), None)
seen = []
for s in out:
    if s not in seen:
        seen.append(s)
if not seen:
    sys.exit("no Debian bookworm 'deb' entry found in /etc/apt/sources.list{,.d}")
open(sys.argv[1], "w").write("\n\n".join(seen) + "\n")
PY
    install -m 0644 "$tmp" "$SRC_LIST"
    rm -f "$tmp"
    say "wrote $SRC_LIST from the machine's deb entries"
    apt-get update -q >&2
}

fetch_xen() {
    mkdir -p "$dl"
    local orig
    orig=$(ls "$dl"/xen_4.17.5*.orig.tar.* 2>/dev/null | head -n1 || true)
    if [ -z "$orig" ]; then
        write_deb_src >&2
        say "fetching Xen source $XEN_DEB_VERSION"
        (cd "$dl" && apt-get source --download-only "xen=$XEN_DEB_VERSION") >&2
        orig=$(ls "$dl"/xen_4.17.5*.orig.tar.* | head -n1)
    fi
    echo "$XEN_ORIG_SHA256  $orig" | sha256sum -c --quiet - \
        || die "sha256 of $orig does not match $XEN_ORIG_SHA256"
    echo "$orig"
}

# Unpacks the pristine orig tarball to build/xen-pristine (no Debian patches: our series is
# against upstream 4.17.5 as Debian ships it in the orig tarball).
unpack_xen() {
    local orig=$1 dest="$build/xen-pristine"
    [ -f "$dest/.unpacked" ] && return 0
    rm -rf "$dest" "$dest.tmp"
    mkdir -p "$dest.tmp"
    tar -xf "$orig" -C "$dest.tmp" --strip-components=1
    touch "$dest.tmp/.unpacked"
    mv "$dest.tmp" "$dest"
    say "unpacked pristine Xen to $dest"
}

case "${1:-all}" in
    packages) install_packages ;;
    xen-source) unpack_xen "$(fetch_xen)" ;;
    all) install_packages; unpack_xen "$(fetch_xen)" ;;
    *) die "usage: $0 [packages|xen-source|all]" ;;
esac
