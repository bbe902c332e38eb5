# Two commands set everything up on a fresh machine (see README):
#   make demo   - create .venv, install, run the main scenario
#   make test   - create .venv, install with dev extras, run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test bench mutants clean

$(BIN)/asyncsim: pyproject.toml
	$(PY) -m venv $(VENV)
	# the CPU wheel first: a looser pin would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/asyncsim

# the test suite also checks the optional Ray executor
$(VENV)/.ray-installed: $(BIN)/asyncsim
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $@

demo: venv
	$(BIN)/asyncsim run scenarios/very_heterogeneous.yaml

test: venv $(VENV)/.ray-installed
	# two test processes: the suite is mostly single-threaded runs (CI has 2 cores)
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -n 2

bench: venv
	$(BIN)/python benchmarks/run_all.py

# Mutation testing of the method rules (sim/schedules, sim/outer, sim/sampling.py; [tool.mutmut] in
# pyproject.toml): hours on 2 cores, not part of CI. Survivors: .venv/bin/mutmut results / show NAME.
mutants: venv
	$(BIN)/pip install -q 'mutmut>=3.3'
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) reports/runs .pytest_cache .hypothesis
