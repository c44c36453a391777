# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch/torchvision pair that imports together on this project's machines (CPU or CUDA);
# users with their own torch can `pip install -e .` against any torch>=2.2 instead.
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test venv bench-speed bench-quality clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PAIR)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest

demo: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/demo.sh

bench-speed: $(VENV)/.installed
	$(PY) benchmarks/speed.py

bench-quality: $(VENV)/.installed
	$(PY) benchmarks/quality.py

clean:
	rm -rf demo-out .pytest_cache
