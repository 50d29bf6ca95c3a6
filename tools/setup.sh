#!/usr/bin/env bash
#! Installs the host packages, fetches and verifies the pinned Xen source, and unpacks it under build/.
# Idempotent: every step checks whether its result is already there.
#
#   tools/setup.sh packages     the host packages (as root)
#   tools/setup.sh xen-source   the source of Xen XEN_VERSION (default 4.22.0), verified, unpacked
#                               to build/xen-<version>-pristine
#
# Where the source comes from:
#   4.17.5  Debian's source package (deb-src entries derived from the machine's apt sources),
#           its orig tarball checked against a pinned sha256.
#   4.22.0  in this order: XEN_SRC=<tarball or directory> if given; ../shared/xen/xen-4.22.0.tar.xz
#           when present; else the Xen Project's git (XEN_GIT_URL), tag RELEASE-4.22.0. Each is
#           checked against the pinned sha256, commit or tree ids below.
set -euo pipefail

XEN_VERSION="${XEN_VERSION:-4.22.0}"
XEN_DEB_VERSION="4.17.5+72-g01140da4e8-1"
XEN_ORIG_SHA256="53922f4d0a02c577f2ea9d63f65989cd88715779eebeed879ca1d314103ee06e"
# Xen 4.22.0 (../shared/xen/README.md): the tag's commit and tree, the sha256 of the
# `git archive | xz` tarball, and the git tree id of its unpacked content (which differs from
# the tag's only by the .gitarchive-info that git archive fills in).
XEN_422_TAG=RELEASE-4.22.0
XEN_422_COMMIT=d45d5687f1441495f4ee20d5e9940066c5fa5beb
XEN_422_TAG_TREE=3b3f5d4b06962b9e1c433ca9a86a3ab7766f3861
XEN_422_ARCHIVE_TREE=835a6abba5237170e7a60a5767551efdca0c9db7
XEN_422_TARBALL_SHA256=0709a15ce9332a4c35505bad8161c8f56372a910a798a383804a92fc1d72ecf6
XEN_GIT_URL="${XEN_GIT_URL:-https://xenbits.xen.org/git-http/xen.git}"
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

# The git tree id of the files under directory $1 (every file, as `git add -A -f` sees them).
content_tree_id() {
    local gd
    gd=$(mktemp -d)
    git --git-dir="$gd" init -q
    git --git-dir="$gd" --work-tree="$1" add -A -f .
    git --git-dir="$gd" --work-tree="$1" write-tree
    rm -rf "$gd"
}

# Unpacks (or copies) a 4.22.0 source into $2 and verifies it; prints where it came from.
xen_422_into() {
    local dest=$2 src
    if [ -n "${XEN_SRC:-}" ]; then
        src=$XEN_SRC
        [ -e "$src" ] || die "XEN_SRC=$src does not exist"
        if [ -d "$src" ]; then
            cp -a "$src/." "$dest/"
            rm -rf "$dest/.git"
        else
            tar -xf "$src" -C "$dest" --strip-components=1
        fi
    elif [ -f "$top/../shared/xen/xen-4.22.0.tar.xz" ]; then
        src=$(cd "$top/../shared/xen" && pwd)/xen-4.22.0.tar.xz
        echo "$XEN_422_TARBALL_SHA256  $src" | sha256sum -c --quiet - \
            || die "sha256 of $src does not match $XEN_422_TARBALL_SHA256"
        tar -xf "$src" -C "$dest" --strip-components=1
    else
        src="$XEN_GIT_URL $XEN_422_TAG"
        say "fetching Xen $XEN_422_TAG from $XEN_GIT_URL"
        local clone="$dl/xen-4.22.0.git"
        rm -rf "$clone"
        git clone -q --bare --depth 1 --branch "$XEN_422_TAG" "$XEN_GIT_URL" "$clone" \
            || die "cannot clone $XEN_GIT_URL (tag $XEN_422_TAG); name a tarball or tree with XEN_SRC=<path>"
        [ "$(git --git-dir="$clone" rev-parse "$XEN_422_TAG^{commit}")" = "$XEN_422_COMMIT" ] \
            || die "$XEN_422_TAG at $XEN_GIT_URL is not commit $XEN_422_COMMIT"
        git --git-dir="$clone" archive "$XEN_422_TAG" | tar -x -C "$dest"
    fi
    # Whatever the source, the content must be the tag's (or git archive's rendering of it).
    local id
    id=$(content_tree_id "$dest")
    [ "$id" = "$XEN_422_TAG_TREE" ] || [ "$id" = "$XEN_422_ARCHIVE_TREE" ] \
        || die "the Xen source from $src is not $XEN_422_TAG: its tree id is $id, expected $XEN_422_TAG_TREE (the tag) or $XEN_422_ARCHIVE_TREE (its git archive)"
    echo "Xen 4.22.0 ($XEN_422_TAG, commit $XEN_422_COMMIT; from $src, tree $id)"
}

# Unpacks the pinned source of XEN_VERSION to build/xen-<version>-pristine; .unpacked says
# what it is (the first commit of `make xen-tree`). 4.17.5 is the orig tarball without Debian's
# patches: our series is against upstream 4.17.5 as Debian ships it in the orig tarball.
unpack_xen() {
    local dest="$build/xen-$XEN_VERSION-pristine" what orig
    [ -f "$dest/.unpacked" ] && return 0
    rm -rf "$dest" "$dest.tmp"
    mkdir -p "$dest.tmp"
    case "$XEN_VERSION" in
        4.17.5)
            orig=$(fetch_xen)
            tar -xf "$orig" -C "$dest.tmp" --strip-components=1
            what="Xen 4.17.5 (Debian orig tarball 4.17.5+72-g01140da4e8, sha256 $XEN_ORIG_SHA256)"
            ;;
        4.22.0)
            mkdir -p "$dl"
            what=$(xen_422_into "$XEN_VERSION" "$dest.tmp")
            ;;
        *) die "XEN_VERSION=$XEN_VERSION: the pinned releases are 4.22.0 and 4.17.5" ;;
    esac
    echo "$what" > "$dest.tmp/.unpacked"
    mv "$dest.tmp" "$dest"
    say "unpacked $what to ${dest#$top/}"
}

case "${1:-all}" in
    packages) install_packages ;;
    xen-source) unpack_xen ;;
    all) install_packages; unpack_xen ;;
    *) die "usage: $0 [packages|xen-source|all]" ;;
esac
