#!/usr/bin/env bash
#! Builds the Linux guests from pinned Debian 12 arm64 packages: build/linux/Image, initramfs.cpio.gz (frontend) and dom0-initramfs.cpio.gz (dom0).
#
# Usage: tools/linux-image.sh [BUILD_DIR]      (BUILD_DIR defaults to <repo>/build)
#
# Steps, each skipped when its result is already there (idempotent; the .debs are cached):
#  1. apt: `dpkg --add-architecture arm64` and `apt-get update` only when the arm64 package
#     lists are missing (root needed for that once), then `apt-get download` of the exact
#     pinned versions below into build/linux/debs/; apt checks them against the signed index,
#     and this script checks their sha256 too (a cached .deb is re-checked on every run).
#  2. `dpkg-deb -x` both packages into build/linux/root/.
#  3. build/linux/Image = the package's /boot/vmlinuz-*, which on arm64 is already a raw
#     arm64 Image (checked: "ARM\x64" at 0x38; DESIGN.md §5).
#  4. build/linux/initramfs.cpio.gz (newc, gzip -9: gzip's 32 KiB window is harmless at
#     128 MiB, unlike `xz -9`'s 64 MiB dictionary) holding busybox-static, the modules /init
#     loads (the ones in MODULES plus everything their `depends=` names, transitively, read
#     from each .ko's .modinfo section: the .deb ships no modules.dep), the load order in
#     /lib/modules/load-order, /init = tests/linux/init, and for `make bench` /bin/blkbench (the
#     QD1 O_DIRECT timer, tests/linux/blkbench.c compiled with aarch64-linux-gnu-gcc -static)
#     and the modules in BENCH_MODULES, which /init loads only for it.
#  5. build/linux/dom0-initramfs.cpio.gz, the same way for the dom0 of dom0-destroy.toml:
#     the modules in DOM0_MODULES (xen-privcmd: /dev/xen/privcmd), /init =
#     tests/linux/dom0-init, and /bin/xen-domctl, tests/linux/xen-domctl.c compiled here with
#     aarch64-linux-gnu-gcc -static (package libc6-dev-arm64-cross, tools/setup.sh).
#  6. build/linux/backend-initramfs.cpio.gz, for a Linux backend domain (linux-backend-probe):
#     no stock module, the out-of-tree build/linux/module/rust-ioreq-be.ko (tools/linux-module.sh
#     builds it first: `make linux` runs both; its vermagic must equal the stock modules'),
#     /init = tests/linux/backend-init, /bin/rust-ioreq-be-test (tests/linux/*.c, as above) and
#     the daemon /bin/rust-ioreq-backend (build/linux/rust-ioreq-backend, static aarch64, built by
#     tools/rust-ioreq-backend.sh: `make linux` runs it first). vhost-user-initramfs.cpio.gz is
#     the same plus the unmodified vhost-user daemons build/linux/vhost-device-{rng,vsock}
#     (tools/vhost-user-daemons.sh, also run first) and /bin/vsock-echo (tests/linux/vsock-echo.c;
#     the frontend initramfs has it too).
#  7. build/guests/linux.img, build/guests/linux-initramfs.cpio.gz,
#     build/guests/linux-dom0-initramfs.cpio.gz and build/guests/linux-backend-initramfs.cpio.gz:
#     symlinks to the outputs, so that scenarios can say `kernel = "linux"` and
#     `ramdisk = "linux-initramfs.cpio.gz"` (tools/scenario loads images from build/guests).
#
# Re-pinning (when the mirror no longer serves a pinned version, `apt-get download` fails and
# this script lists what apt offers): set KERNEL_ABI/KERNEL_VERSION/BUSYBOX_VERSION to the
# new versions and the two sha256 values to `sha256sum build/linux/debs/*.deb` of the new
# download, after checking that the new kernel still has CONFIG_VIRTIO_MMIO=m and
# CONFIG_VIRTIO_BLK=m (this script checks that and fails otherwise).
set -euo pipefail

KERNEL_ABI=6.1.0-50
KERNEL_PKG=linux-image-$KERNEL_ABI-arm64
KERNEL_VERSION=6.1.176-1
KERNEL_SHA256=914f75b57a8e165d85fb910c3e2dcc7000a05a9fea3f42f90b26e8dd590d5f06
BUSYBOX_PKG=busybox-static
BUSYBOX_VERSION=1:1.35.0-4+deb12u1+b1
BUSYBOX_SHA256=732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5

