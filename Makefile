# Quick start: `make demo` (main job, CPU, no downloads) and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# transformers 4.40.x (+ peft 0.11.1, pillow): what OpenVLA's remote code and fine-tuning need; the core is tested against it too.
VENV_TF440 := .venv-tf440
EXTRAS := dev,train,libero,robot,video,simpler

.PHONY: test test-core-tf440 demo system-deps clean

# torch==2.13.0 first: on these machines it is a local CPU build, while an unpinned torch pulls a
# multi-GB CUDA build. pyproject keeps a range so GPU users get their own build.
$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

$(VENV_TF440)/.installed: pyproject.toml setup.py
	test -x $(VENV_TF440)/bin/python || $(PYTHON) -m venv $(VENV_TF440)
	$(VENV_TF440)/bin/python -m pip install -q --upgrade pip
	$(VENV_TF440)/bin/python -m pip install -q torch==2.13.0 "transformers==4.40.*" "numpy<2.3" pytest "peft==0.11.1" pillow
	$(VENV_TF440)/bin/python -m pip install -q -e .
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

# One intra-op thread per process: the tests run small models, where torch's thread pool on 2 cores
# costs more than it gains (the LAM probe test ran 2x slower with 2 threads).
test: export OMP_NUM_THREADS = 1
test: system-deps $(VENV)/.installed $(VENV_TF440)/.installed
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory test-core-tf440

test-core-tf440: export OMP_NUM_THREADS = 1
test-core-tf440: $(VENV_TF440)/.installed
	$(VENV_TF440)/bin/python -m pytest -q -m tf440 tests/core -p no:cacheprovider

# The same cap for the demo (its training ran at 8 s/step beside other load without it); OMP_NUM_THREADS=N make demo
# gives it more.
demo: export OMP_NUM_THREADS ?= 1
demo: system-deps $(VENV)/.installed
	$(VENV)/bin/lara demo

clean:
	rm -rf $(VENV) $(VENV_TF440) .pytest_cache
