# pf: every command sets up what it needs first (a virtual environment in .venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.installed

.PHONY: setup demo companion test bench clean

# The environment is (re)built whenever pyproject.toml changes.
$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(READY)

setup: $(READY)

demo: setup  ## the main job: the demo sweep on real handwritten digits (CPU), then its figures
	$(BIN)/pf sweep notebooks/sweeps/demo.yaml --results runs
	$(BIN)/pf figures runs/demo

companion: setup  ## the companion methods' demo sweeps (norm-based selection, score extrapolation) and figures
	$(BIN)/pf sweep notebooks/sweeps/norms.yaml --results runs --jobs 2
	$(BIN)/pf figures runs/norms
	$(BIN)/pf sweep notebooks/sweeps/score_extrapolation.yaml --results runs --jobs 2
	$(BIN)/pf figures runs/score_extrapolation

test: setup  ## the whole test suite (CPU, a few minutes)
	$(BIN)/python -m pytest -q -n auto

bench: setup  ## pf trainer and pool scoring vs a torchvision DataLoader reference
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) runs
