#!/usr/bin/env bash
# Registers qemu-user-static as the kernel's handler of aarch64 ELF binaries (binfmt_misc),
# so an arm64 chroot can run its programs and their child processes. Idempotent.
set -euo pipefail
binfmt=/proc/sys/fs/binfmt_misc
if [[ ! -e "$binfmt/register" ]]; then
    mount -t binfmt_misc binfmt_misc "$binfmt"
fi
if [[ -e "$binfmt/qemu-aarch64" ]] && grep -qx enabled "$binfmt/qemu-aarch64"; then
    exit 0
fi
# Debian's qemu-user-static ships the rule (magic, mask, interpreter, flags OPF).
rule=$(cat /usr/lib/binfmt.d/qemu-aarch64.conf)
echo "$rule" > "$binfmt/register"
