# Two commands for a newcomer:  make demo  (meta-train and evaluate MAML on Omniglot)
#                               make test  (the whole test suite: unit tests, the notebooks, the wheel)
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.mllib-installed
RUN    ?= runs/demo
# TORCH_INDEX: a pip index to take torch and torchvision from before everything else, e.g. the
# CPU-only wheels (about 1 GB installed instead of about 5.5 GB with the CUDA libraries):
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Empty (the default): torch comes from the default index like every other dependency.
TORCH_INDEX ?=

# Which Python runs the course. A Python given as PYTHON=... (or $$PYTHON) is used as it is when the
# course is already installed in it with the extras the goals need; with none given, an existing
# $(VENV) is used, else python3 when the course is installed in it (an activated virtualenv or conda
# environment). Otherwise $(VENV) is created and installed. USE_VENV=1 always takes $(VENV).
# scripts/course_python.py decides (standard library only) and prints why when it says no.
EXTRAS_install        := course notebooks test
EXTRAS_test           := course notebooks test
EXTRAS_unit           := course test
EXTRAS_notebooks-test := course notebooks test
EXTRAS_student-test   := course test
EXTRAS_package-test   := course test
EXTRAS_notebooks      := course notebooks
EXTRAS_student        := course
EXTRAS_practice       := course
EXTRAS_learn          := course notebooks
EXTRAS_author         := course notebooks test
GOALS        := $(filter-out help clean,$(or $(MAKECMDGOALS),help))
EXTRAS       := $(sort $(foreach goal,$(GOALS),$(EXTRAS_$(goal))))
PYTHON_GIVEN := $(filter command line environment,$(origin PYTHON))
ASK_PYTHON   := $(and $(GOALS),$(if $(USE_VENV),,$(or $(PYTHON_GIVEN),$(if $(wildcard $(VENV)/bin/python),,yes))))
PROBE        := $(if $(ASK_PYTHON),$(shell $(PYTHON) scripts/course_python.py $(EXTRAS) 2>/dev/null))
COURSE_PY    := $(if $(filter USE,$(firstword $(PROBE))),$(word 2,$(PROBE)))
$(if $(filter NOTE,$(firstword $(PROBE))),$(info make: $(wordlist 2,999,$(PROBE))))
ifneq ($(COURSE_PY),)
PY    := $(COURSE_PY)
READY := given-python
else
PY    := $(VENV)/bin/python
READY := $(STAMP)
endif

.PHONY: given-python install learn demo test test-lane-notebooks test-lane-units unit package-test notebooks-test student-test notebooks author student practice bench bench-quick results gpu-check gpu-bundle clean help

help:
	@echo "make learn      install (below), write the exercise notebooks to build/student/ and open them in JupyterLab"
	@echo "make demo       install (below), meta-train MAML 5-way 1-shot (quick recipe, one worker per core) and evaluate it"
	@echo "make test       install (below) and run every test (unit tests, the notebooks, the wheel)"
	@echo "make author     the one command after changing a notebook: re-execute, regenerate what is generated,"
	@echo "                run every course check, one summary (NOTEBOOKS=notebooks/05_*.ipynb: only those;"
	@echo "                TIMES=1: also write run times, on an idle machine only; docs/instructors.md)"
	@echo "make notebooks  re-execute every notebook in place (stored outputs), then regenerate practice/"
	@echo "make student    write the student version of the notebooks to build/student/"
	@echo "make practice   regenerate the committed practice edition practice/ from notebooks/ (then commit it)"
	@echo "make bench      run the meta-step benchmark (add higher/learn2learn to .venv to compare)"
	@echo "make results    regenerate the results tables of docs/results.md from model cards and benchmark JSON"
	@echo "make gpu-check  the prepared GPU check (toggle, benchmark, time-to-accuracy runs) on a CUDA machine"
	@echo "make gpu-bundle Omniglot zips and benchmark references into .gpu/ for a GPU machine with no network"
	@echo "install: a Python given as PYTHON=... (or python3 when .venv is absent) is used as it is when the course"
	@echo "         is installed in it; otherwise .venv is created once and reused (USE_VENV=1 always takes .venv)"

