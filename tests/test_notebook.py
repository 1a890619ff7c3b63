"""The report notebook runs start to finish (reduced mode: small volumes, a few epochs)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="running the notebook needs the 'dev' extra (nbclient)")
nbclient = pytest.importorskip("nbclient", reason="running the notebook needs the 'dev' extra (nbclient)")
pytest.importorskip("torch", reason="the notebook trains a model (the 'train' extra)")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "report.ipynb"


def test_report_notebook_runs_in_reduced_mode(monkeypatch):
    monkeypatch.setenv("CLARITY_FAST_REPORT", "reduced")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
