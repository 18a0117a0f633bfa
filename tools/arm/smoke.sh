#!/usr/bin/env bash
# `make smoke-arm`: installs the aarch64 wheel into an emulated arm64 Debian 12 (Python
# 3.11, numpy, scikit-learn for the digits data) and trains the digits example there a
# few steps; the same steps run on the x86-64 development install, and the two runs must
# agree. Not run by CI (minutes of emulation, and it needs root for chroot): run it after
# changes to the bindings, the packaging or the build, and before a release (docs/arm.md).
#
#   tools/arm/smoke.sh PYTHON WHEEL [ROOTFS]
#     PYTHON  the x86-64 venv's python (reference run)
#     WHEEL   the aarch64 wheel (tools/arm/wheel.sh)
#     ROOTFS  default $HOME/.cache/edgetrain/arm64-rootfs, made by tools/arm/rootfs.sh
#
# Both backends train: `python` (the numpy spec, on Debian's arm64 numpy) and `rust` (the
# core's kernels, NEON paths included, through the wheel's aarch64 extension). Passes
# when, for each backend, the arm64 run loads edgetrain._core from the installed wheel
# (an aarch64 ELF), its initial weights are bit-identical to the x86-64 run's, its loss
# falls (the mean of the last five steps is below half the first), and every step's loss
# matches the x86-64 run of the same backend within |arm - x86| <= 1e-5 + 1e-5 |x86|,
# the tolerance of the Rust kernels' conformance tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${1:?usage: tools/arm/smoke.sh PYTHON WHEEL [ROOTFS]}"
wheel="$(realpath "${2:?usage: tools/arm/smoke.sh PYTHON WHEEL [ROOTFS]}")"
rootfs="${3:-$HOME/.cache/edgetrain/arm64-rootfs}"
steps=30

tools/arm/rootfs.sh "$rootfs"

# The package's one dependency Debian 12 lacks (safetensors) is fetched on the host, as an
# aarch64 wheel for CPython 3.11, so the emulated pip needs no network.
work="$rootfs/opt/edgetrain-smoke"
rm -rf "$work"
mkdir -p "$work/wheels"
cp "$wheel" "$work/wheels/"
"$python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_aarch64 \
    --python-version 3.11 --implementation cp -d "$work/wheels" "safetensors>=0.4"
cp tools/arm/smoke_digits.py examples/train_digits.py "$work/"

mount_proc() { mountpoint -q "$rootfs/proc" || mount -t proc proc "$rootfs/proc"; }
unmount_proc() { if mountpoint -q "$rootfs/proc"; then umount "$rootfs/proc"; fi; }
trap unmount_proc EXIT
mount_proc
in_arm() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

echo "smoke-arm: installing $(basename "$wheel") into the arm64 Python (emulated)" >&2
# numpy, scikit-learn and tqdm come from Debian's arm64 packages (system site packages).
in_arm python3 -m venv --system-site-packages /opt/edgetrain-venv
in_arm /opt/edgetrain-venv/bin/pip install -q --no-index --find-links /opt/edgetrain-smoke/wheels \
    --force-reinstall --no-deps /opt/edgetrain-smoke/wheels/"$(basename "$wheel")"
in_arm /opt/edgetrain-venv/bin/pip install -q --no-index --find-links /opt/edgetrain-smoke/wheels \
    safetensors
in_arm /opt/edgetrain-venv/bin/pip check >&2

echo "smoke-arm: training the digits example $steps steps on x86-64 and on arm64 (emulated)" >&2
for backend in python rust; do
    "$python" tools/arm/smoke_digits.py --example examples/train_digits.py --steps "$steps" \
        --backend "$backend" > "$work/x86_64-$backend.json"
    ( cd "$rootfs" && in_arm sh -c "cd /opt/edgetrain-smoke && /opt/edgetrain-venv/bin/python \
        smoke_digits.py --example train_digits.py --steps $steps --backend $backend" ) \
        > "$work/aarch64-$backend.json"
done
file -L "$rootfs$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["core"])' \
    "$work/aarch64-rust.json")" >&2

"$python" - "$work" <<'PY'
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
failures = []
for backend in ("python", "rust"):
    x86, arm = (json.loads((work / f"{m}-{backend}.json").read_text()) for m in ("x86_64", "aarch64"))
    name = f"{backend} backend"
    if arm["machine"] != "aarch64":
        failures.append(f"{name}: the emulated run reports machine {arm['machine']!r}")
    if not arm["core"].startswith("/opt/edgetrain-venv/"):
        failures.append(f"{name}: edgetrain._core was loaded from {arm['core']}, not the wheel")
    if arm["initial_weights_sha256"] != x86["initial_weights_sha256"]:
        failures.append(f"{name}: the initial weights differ between x86-64 and arm64")
    a, x = arm["losses"], x86["losses"]
    if not sum(a[-5:]) / 5 < 0.5 * a[0]:
        failures.append(f"{name}: the arm64 loss did not fall: first {a[0]:.4f}, last five {a[-5:]}")
    for step, (p, q) in enumerate(zip(a, x), 1):
        if abs(p - q) > 1e-5 + 1e-5 * abs(q):
            failures.append(f"{name}, step {step}: loss {p!r} on arm64, {q!r} on x86-64")
    worst = max(abs(p - q) / (1e-5 + 1e-5 * abs(q)) for p, q in zip(a, x))
    print(f"smoke-arm: {name}: loss {a[0]:.4f} -> {a[-1]:.4f} over {len(a)} steps on arm64 "
          f"({x[0]:.4f} -> {x[-1]:.4f} on x86-64); largest difference "
          f"{max(abs(p - q) for p, q in zip(a, x)):.3g} ({worst:.2f} of the tolerance)")
print(f"smoke-arm: arm64 Python {arm['python']}, numpy {arm['numpy']}, edgetrain._core "
      f"{arm['core_version']} from {arm['core']}; x86-64 Python {x86['python']}, numpy {x86['numpy']}")
if failures:
    print("smoke-arm: FAILED\n  " + "\n  ".join(failures))
    sys.exit(1)
print("smoke-arm: passed")
PY