# Modules /init loads (paths under lib/modules/<kver>/kernel); their dependencies are added.
# virtio_mmio: the transport probing the `virtio,mmio` node Xen generates; virtio_blk and
# virtio-rng: the devices; ext4: mounts the ext2 filesystem busybox's mke2fs makes (Debian
# builds no ext2 driver: CONFIG_EXT4_USE_FOR_EXT2=y); crc32c_generic: ext4's `softdep=pre:
# crc32c` (not a `depends=`), without which its mount fails with "Cannot load crc32c driver".
# vmw_vsock_virtio_transport (with vsock): AF_VSOCK over a virtio-vsock (vhost-user-vsock).
MODULES=(drivers/virtio/virtio_mmio.ko drivers/block/virtio_blk.ko
         drivers/char/hw_random/virtio-rng.ko crypto/crc32c_generic.ko fs/ext4/ext4.ko
         net/vmw_vsock/vmw_vsock_virtio_transport.ko)
# Modules the frontend initramfs holds but /init loads only for `make bench` (listed, with their
# dependencies, in /lib/modules/bench-order): null_blk, a block device with nothing behind it,
# the floor of a Linux block request (tests/linux/init, linuxtest.bench_floor).
BENCH_MODULES=(drivers/block/null_blk/null_blk.ko)
# Modules the dom0's /init loads: xen-privcmd gives /dev/xen/privcmd (no `depends=` in 6.1).
DOM0_MODULES=(drivers/xen/xen-privcmd.ko)
# Config options the initramfs relies on: =y (built in) or =m (a module above). The dom0 needs
# Xen's dom0 support and hvc0 on Xen's console built in.
NEED_CONFIG=(CONFIG_VIRTIO=y CONFIG_VIRTIO_MMIO=m CONFIG_VIRTIO_BLK=m CONFIG_HW_RANDOM_VIRTIO=m
             CONFIG_CRYPTO_CRC32C=m CONFIG_EXT4_FS=m CONFIG_EXT4_USE_FOR_EXT2=y CONFIG_DEVTMPFS=y
             CONFIG_BLK_DEV_NULL_BLK=m CONFIG_BLK_DEV_INITRD=y CONFIG_RD_GZIP=y CONFIG_SERIAL_AMBA_PL011_CONSOLE=y
             CONFIG_XEN=y CONFIG_XEN_DOM0=y CONFIG_HVC_XEN=y CONFIG_XEN_PRIVCMD=m
             CONFIG_VSOCKETS=m CONFIG_VIRTIO_VSOCKETS=m)

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
out=$build/linux
debs=$out/debs
root=$out/root
init_src=$top/tests/linux/init
dom0_init_src=$top/tests/linux/dom0-init
backend_init_src=$top/tests/linux/backend-init
backend_test_src=$top/tests/linux/rust-ioreq-be-test.c
backend_ko=$out/module/rust-ioreq-be.ko
backend_daemon=$out/rust-ioreq-backend
vhost_user_daemons=("$out/vhost-device-rng" "$out/vhost-device-vsock")
vsock_echo_src=$top/tests/linux/vsock-echo.c
vsock_echo=$out/vsock-echo
domctl_src=$top/tests/linux/xen-domctl.c
blkbench_src=$top/tests/linux/blkbench.c
kver=$KERNEL_ABI-arm64

say() { printf 'linux-image: %s\n' "$*" >&2; }
die() { printf 'linux-image: ERROR: %s\n' "$*" >&2; exit 1; }

# The .deb file name apt-get download writes: <pkg>_<version with ':' as %3a>_arm64.deb.
deb_path() { printf '%s/%s_%s_arm64.deb' "$debs" "$1" "${2//:/%3a}"; }
kernel_deb=$(deb_path "$KERNEL_PKG" "$KERNEL_VERSION")
busybox_deb=$(deb_path "$BUSYBOX_PKG" "$BUSYBOX_VERSION")

