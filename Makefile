# wagerwire: `make serve` runs the hub on the embedded default; `make test` installs what the
# tests need (Python packages, and Debian's redis-server, postgresql and chromium when absent)
# and runs lint, types and the whole suite.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := redis-server postgresql chromium

.PHONY: serve test install install-test system-deps node-deps lint types check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[test]'
	# the websockets release the seeds' own Python examples were written for (legacy API)
	$(PIP) install -q --target $(VENV)/seed-websockets-13 'websockets==13.1'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps node-deps

# npm packages the tests drive (seed example clients under Node, Playwright for the
# dashboard), each from its own lockfile.
node-deps:
	@for dir in tests/node tests/browser; do \
	  if [ -f $$dir/package-lock.json ] && [ ! -d $$dir/node_modules ]; then \
	    echo "npm ci in $$dir"; (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	done

serve: install
	$(VENV)/bin/wagerwire serve

# Debian packages the integration tests start themselves (on loopback, in temporary dirs).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests

types: $(VENV)/.installed-test
	$(VENV)/bin/mypy

test: install-test lint types
	$(VENV)/bin/pytest -q

bench: install
	bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
