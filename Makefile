# wagerwire: `make serve` runs the hub on the embedded default; `make test` installs what the
# tests need (Python packages, and Debian's redis-server, postgresql, chromium and prometheus
# when absent)
# and runs lint, types and the whole suite.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := redis-server postgresql chromium prometheus

.PHONY: serve test fuzz lock soak install install-test system-deps node-deps lint types check bench clean

# Every install comes from a hash-pinned lock (requirements/*.txt, made by `make lock`), so a
# fresh clone installs exactly what was tested, whatever PyPI released since. The venv's own pip
# (the one Python ships) installs them; wagerwire itself goes in editable, with no resolution.
$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements/serve.txt pyproject.toml | $(PY)
	$(PIP) install -q --require-hashes --no-deps -r requirements/serve.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: requirements/test.txt requirements/seed-websockets.txt pyproject.toml | $(PY)
	$(PIP) install -q --require-hashes --no-deps -r requirements/test.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PIP) install -q --require-hashes --no-deps --target $(VENV)/seed-websockets-13 \
	  -r requirements/seed-websockets.txt
	touch $@ $(VENV)/.installed

# Refresh the locks deliberately (needs the network to PyPI): resolves pyproject.toml's ranges
# for every platform and Python >= 3.11, with hashes. Review the diff, then commit it.
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 -q
lock: $(VENV)/.installed-test
	$(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra server $(LOCK_FLAGS) \
	  --upgrade -o requirements/serve.txt
	$(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra test $(LOCK_FLAGS) \
	  --upgrade -o requirements/test.txt
	cp requirements/test.txt requirements/fuzz.txt  # fuzz.txt = test.txt's pins + atheris
	$(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra fuzz $(LOCK_FLAGS) \
	  -o requirements/fuzz.txt
	$(VENV)/bin/uv pip compile requirements/seed-websockets.in $(LOCK_FLAGS) \
	  -o requirements/seed-websockets.txt

# The fuzzers' lock is the test lock plus atheris (the `fuzz` extra).
$(VENV)/.installed-fuzz: requirements/fuzz.txt pyproject.toml | $(PY)
	$(PIP) install -q --require-hashes --no-deps -r requirements/fuzz.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps node-deps

# npm packages the tests drive (seed example clients under Node, Playwright for the
# dashboard), each from its own lockfile; again whenever the lockfile is newer than the
# node_modules npm ci made from it.
node-deps:
	@for dir in tests/node tests/browser; do \
	  if [ -f $$dir/package-lock.json ] && \
	     [ ! $$dir/node_modules/.package-lock.json -nt $$dir/package-lock.json ]; then \
	    echo "npm ci in $$dir"; (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	done

serve: install
	$(VENV)/bin/wagerwire serve

# Debian packages the integration tests start themselves (on loopback, in temporary dirs).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null 2>&1 || missing="$$missing redis-sentinel"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests fuzz

types: $(VENV)/.installed-test
	$(VENV)/bin/mypy

test: install-test lint types
	$(VENV)/bin/pytest -q

# Coverage-guided fuzzing (atheris) of every byte parser, FUZZ_SECONDS per target, seeds in
# fuzz/corpus/, working corpus and crashes in .fuzz/ (README: "Fuzzing").
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
fuzz: $(VENV)/.installed-fuzz
	$(PY) -m fuzz.run --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench: install
	bench/run.sh

# 30 minutes of churn, slow consumers, restarts and Redis blips (bench/soak.py); not in `make test`
soak: $(VENV)/.installed-test system-deps
	bench/soak.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
