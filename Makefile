# MBATS — the two commands a new user needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
CACHE := .cache
UV := $(CACHE)/bootstrap/bin/uv
VENV := $(CACHE)/venv
LOCK := requirements/lock.txt
STAMP := $(VENV)/.lock-$(shell (cat $(LOCK) pyproject.toml 2>/dev/null) | sha256sum | cut -c1-16)
export UV_CACHE_DIR ?= $(HOME)/.cache/uv

.PHONY: help venv lock demo test test-fast bench clean db-stop lint

# Extra environments (Airflow, Superset, …) each add a fragment in mk/: their venv target is
# appended to EXTRA_VENVS and the make target that runs their tests to EXTRA_TEST_TARGETS.
# Their test folders are added to MAIN_TEST_IGNORE so the main venv does not collect them.
EXTRA_VENVS :=
EXTRA_TEST_TARGETS :=
MAIN_TEST_IGNORE :=
-include mk/*.mk

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(CACHE)/bootstrap
	$(CACHE)/bootstrap/bin/pip install -q uv==0.13.9

# The venv is rebuilt only when the lock file or pyproject.toml changes.
$(STAMP): $(UV)
	rm -rf $(VENV)
	$(UV) venv -q -p $(PYTHON) $(VENV)
	$(UV) pip sync -q -p $(VENV) $(LOCK)
	$(UV) pip install -q -p $(VENV) --no-deps -e .
	touch $@

venv: $(STAMP) ## create the project venv from the lock file

lock: $(UV) ## re-resolve requirements/lock.txt from pyproject.toml
	$(UV) pip compile -q --python-version 3.11 --extra test pyproject.toml -o $(LOCK)

demo: venv ## run the main job on embedded defaults (no configuration needed)
	$(VENV)/bin/mbats demo

# Every suite runs even when an earlier one fails; the exit status says whether all passed. The
# suite gets a temp root of its own: another pytest run would prune the shared /tmp/pytest-of-$USER
# (with this run's embedded PostgreSQL inside), and the server's user must be able to enter it.
test: venv $(EXTRA_VENVS) ## install what the tests need and run them all
	@status=0; root=$$(mktemp -d /tmp/mbats-tests.XXXXXX); chmod 755 $$root; \
	PYTEST_DEBUG_TEMPROOT=$$root $(VENV)/bin/python -m pytest tests -v --durations=15 $(MAIN_TEST_IGNORE) || status=1; \
	rm -rf $$root; \
	for target in $(EXTRA_TEST_TARGETS); do $(MAKE) --no-print-directory $$target || status=1; done; \
	exit $$status

test-fast: venv ## the tests that need no extra servers
	$(VENV)/bin/python -m pytest tests -m "not slow" $(MAIN_TEST_IGNORE)

bench: venv ## run every benchmark in bench/ (prints figures; see bench/RESULTS.md)
	for script in bench/bench_*.py; do echo "== $$script"; $(VENV)/bin/python $$script || exit 1; done

db-stop: venv ## stop the embedded PostgreSQL
	$(VENV)/bin/mbats db stop

clean: ## remove local state (embedded database, reports) and caches
	-$(VENV)/bin/mbats db stop
	rm -rf .mbats $(CACHE)
