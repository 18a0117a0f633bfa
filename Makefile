# The README's two set-up commands are `make demo` and `make test`; both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: install demo test test-rust test-python typecheck lint bench clean

# aarch64 (docs/arm.md): tools/arm/ installs Debian's cross toolchain and qemu when missing.
.PHONY: test-arm wheel-arm smoke-arm

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.deps: pyproject.toml | $(PY)
	$(PY) -m pip install -q "maturin>=1.7,<2"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# Rebuilds the Rust extension into the venv (a fast no-op when nothing changed).
install: $(VENV)/.deps
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release -q

demo: install
	$(VENV)/bin/edgetrain train examples/digits_cnn.ini --data digits --save out/digits_cnn.bin

test: install test-rust test-python typecheck

test-rust:
	cargo test --workspace --quiet
	cargo clippy --workspace --all-targets --quiet -- -D warnings

test-python: install
	$(PY) -m pytest -q

typecheck: install
	$(PY) -m mypy --strict python/
	$(PY) -m mypy.stubtest edgetrain._core

lint: install
	$(VENV)/bin/ruff check python tests
	cargo clippy --workspace -- -D warnings

bench: install
	$(PY) -m bench

# The core crate's whole cargo test, built for aarch64 and run under qemu-aarch64.
test-arm:
	tools/arm/test.sh

# A manylinux aarch64 wheel, into target/aarch64/wheels/.
wheel-arm: $(VENV)/.deps
	tools/arm/wheel.sh $(VENV)/bin/maturin

# Installs that wheel into an emulated arm64 Debian (root; not in CI) and trains the digits
# example there, checked against the x86-64 run.
smoke-arm: wheel-arm install
	tools/arm/smoke.sh $(PY) $$(ls -t target/aarch64/wheels/edgetrain-*aarch64.whl | head -1)

clean:
	rm -rf target $(VENV) out
