"""Both notebooks run clean (nbclient) on the small planted data set against the test servers."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["research.ipynb", "train_and_register.ipynb"])
def test_notebook_runs_clean(name, ml_env, planted_instrument, trained, monkeypatch, artifacts_dir):
    monkeypatch.setenv("NB_INSTRUMENT", planted_instrument)
    monkeypatch.setenv("NB_GRANULARITY", "H1")
    monkeypatch.setenv("NB_START", "2024-01-01")
    monkeypatch.setenv("NB_END", "2024-12-31")
    monkeypatch.setenv("NB_FOLDS", "3")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # The kernel inherits this environment: MBATS_* point at the test servers.
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute(env=dict(os.environ))
    nbformat.write(notebook, artifacts_dir / f"executed-{name}")
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    outputs = [c.outputs for c in notebook.cells if c.cell_type == "code"]
    assert all(outputs[1:]), "every cell after the parameters shows a result"
    if name == "train_and_register.ipynb":
        text = "".join(o.get("text", "") for cell in outputs for o in cell)
        assert "@challenger" in text
