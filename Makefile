# cesped: the two commands of the quickstart are `make demo` and `make test`.
# Both create .venv when it is missing and install cesped into it (editable, with test extras).
#
# TORCH_SPEC pins the torch/torchvision pair documented for the development machines
# (Python 3.11, x86-64: both lie on the machine's disk). Override it elsewhere, e.g.
#   make test TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.cesped-installed
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-all lint bench install clean-venv help leaderboard

help:
	@echo "make demo       run the whole benchmark end to end on the built-in synthetic entry"
	@echo "make test       run the test suite (offline, CPU; slow tests excluded)"
	@echo "make test-slow  run only the slow tests;  make test-all  everything but GPU/network"
	@echo "make bench      run every benchmark (benchmarks/run_all.py, ~35 min on 2 cores) and"
	@echo "                regenerate the README's performance table (benchmarks/readme_table.py)"
	@echo "make lint       ruff"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m cesped.demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# exit status 5 (no test collected) is not a failure here: a tree may have no slow test
test-slow: $(STAMP)
	$(PY) -m pytest -m "slow and not gpu and not network" $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "no slow tests"; else exit $$rc; fi

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu and not network" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check cesped tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run_all.py
	$(PY) benchmarks/readme_table.py

clean-venv:
	rm -rf $(VENV)

# The benchmark protocol for our own row: experiment=demo, 3 seeds, both built-in entries (hours on
# 2 CPU cores; resumable: run it again to continue). Runs and records in LEADERBOARD_DIR, the table in
# LEADERBOARD_OUT/leaderboard.md (+ .html). LEADERBOARD_ARGS: extra run arguments (training overrides).
LEADERBOARD_ENTRIES ?= [synth_6msm,synth_4e43]
LEADERBOARD_SEEDS ?= [0,1,2]
LEADERBOARD_DIR ?= outputs/leaderboard
LEADERBOARD_OUT ?= benchmarks/results
LEADERBOARD_ARGS ?=
LEADERBOARD_TABLE_ARGS ?=

leaderboard: $(STAMP)
	$(PY) -m cesped.benchmark run experiment=demo entries=$(LEADERBOARD_ENTRIES) seeds=$(LEADERBOARD_SEEDS) \
		outdir=$(LEADERBOARD_DIR) $(LEADERBOARD_ARGS)
	$(PY) -m cesped.benchmark table $(LEADERBOARD_DIR)/records --out $(LEADERBOARD_OUT) $(LEADERBOARD_TABLE_ARGS)
