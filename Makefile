# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
STATIONS ?= 5

.PHONY: install system-deps demo demo-scripted test test-fast test-integration test-e2e \
	test-browser lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml agent/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e './agent' -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python manage.py demo --stations $(STATIONS)

demo-scripted: install
	$(BIN)/python manage.py demo --scripted --stations $(STATIONS)

# Test-only system tools (Mosquitto for the agent's TLS broker tests, its clients for the
# third-party client tests, Chromium for the browser test, SoftHSM2 for the PKCS#11 key
# backend's tests). Installed when missing and
# possible (root with apt-get); otherwise the tests that need them skip with a reason.
SYSTEM_TOOLS := /usr/sbin/mosquitto:mosquitto /usr/bin/mosquitto_pub:mosquitto-clients /usr/bin/chromium:chromium /usr/bin/softhsm2-util:softhsm2
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  [ -x "$${pair%%:*}" ] || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing test tools:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	    >/dev/null 2>&1 || echo "Could not install$$missing; the tests that need them will skip."; \
	fi

test: install system-deps
	$(BIN)/python -m pytest -n $${PYTEST_WORKERS:-auto} --dist worksteal $(PYTEST_ARGS)

# The tiers (markers given in tests/conftest.py). test-fast: unit tests only, no process or
# server started, under a minute; `make test` above runs every tier.
test-fast: install
	$(BIN)/python -m pytest -n $${PYTEST_WORKERS:-auto} --dist worksteal \
	  -m "not integration and not e2e and not browser and not slow" $(PYTEST_ARGS)

test-integration: install system-deps
	$(BIN)/python -m pytest -n $${PYTEST_WORKERS:-auto} --dist worksteal -m integration $(PYTEST_ARGS)

test-e2e: install system-deps
	$(BIN)/python -m pytest -n $${PYTEST_WORKERS:-auto} --dist worksteal -m e2e $(PYTEST_ARGS)

test-browser: install system-deps
	$(BIN)/python -m pytest -n $${PYTEST_WORKERS:-auto} --dist worksteal -m browser $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy portal provisioning signing devices localaws agent/fleet_agent

clean:
	rm -rf var/test .pytest_cache
