#!/usr/bin/env bash
# Installs the aarch64 cross toolchain from Debian's packages, only what is missing:
#   rustc-web/cargo-web   Rust 1.96 as /usr/bin/rustc and /usr/bin/cargo, beside rustup's toolchain
#   libstd-rust-web-dev:arm64   the aarch64 standard library for that rustc (rustup cannot add
#                               targets here: it downloads from a host this machine cannot reach)
#   gcc-aarch64-linux-gnu, libc6-dev-arm64-cross   the linker, and the aarch64 glibc it links
#                               against (/usr/aarch64-linux-gnu)
#   binutils-aarch64-linux-gnu  objdump for reading the kernels' assembly
#   qemu-user-static            runs the aarch64 test binaries on x86-64, with the loader and
#   libc6:arm64, libgcc-s1:arm64  glibc of Debian's multiarch arm64 packages (.cargo/config.toml)
# With --rootfs it also installs debootstrap, for tools/arm/rootfs.sh.
set -euo pipefail

packages=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu
          libc6-dev-arm64-cross libc6:arm64 libgcc-s1:arm64 binutils-aarch64-linux-gnu
          qemu-user-static)
if [[ "${1:-}" == "--rootfs" ]]; then
    packages+=(debootstrap)
fi

missing=()
for p in "${packages[@]}"; do
    # dpkg-query prints "install ok installed" only for a fully installed package.
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "tools/arm: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
    sudo_cmd=(sudo)
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo_cmd[@]}" dpkg --add-architecture arm64
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
