#!/usr/bin/env bash
# Shows that the GEMM tests, run under qemu-aarch64, execute faer's NEON kernels: the
# `gemm::` tests of the aarch64 `kernels` test binary run with qemu's translation log,
# which names every guest function it translates, and the log must contain both
#   nano_gemm_f32::aarch64::f32::neon::matmul_*   (products of <= 16^3 multiply-adds)
#   gemm_f32::gemm::f32::neon::gemm_basic         (larger ones, with gemm_f32's NEON
#                                                  micro-kernels)
# i.e. the NEON paths that faer's dispatch picks when `is_aarch64_feature_detected!("neon")`.
# Run by tools/arm/test.sh after the tests (the binary is already built).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/arm/env.sh
binary=$(cargo test -p edgetrain-core --target "$ARM_TARGET" --test kernels --no-run \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "kernels" and m.get("executable"):
        print(m["executable"])')
log="$CARGO_TARGET_DIR/gemm-neon-trace.log"
qemu-aarch64-static -d in_asm -D "$log" "$binary" gemm:: --test-threads=1 > /dev/null
symbols=$(grep '^IN: ' "$log" | sort -u)
rm -f "$log"
missing=0
for pattern in '13nano_gemm_f327aarch643f324neon12matmul_' '8gemm_f324gemm3f324neon10gemm_basic' \
               '8gemm_f3211microkernel4neon'; do
    count=$(grep -c "$pattern" <<< "$symbols" || true)
    if [[ "$count" -eq 0 ]]; then
        echo "gemm-neon-check: no function matching $pattern ran" >&2
        missing=1
    else
        echo "gemm-neon-check: $count function(s) matching $pattern ran under qemu-aarch64" >&2
    fi
done
exit "$missing"
