"""docs/aws-rules.md shows exactly the rules the local cloud runs, each with its source and its test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from l2c.local.rules import load_all
from l2c.local.rules.table import BEGIN, END, markdown_table, rows, table_in, with_table

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "aws-rules.md"


@pytest.fixture(scope="module")
def registry():
    return load_all()


def test_the_committed_table_is_the_generated_one(registry):
    committed = table_in(DOC.read_text())
    assert committed is not None, f"{DOC.name} lost its {BEGIN} / {END} markers"
    assert committed == markdown_table(registry), "the rule table is stale: run `make rules-doc`"


def test_every_rule_names_its_source_and_what_it_does(registry):
    assert registry.rules, "no rule is registered"
    for rule in registry.rules:
        assert rule.source.strip(), f"{rule.id} names no source"
        assert rule.summary.strip(), f"{rule.id} says nothing of what it does"
        assert re.fullmatch(r"[a-z0-9]+\.[a-z0-9.-]+", rule.id), f"{rule.id!r}: ids are service.behaviour"


def test_every_test_a_rule_names_exists(registry):
    for row in rows(registry):
        if not row.test:
            continue
        path, _, name = row.test.partition("::")
        file = REPO / path
        assert path.startswith("tests/") and file.is_file(), f"{row.id}: {path} is not a file in tests/"
        if name:
            assert re.search(rf"^(async )?def {re.escape(name)}\(", file.read_text(), re.M), (
                f"{row.id}: no {name} in {path}"
            )


def test_one_row_per_rule_id_with_every_operation_it_covers():
    from l2c.local.rules import Registry

    registry = Registry()
    registry.before("s3", "CreateBucket", id="s3.x", source="a", summary="first")(lambda call: None)
    registry.after("s3", "PutObject", id="s3.x", source="a", summary="first", test="tests/t.py::test_y")(
        lambda c, r: None
    )
    table = markdown_table(registry)
    assert table.count("`s3.x`") == 1
    assert "s3:CreateBucket (before)<br>s3:PutObject (after)" in table
    assert "[`test_y`](../tests/t.py)" in table


def test_a_pipe_in_a_summary_does_not_split_the_cell():
    from l2c.local.rules import Registry

    registry = Registry()
    registry.before("s3", "CreateBucket", id="s3.x", source="a", summary="one | two\nthree")(lambda call: None)
    row = markdown_table(registry).splitlines()[2]
    assert "one \\| two three" in row and row.count(" | ") == 4


def test_writing_the_table_replaces_only_what_is_between_the_markers():
    document = f"intro\n{BEGIN}\nold table\n{END}\nafter\n"
    written = with_table(document, "| new |\n")
    assert written == f"intro\n{BEGIN}\n| new |\n{END}\nafter\n"
    assert table_in(written) == "| new |\n"
    with pytest.raises(ValueError):
        with_table("no markers", "| new |\n")
