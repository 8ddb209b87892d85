# make train | lint | test | test-slow | test-backends | bench | bench-quick (.venv: pinned CPU torch, then the project)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install train lint test test-slow test-backends bench bench-quick bench-startup data-readme clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)   # first: an unpinned torch pulls gigabytes of CUDA wheels
	$(PY) -m pip install -q -e ".[test,bench,sweeps,mteb,onnx,loggers]"
	touch $@

install: $(VENV)/.installed

# OpenVINO exports run in their own venv: optimum-intel pins an older transformers than the project venv's;
# $(TORCH) again, or optimum-intel's torchvision pulls a newer CUDA torch; its torchvision (unused by text models)
# is then removed: PyPI's wheel needs CUDA torch, and torchmetrics imports it when present
OV_VENV ?= .venv-openvino
$(OV_VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(OV_VENV)
	$(OV_VENV)/bin/python -m pip install -q --upgrade pip
	$(OV_VENV)/bin/python -m pip install -q $(TORCH)
	$(OV_VENV)/bin/python -m pip install -q $(TORCH) -e ".[openvino,test]"
	$(OV_VENV)/bin/python -m pip uninstall -y -q torchvision   # optimum-intel's: a CUDA build, breaks torchmetrics
	touch $@

train: install
	$(PY) train.py

lint: install        # ruff, configured in pyproject.toml ([tool.ruff]); CI runs it before the tests
	$(PY) -m ruff check .

test: install        # everything but the end-to-end runs marked slow: under 10 minutes on 2 cores
	$(PY) -m pytest -n 2 -m "not slow" --durations=15

test-slow: install   # the end-to-end runs marked slow (kills, sweeps, real fine-tunes, exports); CI runs both
	$(PY) -m pytest -n 2 -m slow --durations=15

test-backends: $(OV_VENV)/.installed   # export --backend openvino [--quantize int8], loaded back (docs/export.md)
	$(OV_VENV)/bin/python -m pytest -n 2 tests/test_backends.py --durations=5

bench: install
	$(PY) benchmarks/run.py

bench-quick: install
	$(PY) benchmarks/run.py --quick

bench-startup: install   # how fast `poolhead --help` and each subcommand's --help answer (target: < 1 s)
	$(PY) benchmarks/startup.py

data-readme: install   # the bad-input count in src/poolhead/data/README.md, from the tests themselves
	n=$$($(PY) -m pytest -m bad_input --collect-only -q -p no:xdist tests | grep -c '::'); \
	sed -i -E "s/[0-9]+ bad-input test cases/$$n bad-input test cases/" src/poolhead/data/README.md; echo "$$n bad-input test cases"

clean:
	rm -rf $(VENV) $(OV_VENV) logs outputs multirun
