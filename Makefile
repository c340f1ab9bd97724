# Set-up and the everyday commands. Every target installs first, so each works on a fresh machine.
PY ?= python3
# CPU build of torch that lies on this kind of machine's disk; a plain `pip install torch` pulls a multi-GB
# CUDA build. A torch that is already installed is never replaced.
TORCH ?= torch==2.13.0

.PHONY: install test test-slow demo lint format bench

install:
	@$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	@$(PY) -m pip install -q -e '.[test]'

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(PY) -m violetv2 fit --config configs/quickstart.yaml

lint:
	ruff check src tests bench
	ruff format --check src tests bench

format:
	ruff format src tests bench
	ruff check --fix src tests bench

bench: install
	$(PY) bench/backbone.py
