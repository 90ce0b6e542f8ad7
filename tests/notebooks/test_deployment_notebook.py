"""The deployment notebook for the other model: the committed cells, run with MODEL = "house-price".

nbval runs notebooks/model-deployment-aws.ipynb as committed (MODEL = "iris"); this test swaps its
`parameters` cell, as papermill would, and runs it in the session's local cloud.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "model-deployment-aws.ipynb"

pytestmark = pytest.mark.integration


def with_parameters(notebook, **values):
    """The notebook with its cell tagged `parameters` replaced by these assignments."""
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged parameters"
    tagged[0].source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    return notebook


def outputs_text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")


def cell_printing(notebook, start: str):
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and outputs_text(cell).startswith(start)]
    assert cells, f"no cell printed a line starting with {start!r}"
    return cells[0]


def laptop_prediction(name: str) -> float:
    """What the trained booster answers for the tutorial's request body."""
    from l2c import artifact
    from l2c.local.tutorial import TUTORIAL_BODIES

    row = [float(value) for value in TUTORIAL_BODIES[name]["data"].split(",")]
    model = artifact.load_artifact(REPO / "models" / name / artifact.TARBALL_NAME)
    return float(artifact.predict_like_container(model, np.array([row]))[0])


def test_house_price_runs_the_same_cells(local_cloud):
    notebook = with_parameters(nbformat.read(NOTEBOOK, as_version=4), MODEL="house-price")
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute(env={**os.environ, **local_cloud.env})

    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert errors == []
    status, answer = outputs_text(cell_printing(notebook, "200 ")).split(" ", 1)
    answer = ast.literal_eval(answer.strip())
    expected = laptop_prediction("house-price")
    assert status == "200"
    assert 5 < answer["prediction"] < 50
    assert abs(answer["prediction"] - expected) <= 1e-4
    assert outputs_text(cell_printing(notebook, "the API answers")).strip() == (
        f"the API answers {round(answer['prediction'], 2)} as the laptop's model does"
    )
    assert "10,000 rows in, 10,000 answer lines out" in outputs_text(cell_printing(notebook, "10,000 rows"))
