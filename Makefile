# The README's two set-up commands are `make demo` and `make test`; both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: install demo test test-rust test-python typecheck lint bench clean

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

clean:
	rm -rf target $(VENV) out
