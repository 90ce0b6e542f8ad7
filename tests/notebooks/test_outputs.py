"""The committed notebooks keep their outputs, and only outputs fit to publish.

`make notebooks` (render.py) writes them; these tests fail when a notebook was committed without
running it, with an error, with something of the machine it ran on, or with a plot too big.
The results themselves are checked by nbval: the cells marked ``# NBVAL_CHECK_OUTPUT`` must print
what is committed when pytest runs the notebook again.
"""

from __future__ import annotations

import ast
import json

import nbformat
import pytest
from render import FORBIDDEN, MAX_IMAGE_BYTES, NOTEBOOKS, NOTEBOOKS_DIR, output_text, png_sizes

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def code_cells(name: str) -> list:
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def shows_something(source: str) -> bool:
    """A cell that prints, or whose last line is an expression Jupyter displays (no trailing `;`)."""
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%")))
    prints = any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" for node in ast.walk(tree))
    displayed = bool(tree.body) and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";")
    return prints or displayed


def test_the_notebooks_folder_holds_exactly_the_rendered_notebooks():
    assert sorted(path.name for path in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_code_cell_ran_once_in_order(name):
    counts = [cell.execution_count for cell in code_cells(name)]
    assert counts == list(range(1, len(counts) + 1))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_cell_that_shows_something_kept_it_and_no_cell_failed(name):
    cells = code_cells(name)
    silent = [cell.source for cell in cells if shows_something(cell.source) and not cell.outputs]
    errors = [cell.source for cell in cells for output in cell.outputs if output.output_type == "error"]
    assert silent == []
    assert errors == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_output_holds_a_path_an_account_id_or_a_timestamp(name):
    found = []
    for cell in code_cells(name):
        text = "\n".join(output_text(output) for output in cell.outputs)
        found += [
            f"{what}: {match.group(0)!r} in {cell.source.splitlines()[0]!r}"
            for what, pattern in FORBIDDEN.items()
            for match in pattern.finditer(text)
        ]
    assert found == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_metadata_holds_no_kernel_path_and_no_timing(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    metadata = json.dumps(notebook.metadata)
    assert [what for what, pattern in FORBIDDEN.items() if pattern.search(metadata)] == []
    assert set(notebook.metadata) <= {"kernelspec", "language_info"}
    assert "version" not in notebook.metadata.get("language_info", {})  # the Python that ran it last
    assert [cell.id for cell in notebook.cells if "execution" in cell.metadata] == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_plots_are_kept_and_small(name):
    cells = code_cells(name)
    plot_cells = [cell for cell in cells if "plots." in cell.source]
    sizes = [size for cell in cells for output in cell.outputs for size in png_sizes(output)]
    assert all(any(png_sizes(output) for output in cell.outputs) for cell in plot_cells)
    assert all(size <= MAX_IMAGE_BYTES for size in sizes), sizes


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_nbval_compares_the_deterministic_cells(name):
    checked = [cell for cell in code_cells(name) if CHECK_MARK in cell.source.splitlines()]
    assert checked, "no cell is marked # NBVAL_CHECK_OUTPUT"
    assert [cell.source for cell in checked if not cell.outputs] == []


def test_the_deployment_notebook_is_committed_for_iris():
    cells = code_cells("model-deployment-aws.ipynb")
    parameters = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert [cell.source.split("#")[0].strip() for cell in parameters] == ['MODEL = "iris"']
    assert parameters[0] is cells[0]
