"""docs/architecture.md names modules, functions and notebook cells: each one must still exist,
so the map a newcomer reads never sends them to a module that was moved or renamed."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"


def _text() -> str:
    # Code fences hold a drawing, not names; without them every backtick pairs up.
    return re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_l2c_name_in_the_doc_exists():
    names = sorted(set(re.findall(r"`(l2c(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", _text())))
    assert len(names) > 40  # the doc names the modules it maps
    assert [name for name in names if not _resolves(name)] == []


def test_every_function_named_after_its_module_exists():
    pairs = re.findall(r"`(l2c(?:\.[a-z_]+)+)`: ((?:`[A-Za-z_]+`(?:, )?)+)", _text())
    assert len(pairs) > 15  # the tutorial table: "module: function"
    missing = [
        f"{module}.{name}"
        for module, names in pairs
        for name in re.findall(r"`([A-Za-z_]+)`", names)
        if not hasattr(importlib.import_module(module), name)
    ]
    assert missing == []


def test_every_notebook_cell_the_tutorial_table_names_is_a_heading_of_a_notebook():
    headings = set()
    for path in (REPO / "notebooks").glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                headings |= {line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")}
    text = DOC.read_text()
    table = text[text.index("## The tutorial, step by step") : text.index("## The processes")]
    # The table's third column: "notebook: cell (heading)".
    cells = [row.split(" | ")[2] for row in table.splitlines() if row.startswith("| ") and row.count(" | ") >= 3]
    quoted = [item for cell in cells for item in re.findall(r'"([^"]+)"', cell)]
    assert len(quoted) > 15
    assert [item for item in quoted if item not in headings] == []
    notebooks = {name for cell in cells for name in re.findall(r"`([a-z][a-z-]*-(?:creation|aws))`", cell)}
    assert notebooks and all((REPO / "notebooks" / f"{name}.ipynb").is_file() for name in notebooks)


def test_every_relative_link_in_the_doc_exists():
    links = [
        target.split("#")[0]
        for target in re.findall(r"\]\(([^)\s]+)\)", DOC.read_text())
        if not re.match(r"^[a-z]+://", target) and not target.startswith("#")
    ]
    assert links
    assert [link for link in links if not (DOC.parent / link).exists()] == []
