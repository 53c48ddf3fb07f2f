# pf: every command sets up what it needs first (a virtual environment in .venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.installed
# The exact, tested environment; pyproject.toml keeps the ranges a library user installs from.
LOCK := requirements.lock

.PHONY: setup notebook-git lock demo companion test test-fast bench gpu-bundle gpu-check clean

# The environment is (re)built whenever pyproject.toml or the lock changes: the locked
# packages first, then pf itself without resolving anything again.
$(READY): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(MAKE) --no-print-directory notebook-git
	touch $(READY)

# Notebooks are committed without outputs: git strips them as it reads a notebook
# (.gitattributes names the filter), and the Jupyter server of .venv refreshes git's index
# after each save (pf.notebook_saves), so JupyterLab's saves never dirty `git status`.
# Configured here, not with nbstripout --install, which would not keep the cell ids. The
# hook goes in the server's settings file: its .d folder is read for extension switches only.
JUPYTER_HOOK := $(VENV)/etc/jupyter/jupyter_server_config.json
notebook-git:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean "'$(abspath $(BIN))/python' -m nbstripout --keep-id"; \
	  git config filter.nbstripout.smudge cat; \
	  mkdir -p $(dir $(JUPYTER_HOOK)); \
	  echo '{"ContentsManager": {"post_save_hook": "pf.notebook_saves.refresh_git_index"}}' > $(JUPYTER_HOOK); \
	fi

lock:  ## rewrite requirements.lock from a fresh install of pyproject.toml's ranges
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	{ echo "# The exact environment make installs (pip install -r $(LOCK); pf itself with --no-deps)."; \
	  echo "# Written by 'make lock' from pyproject.toml's ranges on Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'), $$(date +%Y-%m-%d); library users keep pyproject's ranges."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > $(LOCK)
	rm -rf .lock-venv

setup: $(READY)

# What a GPU machine without internet lacks (benchmarks/gpu_check.py, docs/gpu.md, "On a GPU").
BUNDLE := .whl/.bundled
$(BUNDLE): $(LOCK) | $(READY)
	$(BIN)/python benchmarks/gpu_check.py --bundle
	touch $(BUNDLE)

demo: setup  ## the main job: the demo sweep on real handwritten digits (CPU), then its figures
	$(BIN)/pf sweep notebooks/sweeps/demo.yaml --results runs --jobs 2
	$(BIN)/pf figures runs/demo

companion: setup  ## the companion methods' demo sweeps (norm-based selection, score extrapolation) and figures
	$(BIN)/pf sweep notebooks/sweeps/norms.yaml --results runs --jobs 2
	$(BIN)/pf figures runs/norms
	$(BIN)/pf sweep notebooks/sweeps/score_extrapolation.yaml --results runs --jobs 2
	$(BIN)/pf figures runs/score_extrapolation

test: setup $(BUNDLE)  ## the whole test suite (CPU, a few minutes; it dry-runs the GPU check)
	$(BIN)/python -m pytest -q -n auto

test-fast: setup  ## the quick part: every test not marked slow (no notebooks, no full runs)
	$(BIN)/python -m pytest -q -n auto -m "not slow"

bench: setup  ## pf trainer and pool scoring vs a torchvision DataLoader reference
	$(BIN)/python benchmarks/bench_train.py

gpu-bundle: setup  ## before a GPU lease: the wheels it lacks into .whl/, CIFAR-10 into .data/
	rm -f $(BUNDLE)
	$(MAKE) --no-print-directory $(BUNDLE)

gpu-check:  ## on a GPU machine, offline: install .whl/ into .gpu-site/, then the check (< 8 min)
	$(PYTHON) benchmarks/gpu_check.py --keep-going $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) runs .gpu-site
