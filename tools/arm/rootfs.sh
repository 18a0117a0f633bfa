#!/usr/bin/env bash
# Makes (once) an arm64 Debian 12 root file system with Python 3.11, numpy, scikit-learn
# (the digits data) and tqdm, for running the aarch64 wheel under qemu-user-static.
#
#   tools/arm/rootfs.sh DIR     default DIR: $HOME/.cache/edgetrain/arm64-rootfs
#
# Needs root (debootstrap, chroot) and the qemu-aarch64 binfmt handler, which this script
# registers with the F flag (the kernel keeps the open interpreter, so it works inside the
# chroot) when it is missing. Idempotent: a finished rootfs carries a stamp and is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

rootfs="${1:-$HOME/.cache/edgetrain/arm64-rootfs}"
stamp="$rootfs/.edgetrain-rootfs-ok"
packages=python3,python3-numpy,python3-pip,python3-venv,python3-sklearn,python3-tqdm,ca-certificates
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

tools/arm/install-toolchain.sh --rootfs
tools/arm/binfmt.sh

if [[ -f "$stamp" ]]; then
    exit 0
fi
if [[ -e "$rootfs" ]]; then
    echo "tools/arm: $rootfs exists without its stamp (an interrupted run): making it anew" >&2
    rm -rf --one-file-system "$rootfs"
fi
mkdir -p "$(dirname "$rootfs")"
echo "tools/arm: debootstrap arm64 bookworm into $rootfs (takes a while under emulation)" >&2
debootstrap --arch=arm64 --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" \
    > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
# pip and the package resolver inside the chroot need name resolution.
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
touch "$stamp"
