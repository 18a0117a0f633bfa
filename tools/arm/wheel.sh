#!/usr/bin/env bash
# `make wheel-arm`: builds the aarch64 (manylinux) wheel of the package with maturin into
# target/aarch64/wheels/ and prints its path.
#
#   tools/arm/wheel.sh MATURIN     (the Makefile passes the venv's maturin)
#
# PyO3 cannot run the target's Python to learn its configuration, so it is told:
# `-i python3.11` makes maturin use its built-in sysconfig of CPython 3.11 on
# aarch64 Linux (PYO3_CROSS_PYTHON_VERSION says the same to PyO3's build script). An
# extension module on Linux does not link libpython, so no PYO3_CROSS_LIB_DIR is needed.
# Not abi3: the package targets CPython 3.11 on the devices we test, and abi3 would
# restrict the bindings to the limited API for no gain there.
set -euo pipefail
cd "$(dirname "$0")/../.."
maturin="${1:?usage: tools/arm/wheel.sh MATURIN}"
maturin="$(realpath "$maturin")"

tools/arm/install-toolchain.sh
source tools/arm/env.sh
out="$CARGO_TARGET_DIR/wheels"
rm -f "$out"/edgetrain-*-linux_aarch64.whl "$out"/edgetrain-*aarch64.whl
export PYO3_CROSS_PYTHON_VERSION=3.11
"$maturin" build --release --target "$ARM_TARGET" -i python3.11 --out "$out" >&2
ls "$out"/edgetrain-*aarch64.whl