given-python:
	@echo "make: the course is already installed in $(PY): using it, no $(VENV) created (USE_VENV=1 to use $(VENV))"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip uninstall --quiet --yes mllib 2>/dev/null || true  # an install made when the distribution was called mllib
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) "torch>=2.1" "torchvision>=0.16")
	$(PY) -m pip install --quiet -e ".[course,notebooks,test]"
	touch $(STAMP)

install: $(READY)

# The learner's way in on a laptop: the exercise notebooks (solutions removed), in JupyterLab.
learn: $(READY)
	$(PY) -m mllib course build --out build/student
	$(PY) -m jupyter lab build/student

demo: $(READY)
	$(PY) -m mllib data --download
	$(PY) -m mllib train --algo maml --ways 5 --shots 1 --profile quick --filters 64 --query 2 --steps 2000 \
	    --val-every 500 --workers auto --out $(RUN) --resume
	$(PY) -m mllib eval --checkpoint $(RUN)/best.pt --tasks 600 --split test --plot $(RUN)/learning_curve.png

unit: $(READY)
	$(PY) -m pytest tests
	$(PY) -m mllib course check

# The wheel, installed into a fresh venv, run from outside the checkout (scripts/check_wheel.sh).
package-test: $(READY)
	PY=$(PY) bash scripts/check_wheel.sh

notebooks-test: $(READY)
	MLLIB_CHECKS_STRICT=1 MLLIB_PROFILE=quick MLLIB_DEVICE=cpu $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider notebooks/

# The student release: every exercise's check must report its own exercise only, and the rest runs.
student-test: $(READY)
	MLLIB_PROFILE=quick MLLIB_DEVICE=cpu $(PY) -m mllib course verify-student --skip-solutions $(if $(STUDENT_ONLY),--only $(STUDENT_ONLY))

# Everything (CI runs exactly this), in two lanes on two cores (each notebook runs on one torch thread):
# the notebooks, then the student release of 01-04; beside them the unit tests, the wheel check and the
# student release of 05-09, one torch thread each (two-thread jobs side by side oversubscribe the cores).
# Each lane's output is printed when it ends; a failure in either fails the target.
test: $(READY)
	OMP_NUM_THREADS=1 MLLIB_LIVE_WORKERS=1 $(MAKE) --no-print-directory -j2 --output-sync=target \
		test-lane-notebooks test-lane-units

test-lane-notebooks: $(READY)
	$(MAKE) --no-print-directory notebooks-test
	$(MAKE) --no-print-directory student-test STUDENT_ONLY="01 02 03 04"

test-lane-units: $(READY)
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory package-test
	$(MAKE) --no-print-directory student-test STUDENT_ONLY="05 06 07 08 09"

notebooks: $(READY)
	CI=1 MLLIB_PROFILE=quick MLLIB_DEVICE=cpu $(PY) -m mllib course execute notebooks/  # CI=1: no progress bars in the stored outputs
	$(PY) -m mllib course practice  # the practice edition keeps the book's figures

# An author's round (docs/instructors.md): python -m mllib course author --dry-run lists its steps.
# NOTEBOOKS=...: re-execute only those; TIMES=1: also write the run times (only on an idle machine).
author: $(READY)
	$(PY) -m mllib course author $(NOTEBOOKS) $(if $(TIMES),--times)

student: $(READY)
	$(PY) -m mllib course build --out build/student

# The practice edition beside the book (committed; tests/test_practice_edition.py fails when it is stale).
practice: $(READY)
	$(PY) -m mllib course practice

bench: $(READY)
	$(PY) -m mllib bench

bench-quick: $(READY)
	$(PY) -m mllib bench --quick

results: $(READY)
	$(PY) -m mllib bench --readme

gpu-check: $(READY)
	PY=$(PY) bash benchmarks/gpu_check.sh

gpu-bundle: $(READY)
	PY=$(PY) bash benchmarks/gpu_bundle.sh

clean:
	rm -rf build runs .pytest_cache
