#!/usr/bin/env bash
# `make test-arm`: builds edgetrain-core (pure Rust) for aarch64-unknown-linux-gnu and runs
# its whole `cargo test` (unit, integration and doc tests) under qemu-aarch64, so every
# kernel is checked on the architecture it is for: faer's NEON GEMM kernels and
# edgetrain's own `cfg(target_arch = "aarch64")` paths, which a host build never compiles.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/../.."
tools/arm/install-toolchain.sh
source tools/arm/env.sh
cargo test -p edgetrain-core --target "$ARM_TARGET" "$@"
# Which GEMM kernels those tests ran: faer's NEON ones, not a scalar fallback.
tools/arm/gemm_neon_check.sh
