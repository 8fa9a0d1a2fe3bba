# Two commands for a newcomer:  make demo  (meta-train and evaluate MAML on Omniglot)
#                               make test  (the whole test suite: unit tests, the notebooks, the wheel)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mllib-installed
RUN    ?= runs/demo
# TORCH_INDEX: a pip index to take torch and torchvision from before everything else, e.g. the
# CPU-only wheels (about 1 GB installed instead of about 5.5 GB with the CUDA libraries):
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Empty (the default): torch comes from the default index like every other dependency.
TORCH_INDEX ?=

.PHONY: install demo test unit package-test notebooks-test student-test notebooks student bench bench-quick results gpu-check gpu-bundle clean help

help:
	@echo "make demo       create .venv, install, meta-train MAML 5-way 1-shot (quick profile) and evaluate it"
	@echo "make test       create or reuse .venv and run every test (unit tests, the notebooks, the wheel)"
	@echo "make notebooks  re-execute every notebook in place (stored outputs)"
	@echo "make student    write the student version of the notebooks to build/student/"
	@echo "make bench      run the meta-step benchmark (add higher/learn2learn to .venv to compare)"
	@echo "make results    regenerate the README results table from model cards and benchmark JSON"
	@echo "make gpu-check  the prepared GPU check (toggle, benchmark, time-to-accuracy runs) on a CUDA machine"
	@echo "make gpu-bundle Omniglot zips and benchmark references into .gpu/ for a GPU machine with no network"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip uninstall --quiet --yes mllib 2>/dev/null || true  # an install made when the distribution was called mllib
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) "torch>=2.1" "torchvision>=0.16")
	$(PY) -m pip install --quiet -e ".[course,notebooks,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m mllib data --download
	$(PY) -m mllib train --algo maml --ways 5 --shots 1 --profile quick --out $(RUN) --resume
	$(PY) -m mllib eval --checkpoint $(RUN)/best.pt --tasks 600 --split test --plot $(RUN)/learning_curve.png

unit: $(STAMP)
	$(PY) -m pytest tests
	$(PY) -m mllib course check

# The wheel, installed into a fresh venv, run from outside the checkout (scripts/check_wheel.sh).
package-test: $(STAMP)
	PY=$(PY) bash scripts/check_wheel.sh

notebooks-test: $(STAMP)
	MLLIB_CHECKS_STRICT=1 MLLIB_PROFILE=quick MLLIB_DEVICE=cpu $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider notebooks/

# The student release: every exercise's check must report its own exercise only, and the rest runs.
student-test: $(STAMP)
	MLLIB_PROFILE=quick MLLIB_DEVICE=cpu $(PY) -m mllib course verify-student --skip-solutions

test: unit notebooks-test student-test package-test

notebooks: $(STAMP)
	CI=1 MLLIB_PROFILE=quick MLLIB_DEVICE=cpu $(PY) -m mllib course execute notebooks/  # CI=1: no progress bars in the stored outputs

student: $(STAMP)
	$(PY) -m mllib course build --out build/student

bench: $(STAMP)
	$(PY) -m mllib bench

bench-quick: $(STAMP)
	$(PY) -m mllib bench --quick

results: $(STAMP)
	$(PY) -m mllib bench --readme

gpu-check: $(STAMP)
	bash benchmarks/gpu_check.sh

gpu-bundle: $(STAMP)
	PY=$(PY) bash benchmarks/gpu_bundle.sh

clean:
	rm -rf build runs .pytest_cache
