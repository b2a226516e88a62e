# Quick start: `make demo` (main job, CPU, no downloads) and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# transformers 4.40.x (+ peft 0.11.1, pillow): what OpenVLA's remote code and fine-tuning need; the core is tested against it too.
VENV_TF440 := .venv-tf440
EXTRAS := dev,train,libero,robot,video,simpler,cluster,tensorboard
TF440_PACKAGES := "transformers==4.40.*" "numpy<2.3" pytest pytest-xdist "peft==0.11.1" pillow
# The lock: pip constraints for every package each venv installs (`make lock` writes them, README "Dependencies").
LOCK := requirements/lock.txt
LOCK_TF440 := requirements/lock-tf440.txt
# The versions CI prints first
SHOWN := torch transformers peft accelerate mujoco mani-skill av

.PHONY: install test test-core-tf440 test-latest demo lock versions system-deps clean

# $(call venv,DIR,PIP OPTIONS,PACKAGES): torch==2.13.0 first: on these machines it is a local CPU build, while an
# unpinned torch pulls a multi-GB CUDA build. pyproject keeps a range so GPU users get their own build.
define venv
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q $(2) --upgrade pip
	$(1)/bin/python -m pip install -q $(2) torch==2.13.0
	$(1)/bin/python -m pip install -q $(2) $(3)
endef

$(VENV)/.installed: pyproject.toml setup.py $(LOCK)
	$(call venv,$(VENV),-c $(LOCK),-e ".[$(EXTRAS)]")
	$(PY) scripts/lock.py check $(LOCK)
	touch $@

$(VENV_TF440)/.installed: pyproject.toml setup.py $(LOCK_TF440)
	$(call venv,$(VENV_TF440),-c $(LOCK_TF440),$(TF440_PACKAGES) -e .)
	$(VENV_TF440)/bin/python scripts/lock.py check $(LOCK_TF440)
	touch $@

# Today's releases into fresh venvs, frozen into the lock. Then `make test`: a lock that fails the suite is not kept.
lock:
	rm -rf .venv-lock .venv-lock-tf440
	$(call venv,.venv-lock,,-e ".[$(EXTRAS)]")
	$(call venv,.venv-lock-tf440,,$(TF440_PACKAGES) -e .)
	$(PYTHON) scripts/lock.py freeze $(LOCK) --venv .venv-lock --source 'torch==2.13.0 + .[$(EXTRAS)]'
	$(PYTHON) scripts/lock.py freeze $(LOCK_TF440) --venv .venv-lock-tf440 --source 'torch==2.13.0 + $(TF440_PACKAGES) + .'
	rm -rf .venv-lock .venv-lock-tf440

# Set-up only (what `make test` and `make demo` do first): system packages and both venvs through the lock.
install: system-deps $(VENV)/.installed $(VENV_TF440)/.installed

versions: system-deps $(VENV)/.installed
	@$(PY) -c 'from importlib.metadata import version; print("versions: " + ", ".join(f"{p} {version(p)}" for p in "$(SHOWN)".split()))'

system-deps:
	bash scripts/install-system-deps.sh

# One intra-op thread per process: the tests run small models, where torch's thread pool on 2 cores costs more
# than it gains. Two pytest workers (pytest-xdist) share the cores; tests marked `serial` (timing-sensitive
# real-robot loops against a roscore and served policies) run alone afterwards, collected from tests/real_robot only
# (tests/conftest.py refuses a serial test elsewhere). The slowest tests are listed.
test: export OMP_NUM_THREADS = 1
test: system-deps $(VENV)/.installed $(VENV_TF440)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not serial" --durations=15 tests
	$(PY) -m pytest -q -m serial --durations=5 tests/real_robot
	$(MAKE) --no-print-directory test-core-tf440

test-core-tf440: export OMP_NUM_THREADS = 1
test-core-tf440: $(VENV_TF440)/.installed
	$(VENV_TF440)/bin/python -m pytest -q -m tf440 tests/core -p no:cacheprovider

# Drift, seen before it breaks CI: today's releases (no lock) in .venv-latest, the core and adapter tests on them.
test-latest: export OMP_NUM_THREADS = 1
test-latest:
	rm -rf .venv-latest
	$(call venv,.venv-latest,,-e ".[$(EXTRAS)]")
	.venv-latest/bin/python scripts/lock.py diff $(LOCK)
	.venv-latest/bin/python -m pytest -q -n 2 tests/core tests/adapters

# The same cap for the demo (its training ran at 8 s/step beside other load without it); OMP_NUM_THREADS=N make demo
# gives it more. DEMO_ARGS go to `lara demo` (make demo DEMO_ARGS="--seed 3").
DEMO_ARGS ?=
demo: export OMP_NUM_THREADS ?= 1
demo: system-deps $(VENV)/.installed
	$(VENV)/bin/lara demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(VENV_TF440) .venv-latest .venv-lock .venv-lock-tf440 .pytest_cache
