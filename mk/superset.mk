# Superset's own environment (Superset 6.1 needs SQLAlchemy < 2, the main venv has 2.x).
# Built from requirements/superset.lock and rebuilt only when the lock changes.
SUPERSET_VENV := $(CACHE)/venv-superset
SUPERSET_LOCK := requirements/superset.lock
SUPERSET_STAMP := $(SUPERSET_VENV)/.lock-$(shell cat $(SUPERSET_LOCK) 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: venv-superset superset-lock superset-bundle

$(SUPERSET_STAMP): $(UV)
	rm -rf $(SUPERSET_VENV)
	$(UV) venv -q -p $(PYTHON) $(SUPERSET_VENV)
	$(UV) pip sync -q -p $(SUPERSET_VENV) $(SUPERSET_LOCK)
	touch $@

venv-superset: $(SUPERSET_STAMP) ## create Superset's own venv from requirements/superset.lock

superset-lock: $(UV) ## re-resolve requirements/superset.lock from requirements/superset.in
	$(UV) pip compile -q --python-version 3.11 requirements/superset.in -o $(SUPERSET_LOCK)

superset-bundle: venv ## regenerate the dashboards bundle in services/superset/bundle from the views
	$(VENV)/bin/python -m mbats.cli.dashboards bundle

EXTRA_VENVS += venv-superset
