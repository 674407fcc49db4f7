# Two commands for a new user: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PEERS_VENV  ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_REQS  := benchmarks/peers/requirements.txt benchmarks/peers/requirements-nodeps.txt
LS_VENV     ?= .venv-labelstudio
LS_STAMP    := $(LS_VENV)/.installed
LS_REQS     := benchmarks/label_studio/requirements.txt
LABEL_VENV  ?= .venv-label-errors
LABEL_STAMP := $(LABEL_VENV)/.installed
LABEL_REQS  := benchmarks/requirements-label-errors.txt
PYTEST_ARGS ?=

.PHONY: demo test test-all lint docs screenshots bench bench-dynamics bench-peers bench-label-errors env clean \
	label-studio-env test-label-studio screenshot-label-studio

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the install inputs change. The docs extra builds the documentation site (`make docs`).
# The ray, lightning, transformers, export and labelstudio extras are installed so that `make test` (what CI
# runs) tests the Ray backend against a local Ray instance, the framework callbacks and exports against
# the real packages, and `forgetting serve` over HTTP; constraints.txt keeps the pinned torch (none of them pulls another). animal-mnist declares heavy,
# unused requirements (its data files are all we need), so it goes in without them; so does
# label-studio-sdk, whose brush RLE converter (numpy and Pillow only) the tests check ours against: its
# requirements (opencv, nltk, black, a numpy below 2.3, ...) are not ours. The pin is the one label-studio
# 1.23.2 requires (benchmarks/label_studio/requirements.txt).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,docs,ray,lightning,transformers,export,labelstudio]"
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt animal-mnist label-studio-sdk==2.1.2
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
	$(BIN)/mypy

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

# Issue 24: a real Label Studio (its own venv: its pins are not ours; see benchmarks/label_studio/) for the
# real-server test and the screenshot. The test starts Label Studio and `forgetting serve` on local ports.
$(LS_VENV)/bin/python:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip

# `label-studio version` applies Label Studio's migrations and exits: the test servers start from a copy of
# this migrated, empty database (about 20 s instead of minutes of migrations).
$(LS_STAMP): $(LS_REQS) constraints.txt | $(LS_VENV)/bin/python
	$(LS_VENV)/bin/python -m pip install --quiet -c constraints.txt -r $(LS_REQS)
	rm -rf $(LS_VENV)/template
	LABEL_STUDIO_BASE_DATA_DIR=$(abspath $(LS_VENV))/template DJANGO_DB=sqlite LATEST_VERSION_CHECK=false \
		$(LS_VENV)/bin/label-studio version > /dev/null
	touch $(LS_STAMP)

label-studio-env: $(LS_STAMP)

test-label-studio: $(STAMP) $(LS_STAMP)
	$(BIN)/python -m pytest -m slow tests/test_label_studio_server.py --durations=0 $(PYTEST_ARGS)

# docs/img/label-studio.png (needs chromium and chromium-driver: apt-get install chromium chromium-driver).
screenshot-label-studio: $(STAMP) $(LS_STAMP)
	$(BIN)/python docs/label_studio_screenshot.py

# Issue 21: finding flipped labels with training dynamics vs cleanlab, and the pruning table (about 18 min
# on 2 cores beside two other processes; resumable). cleanlab lives in its own venv, with the
# project and the pinned torch; the pruning part alone runs anywhere (`--part pruning`).
$(LABEL_VENV)/bin/python:
	$(PYTHON) -m venv $(LABEL_VENV)
	$(LABEL_VENV)/bin/python -m pip install --quiet --upgrade pip

$(LABEL_STAMP): $(LABEL_REQS) pyproject.toml constraints.txt | $(LABEL_VENV)/bin/python
	$(LABEL_VENV)/bin/python -m pip install --quiet -c constraints.txt -e . -r $(LABEL_REQS)
	touch $(LABEL_STAMP)

bench-label-errors: $(LABEL_STAMP)
	$(LABEL_VENV)/bin/python benchmarks/label_errors.py --run --jobs 2

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(LS_VENV) $(LABEL_VENV) build dist site docs-screenshots src/*.egg-info .pytest_cache \
		.ruff_cache
