# make train | test | bench | bench-quick    (creates .venv with pinned CPU torch first, then the project)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install train test bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)   # first: an unpinned torch pulls gigabytes of CUDA wheels
	$(PY) -m pip install -q -e ".[test,bench,sweeps]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) train.py

test: install
	$(PY) -m pytest -n 2 --durations=15

bench: install
	$(PY) benchmarks/run.py

bench-quick: install
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) logs outputs multirun
