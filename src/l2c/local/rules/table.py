"""The rule table of docs/aws-rules.md, generated from the registry so the two cannot drift.

``python -m l2c.local.rules`` prints it; ``python -m l2c.local.rules --write docs/aws-rules.md``
(``make rules-doc``) puts it between the document's markers. tests/unit/test_rules_docs.py
fails when the committed table is not the generated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from l2c.errors import L2CError
from l2c.local.rules import Registry

BEGIN = "<!-- rules:begin -->"
END = "<!-- rules:end -->"
HEADER = ("rule", "operations", "what AWS does, and so the local cloud", "source", "proved by")


@dataclass
class Row:
    """One behaviour: a rule id may be registered both before and after moto (one row)."""

    id: str
    operations: list[str]
    summary: str
    source: str
    test: str


def rows(registry: Registry) -> list[Row]:
    by_id: dict[str, Row] = {}
    for rule in registry.rules:
        operations = [f"{rule.service}:{name} ({rule.when})" for name in rule.operations]
        row = by_id.get(rule.id)
        if row is None:
            by_id[rule.id] = Row(rule.id, operations, rule.summary, rule.source, rule.test)
            continue
        row.operations += [op for op in operations if op not in row.operations]
        row.test = row.test or rule.test
    return sorted(by_id.values(), key=lambda row: row.id)


def markdown_table(registry: Registry) -> str:
    lines = [_line(HEADER), _line(["---"] * len(HEADER))]
    for row in rows(registry):
        lines.append(_line([f"`{row.id}`", "<br>".join(row.operations), row.summary, row.source, _test_cell(row.test)]))
    return "\n".join(lines) + "\n"


def _test_cell(test: str) -> str:
    if not test:
        return "—"
    path, _, name = test.partition("::")
    return f"[`{name or Path(path).name}`](../{path})"


def _line(cells) -> str:
    return "| " + " | ".join(_cell(text) for text in cells) + " |"


def _cell(text: str) -> str:
    # A pipe would end the cell, a newline the row.
    return " ".join(str(text).split()).replace("|", "\\|")


def table_in(document: str) -> str | None:
    """The table between the markers of a document, or None when a marker is missing."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        return None
    return document[start + len(BEGIN) : end].strip("\n") + "\n"


class MarkersMissing(L2CError, ValueError):
    """The document has nowhere to put the table."""


def with_table(document: str, table: str) -> str:
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"the document has no {BEGIN} ... {END} markers to put the table between")
    return document[: start + len(BEGIN)] + "\n" + table + document[end:]
