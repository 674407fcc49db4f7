# Two commands for a new user: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PEERS_VENV  ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_REQS  := benchmarks/peers/requirements.txt benchmarks/peers/requirements-nodeps.txt
PYTEST_ARGS ?=

.PHONY: demo test test-all lint docs screenshots bench bench-dynamics bench-peers env clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the install inputs change. The docs extra builds the documentation site (`make docs`).
# The ray, lightning, transformers and export extras are
# installed so that `make test` (what CI runs) tests the Ray backend against a local Ray instance and the
# framework callbacks and exports against the real packages; constraints.txt keeps the pinned torch (none of
# them pulls another). animal-mnist declares heavy, unused requirements (its data files are all we need), so
# it goes in without them.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,docs,ray,lightning,transformers,export]"
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt animal-mnist
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/forgetting run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

# The documentation site, offline, into site/ (git-ignored): every tutorial in docs/tutorials/ runs, the API
# and CLI references are generated from the code, and --strict turns a broken link or reference into an error.
# A few minutes on 2 cores. Open site/index.html in a browser (no server needed).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# Screenshots of three pages of the built site (home, a tutorial, an API page) with headless Chromium
# (`apt-get install chromium`), into docs-screenshots/ (git-ignored).
screenshots: docs
	$(BIN)/python docs/screenshots.py site docs-screenshots

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# Issue 12: the cost of tracking the pool vs what the selection needs (~20 min on 2 cores; resumable).
# `make bench` only prints its help (it needs --run).
bench-dynamics: $(STAMP)
	$(BIN)/python benchmarks/dynamics_cost.py --run

# Issue 11: forgetting vs baal vs scikit-activeml on the same work (~20 min on 2 cores; resumable). The peers
# are not project dependencies: they live in their own venv, with the project and the pinned torch.
$(PEERS_VENV)/bin/python:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip

$(PEERS_STAMP): $(PEERS_REQS) pyproject.toml constraints.txt | $(PEERS_VENV)/bin/python
	$(PEERS_VENV)/bin/python -m pip install --quiet -c constraints.txt -e . -r benchmarks/peers/requirements.txt
	$(PEERS_VENV)/bin/python -m pip install --quiet --no-deps -c constraints.txt \
		-r benchmarks/peers/requirements-nodeps.txt
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/python benchmarks/peers/run.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) build dist site docs-screenshots src/*.egg-info .pytest_cache .ruff_cache
