"""What makes `l2c up` quick without changing what it deploys: the image URI kept across runs,
the two stacks deployed at once with the engine's own steps, and lines that say which stack."""

from __future__ import annotations

import inspect
import json
import re

import pytest
from rich.console import Console

from l2c import versions
from l2c.cloud import stack
from l2c.local import up


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_the_image_uri_is_looked_up_once_then_read_from_the_cache(cache_folder, monkeypatch):
    first = versions.image_uri("eu-west-1")
    stored = json.loads(versions.image_cache_file().read_text())
    assert list(stored.values()) == [first]
    assert re.fullmatch(r"sagemaker-core \S+ xgboost 3\.2-0 eu-west-1", next(iter(stored)))
    # Were the SDK consulted again, this would fail.
    monkeypatch.setitem(__import__("sys").modules, "sagemaker.core", None)
    assert versions.image_uri("eu-west-1") == first


def test_a_new_sdk_version_looks_the_image_up_again(cache_folder, monkeypatch):
    versions.image_uri("us-east-1")
    monkeypatch.setattr(versions, "_sdk_version", lambda: "0.0.0-next")
    assert versions.image_uri("us-east-1").endswith(".dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0")
    assert len(json.loads(versions.image_cache_file().read_text())) == 2


def test_an_unreadable_cache_is_only_a_slower_lookup(cache_folder):
    versions.image_cache_file().parent.mkdir(parents=True)
    versions.image_cache_file().write_text("{not json")
    assert versions.image_uri("eu-west-1").endswith("/sagemaker-xgboost:3.2-0")
    assert json.loads(versions.image_cache_file().read_text())


def test_up_runs_every_step_of_deploy_with_the_endpoint_before_what_needs_it():
    source = inspect.getsource(stack.deploy)
    listed = re.search(r"for step in \(([^)]*)\)", source).group(1)
    steps = tuple(name.strip() for name in listed.split(",") if name.strip())
    ours = up.STEPS_BEFORE_ENDPOINT + (up.ENDPOINT_STEP,) + up.STEPS_WHILE_CREATING
    assert sorted(ours) == sorted(steps) and "return create_api(stack)" in source
    # The steps made while the endpoint is Creating come after it in deploy's own order too.
    assert steps.index(up.ENDPOINT_STEP) < min(steps.index(step) for step in up.STEPS_WHILE_CREATING)
    assert steps[: len(up.STEPS_BEFORE_ENDPOINT)] == up.STEPS_BEFORE_ENDPOINT


def test_each_line_of_a_concurrent_deploy_names_its_stack():
    console = Console(record=True, width=200)
    reporter = up.StackReporter(console, "house-price")
    reporter.step("bucket [b] ready")
    with reporter.waiting("endpoint creating"):
        pass
    text = console.export_text()
    assert "✓ [house-price] bucket [b] ready" in text
    assert "… [house-price] endpoint creating ..." in text and re.search(
        r"✓ \[house-price\] endpoint creating \(\d", text
    )
    assert reporter.lines == ["bucket [b] ready", "endpoint creating"]


def test_up_names_the_tutorial_models_and_their_tarball_as_the_package_does():
    from l2c.artifact import TARBALL_NAME
    from l2c.local.tutorial import MODELS

    assert up.MODELS == MODELS and up.TARBALL == TARBALL_NAME


def test_scikit_learn_is_kept_out_only_before_xgboost_is_imported(monkeypatch):
    import sys

    assert "xgboost" in sys.modules  # imported with this module (l2c.cloud.stack): nothing may change
    monkeypatch.delitem(sys.modules, "sklearn", raising=False)
    up._keep_scikit_learn_out()
    assert "sklearn" not in sys.modules
