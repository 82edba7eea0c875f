# The Airflow environment: its own venv (Airflow 3.3 and Superset cannot share one), built from
# requirements/airflow.lock, with mbats installed editable so DAG tasks import it.
AIRFLOW_VENV := $(CACHE)/venv-airflow
AIRFLOW_LOCK := requirements/airflow.lock
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.lock-$(shell (cat $(AIRFLOW_LOCK) pyproject.toml 2>/dev/null) | sha256sum | cut -c1-16)

.PHONY: venv-airflow lock-airflow airflow-up test-airflow

# Rebuilt only when the lock file or pyproject.toml changes.
$(AIRFLOW_STAMP): $(UV)
	rm -rf $(AIRFLOW_VENV)
	$(UV) venv -q -p $(PYTHON) $(AIRFLOW_VENV)
	$(UV) pip sync -q -p $(AIRFLOW_VENV) $(AIRFLOW_LOCK)
	$(UV) pip install -q -p $(AIRFLOW_VENV) --no-deps -e .
	touch $@

venv-airflow: $(AIRFLOW_STAMP) ## create the Airflow venv from requirements/airflow.lock

lock-airflow: $(UV) ## re-resolve requirements/airflow.lock (Airflow + mbats deps, python 3.11)
	$(UV) pip compile -q --python-version 3.11 requirements/airflow.in pyproject.toml -o $(AIRFLOW_LOCK)

airflow-up: venv-airflow ## run Airflow locally without Docker (services/airflow/start.sh all)
	PATH=$(abspath $(AIRFLOW_VENV))/bin:$$PATH services/airflow/start.sh all

test-airflow: venv venv-airflow ## run the Airflow tests (DagBag, dag.test, a real Airflow + Celery, UI)
	tests/airflow/run.sh

EXTRA_VENVS += venv-airflow
EXTRA_TEST_TARGETS += test-airflow
MAIN_TEST_IGNORE += --ignore=tests/airflow
