# One entry point per task: run, test, lint, bench.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
HOST   ?= 127.0.0.1
EXAMPLES := examples/echo examples/digits examples/mlp examples/embeddings examples/chat

.PHONY: run test lint bench clean weights

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps re-run the install when pyproject.toml changes.
$(VENV)/.examples: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[examples]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.examples

weights: $(VENV)/.examples
	@test -f examples/mlp/weights.safetensors || $(BIN)/python examples/mlp/make_weights.py

run: $(VENV)/.examples weights
	$(BIN)/coldbrew serve --host $(HOST) --port $(PORT) $(addprefix --deploy ,$(EXAMPLES))

# kserve 0.21 pins psutil<6 while runpod 1.12 needs psutil>=7.2.2, so kserve lives in its own
# virtualenv (coldbrew + the `kserve` extra), used only by tests/e2e/test_kserve.py.
KSERVE_VENV := .venv-kserve
$(KSERVE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install -q -e '.[kserve]'
	touch $@

# The dashboard's browser tests drive Debian's chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make test needs $(CHROMIUM): install Debian's chromium"; exit 1; }
	apt-get update -qq && apt-get install -y -qq chromium

test: $(VENV)/.dev weights $(KSERVE_VENV)/.installed $(CHROMIUM)
	$(BIN)/python -m pytest -q

# lint-imports: the layers of docs/architecture.md ([tool.importlinter] in pyproject.toml).
lint: $(VENV)/.dev
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .coldbrew examples/mlp/weights.safetensors

# Cold-start benchmark (issue 3): coldbrew fast path vs spawned workers vs Ray Serve from zero.
# Installs Ray into bench/.venv-peers on first use; BENCH_ARGS="--tries 5 --skip-peers" etc.
.PHONY: bench-coldstart
bench-coldstart: $(VENV)/.examples
	$(BIN)/python bench/coldstart.py $(BENCH_ARGS)

# Cold start through a Ray node agent's fork vs a local fork (docs/ray.md).
.PHONY: bench-ray
bench-ray: $(VENV)/.dev
	$(BIN)/python bench/ray_coldstart.py $(BENCH_ARGS)

# Warm-path benchmark (issue 4): coldbrew vs LitServe vs Ray Serve on the same model code, with
# wrk as the load generator (apt-get install -y wrk). BENCH_ARGS="--only noop --rounds 1" etc.
.PHONY: bench-throughput
bench-throughput: $(VENV)/.examples weights
	@command -v wrk >/dev/null || { echo "bench-throughput needs wrk: apt-get install -y wrk"; exit 1; }
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

bench: bench-coldstart bench-throughput

# Chaos suite (issue 11): one fault at a time against a running server; prints accepted /
# completed / lost / run twice / recovered per fault. Disk faults need root (a tmpfs is mounted).
.PHONY: chaos
chaos: $(VENV)/.examples
	$(BIN)/python bench/chaos.py $(BENCH_ARGS)