sha_ok() { echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

have_arm64_lists() {
    compgen -G '/var/lib/apt/lists/*_binary-arm64_Packages*' >/dev/null
}

ensure_apt_arm64() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        [ "$(id -u)" = 0 ] || die "the arm64 architecture is not enabled; as root run once:
    dpkg --add-architecture arm64 && apt-get update"
        say "dpkg --add-architecture arm64"
        dpkg --add-architecture arm64
    fi
    if ! have_arm64_lists; then
        [ "$(id -u)" = 0 ] || die "no arm64 package lists; as root run once: apt-get update"
        say "apt-get update (no arm64 package lists yet)"
        apt-get update -q >&2
    fi
}

# Downloads <pkg>:arm64=<version> into $debs unless a copy with the right sha256 is there.
fetch_deb() {
    local pkg=$1 version=$2 sha=$3 path=$4
    if [ -f "$path" ] && sha_ok "$path" "$sha"; then
        return 0
    fi
    rm -f "$path"
    ensure_apt_arm64
    say "apt-get download $pkg:arm64=$version"
    # The sandbox user _apt cannot write into a root-owned build tree: download as the caller.
    if ! (cd "$debs" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
            "$pkg:arm64=$version") >&2; then
        say "apt offers these versions of $pkg:arm64 now:"
        apt-cache madison "$pkg:arm64" >&2 || true
        apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-arm64$' >&2 || true
        die "cannot download $pkg:arm64=$version; re-pin it (see the top of $0)"
    fi
    [ -f "$path" ] || die "apt-get download did not write $path"
    if ! sha_ok "$path" "$sha"; then
        local got
        got=$(sha256sum "$path" | cut -d' ' -f1)
        rm -f "$path"
        die "sha256 of $(basename "$path") is $got, pinned $sha"
    fi
}

# Extracts both packages into $root once per pinned pair (a stamp names the pins).
extract() {
    local stamp=$root/.extracted want="$KERNEL_SHA256 $BUSYBOX_SHA256"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    rm -rf "$root" "$root.tmp"
    mkdir -p "$root.tmp"
    say "extracting $(basename "$kernel_deb") and $(basename "$busybox_deb")"
    dpkg-deb -x "$kernel_deb" "$root.tmp"
    dpkg-deb -x "$busybox_deb" "$root.tmp"
    echo "$want" > "$root.tmp/.extracted"
    mv "$root.tmp" "$root"
}

