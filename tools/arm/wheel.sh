#!/usr/bin/env bash
# `make wheel-arm`: builds the aarch64 manylinux2014 wheel (glibc >= 2.17) of the package
# with maturin into target/aarch64/wheels/ and prints its path.
#
#   tools/arm/wheel.sh MATURIN     (the Makefile passes the venv's maturin)
#
# PyO3 cannot run the target's Python to learn its configuration, so it is told:
# `-i python3.11` makes maturin use its built-in sysconfig of CPython 3.11 on
# aarch64 Linux (PYO3_CROSS_PYTHON_VERSION says the same to PyO3's build script). An
# extension module on Linux does not link libpython, so no PYO3_CROSS_LIB_DIR is needed.
# Not abi3: the package targets CPython 3.11 on the devices we test, and abi3 would
# restrict the bindings to the limited API for no gain there.
#
# Linked with `zig cc` (maturin --zig; zig from PyPI's `ziglang`, in a venv of its own),
# which links against glibc 2.17's symbol versions: Debian's gcc-aarch64-linux-gnu links
# against its glibc 2.36 and the wheel then needs glibc 2.34 (manylinux_2_34: no Ubuntu
# 20.04, no older Jetson or Raspberry Pi OS images).
set -euo pipefail
cd "$(dirname "$0")/../.."
maturin="${1:?usage: tools/arm/wheel.sh MATURIN}"
maturin="$(realpath "$maturin")"

tools/arm/install-toolchain.sh
source tools/arm/env.sh
zig_venv="$CARGO_TARGET_DIR/zig-venv"
if [[ ! -x "$zig_venv/bin/python" ]] || ! "$zig_venv/bin/python" -m ziglang version > /dev/null 2>&1; then
    python3 -m venv "$zig_venv"
    "$zig_venv/bin/pip" install -q "ziglang==0.17.1"
fi
# maturin runs zig through the `ziglang` module of the first python on PATH.
export PATH="$zig_venv/bin:$PATH"
out="$CARGO_TARGET_DIR/wheels"
rm -f "$out"/edgetrain-*-linux_aarch64.whl "$out"/edgetrain-*aarch64.whl
export PYO3_CROSS_PYTHON_VERSION=3.11
"$maturin" build --release --target "$ARM_TARGET" -i python3.11 --zig \
    --compatibility manylinux2014 --out "$out" >&2
ls "$out"/edgetrain-*aarch64.whl