check_config() {
    local cfg=$root/boot/config-$kver opt
    [ -f "$cfg" ] || die "no $cfg in $KERNEL_PKG"
    for opt in "${NEED_CONFIG[@]}"; do
        grep -qx "$opt" "$cfg" || die "$KERNEL_PKG: expected $opt in $(basename "$cfg"), got: \
$(grep -E "^(# )?${opt%%=*}[= ]" "$cfg" || echo 'nothing')"
    done
}

install_image() {
    local src=$root/boot/vmlinuz-$kver magic
    [ -f "$src" ] || die "no $src in $KERNEL_PKG"
    magic=$(od -An -tx1 -j 0x38 -N 4 "$src" | tr -d ' \n')
    [ "$magic" = 41524d64 ] || die "$src: no arm64 Image magic \"ARM\\x64\" at 0x38 (got $magic)"
    if ! cmp -s "$src" "$out/Image"; then
        cp "$src" "$out/Image.tmp"
        mv "$out/Image.tmp" "$out/Image"
        say "$out/Image ($(wc -c < "$out/Image") bytes, $kver)"
    fi
}

# Prints the `depends=` list of a .ko (comma-separated module names, maybe empty).
ko_depends() {
    aarch64-linux-gnu-objcopy -O binary -j .modinfo "$1" /dev/stdout \
        | tr '\0' '\n' | sed -n 's/^depends=//p'
}

# Prints the path (relative to the kernel module dir) of the module called $1: module names
# use '_' where file names may use '-' (virtio_rng is virtio-rng.ko).
ko_path() {
    local name=$1 dir=$root/lib/modules/$kver/kernel hits
    hits=$(cd "$dir" && find . \( -name "$name.ko" -o -name "${name//_/-}.ko" \) | sed 's|^\./||')
    [ -n "$hits" ] || die "module $name (a dependency) not found in $KERNEL_PKG"
    [ "$(wc -l <<<"$hits")" = 1 ] || die "module $name is ambiguous: $hits"
    echo "$hits"
}

# Prints the paths of the modules given as arguments in load order: every module after the
# ones it depends on.
load_order() {
    local -A seen=()
    local order=()
    visit() {
        local rel=$1 dep deps
        [ -n "${seen[$rel]:-}" ] && return 0
        seen[$rel]=1
        [ -f "$root/lib/modules/$kver/kernel/$rel" ] || die "no $rel in $KERNEL_PKG"
        deps=$(ko_depends "$root/lib/modules/$kver/kernel/$rel")
        for dep in ${deps//,/ }; do
            visit "$(ko_path "$dep")"
        done
        order+=("$rel")
    }
    local m
    for m in "$@"; do visit "$m"; done
    printf '%s\n' "${order[@]}"
}

# Writes a newc archive holding only the character device dev/console (5,1) to stdout. The
# kernel opens /dev/console for /init's stdin/stdout/stderr before /init runs, and making a
# device node on the host would need root; the kernel unpacks concatenated archives.
console_node_cpio() {
    local name=dev/console
    local namesize=$(( ${#name} + 1 ))
    # magic ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        1 $((8#020600)) 0 0 1 0 0 0 0 5 1 "$namesize" 0
    printf '%s\0' "$name"
    # Header (110 bytes) + name padded to a multiple of 4.
    local pad=$(( (4 - (110 + namesize) % 4) % 4 ))
    head -c "$pad" /dev/zero
    local trailer='TRAILER!!!'
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 0 0 0 1 0 0 0 0 0 0 $(( ${#trailer} + 1 )) 0
    printf '%s\0' "$trailer"
    head -c $(( (4 - (110 + ${#trailer} + 1) % 4) % 4 )) /dev/zero
}

# Prints the vermagic of module $1.
ko_vermagic() {
    aarch64-linux-gnu-objcopy -O binary -j .modinfo "$1" /dev/stdout \
        | tr '\0' '\n' | sed -n 's/^vermagic=//p'
}

# Tells whether $1 is newer than every file of EXTRA_BINS (each must exist).
newer_than_bins() {
    local bin
    for bin in "${EXTRA_BINS[@]}"; do
        [ -f "$bin" ] || die "no $bin (tools/rust-ioreq-backend.sh builds it; make linux runs it)"
        [ "$1" -nt "$bin" ] || return 1
    done
}

# Builds initramfs $1 with /init = $2, the modules $5... (and their dependencies), when $3 is
# not empty the static program compiled from C source $3 as /bin/<its name without .c>, and when
# $4 is not empty the out-of-tree module $4 in /lib/modules (not in load-order: /init loads it).
# The modules of the array ON_DEMAND (and their dependencies not loaded already) are added too,
# in /lib/modules/bench-order instead of load-order: /init loads them only when asked.
ON_DEMAND=()
# Prebuilt programs copied as /bin/<name> (and inputs of the up-to-date check).
EXTRA_BINS=()
build_initramfs() {
    local dest=$1 init=$2 program=$3 extra_ko=$4 stage=$1.tmp.d rel name
    shift 4
    [ -f "$init" ] || die "no $init"
    if [ -n "$extra_ko" ]; then
        [ -f "$extra_ko" ] || die "no $extra_ko: run tools/linux-module.sh first (make linux does)"
        local stock want got
        stock=$root/lib/modules/$kver/kernel/drivers/virtio/virtio_mmio.ko
        want=$(ko_vermagic "$stock")
        got=$(ko_vermagic "$extra_ko")
        [ -n "$want" ] && [ "$got" = "$want" ] \
            || die "$extra_ko: vermagic \"$got\", the pinned kernel's modules have \"$want\""
    fi
    # Rebuilt when its inputs, this script or the packages changed.
    if [ -f "$dest" ] && [ "$dest" -nt "$init" ] && [ "$dest" -nt "$0" ] \
            && [ "$dest" -nt "$root/.extracted" ] && { [ -z "$program" ] || [ "$dest" -nt "$program" ]; } \
            && { [ -z "$extra_ko" ] || [ "$dest" -nt "$extra_ko" ]; } \
            && newer_than_bins "$dest"; then
        return 0
    fi
    local order=
    [ $# = 0 ] || order=$(load_order "$@")
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,mnt,lib/modules}
    cp "$root/bin/busybox" "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    install -m 0755 "$init" "$stage/init"
    if [ -n "$program" ]; then
        command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing (run make setup)"
        aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -Werror \
            -o "$stage/bin/$(basename "$program" .c)" "$program" \
            || die "cannot build $program (static: needs libc6-dev-arm64-cross)"
    fi
    : > "$stage/lib/modules/load-order"
    while read -r rel; do
        [ -n "$rel" ] || continue
        name=$(basename "$rel" .ko)
        cp "$root/lib/modules/$kver/kernel/$rel" "$stage/lib/modules/$name.ko"
        echo "$name" >> "$stage/lib/modules/load-order"
    done <<<"$order"
    if [ "${#ON_DEMAND[@]}" -gt 0 ]; then
        : > "$stage/lib/modules/bench-order"
        while read -r rel; do
            name=$(basename "$rel" .ko)
            [ -f "$stage/lib/modules/$name.ko" ] && continue
            cp "$root/lib/modules/$kver/kernel/$rel" "$stage/lib/modules/$name.ko"
            echo "$name" >> "$stage/lib/modules/bench-order"
        done <<<"$(load_order "${ON_DEMAND[@]}")"
    fi
    local bin
    for bin in "${EXTRA_BINS[@]}"; do
        install -m 0755 "$bin" "$stage/bin/$(basename "$bin")"
    done
    if [ -n "$extra_ko" ]; then
        # Without its debug information: the initramfs stays small.
        aarch64-linux-gnu-objcopy --strip-debug "$extra_ko" "$stage/lib/modules/$(basename "$extra_ko")"
    fi
    echo "$kver" > "$stage/lib/modules/kernel-release"
    # Fixed mtimes and owner, sorted names: the archive depends only on its inputs.
    find "$stage" -exec touch -h -d @0 {} +
    {
        console_node_cpio
        (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort \
            | cpio --quiet -o -H newc -R 0:0 --reproducible)
    } | gzip -9 -n > "$dest.tmp"
    mv "$dest.tmp" "$dest"
    rm -rf "$stage"
    say "$dest ($(wc -c < "$dest") bytes; modules: $(tr '\n' ' ' <<<"${order:-none}")${extra_ko:+ + $(basename "$extra_ko")})"
}

link_images() {
    mkdir -p "$build/guests"
    ln -sfn ../linux/Image "$build/guests/linux.img"
    ln -sfn ../linux/initramfs.cpio.gz "$build/guests/linux-initramfs.cpio.gz"
    ln -sfn ../linux/dom0-initramfs.cpio.gz "$build/guests/linux-dom0-initramfs.cpio.gz"
    ln -sfn ../linux/backend-initramfs.cpio.gz "$build/guests/linux-backend-initramfs.cpio.gz"
    ln -sfn ../linux/vhost-user-initramfs.cpio.gz "$build/guests/linux-vhost-user-initramfs.cpio.gz"
}

mkdir -p "$debs"
fetch_deb "$KERNEL_PKG" "$KERNEL_VERSION" "$KERNEL_SHA256" "$kernel_deb"
fetch_deb "$BUSYBOX_PKG" "$BUSYBOX_VERSION" "$BUSYBOX_SHA256" "$busybox_deb"
extract
check_config
install_image
# The vhost-user-vsock scenario's two ends (frontend and vhost-user backend initramfs).
if ! [ "$vsock_echo" -nt "$vsock_echo_src" ]; then
    aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -Werror -o "$vsock_echo" "$vsock_echo_src" \
        || die "cannot build $vsock_echo_src"
fi
ON_DEMAND=("${BENCH_MODULES[@]}")
EXTRA_BINS=("$vsock_echo")
build_initramfs "$out/initramfs.cpio.gz" "$init_src" "$blkbench_src" "" "${MODULES[@]}"
ON_DEMAND=()
EXTRA_BINS=()
build_initramfs "$out/dom0-initramfs.cpio.gz" "$dom0_init_src" "$domctl_src" "" "${DOM0_MODULES[@]}"
EXTRA_BINS=("$backend_daemon")
build_initramfs "$out/backend-initramfs.cpio.gz" "$backend_init_src" "$backend_test_src" "$backend_ko"
# The same plus the unmodified vhost-user daemons, in an initramfs of its own: they add a few
# MiB to the backend's RAM-backed root, which the other scenarios' disk images need.
EXTRA_BINS=("$backend_daemon" "${vhost_user_daemons[@]}" "$vsock_echo")
build_initramfs "$out/vhost-user-initramfs.cpio.gz" "$backend_init_src" "$backend_test_src" "$backend_ko"
EXTRA_BINS=()
link_images
