"""The Postman collection, run by newman against both models deployed into the local cloud."""

from __future__ import annotations

import json

import pytest

from l2c.cloud import stack, teardown
from l2c.cloud.progress import Reporter
from tests.integration.aws_helpers import COLLECTION, run_newman


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployments = {
        name: stack.deploy(name, trained_models[name], session=cloud_session, reporter=Reporter())
        for name in ("iris", "house-price")
    }
    yield deployments
    teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())


def test_the_collection_runs_green_under_newman(deployed, tmp_path):
    deployment = deployed["iris"]
    stats = run_newman(deployment.url.rsplit("/", 1)[0], deployment.api_key, tmp_path / "newman.json")
    assert stats["assertions"]["failed"] == 0 and stats["requests"]["failed"] == 0
    assert stats["assertions"]["total"] >= 20  # the collection's tests did run, not just its requests
    assert stats["requests"]["total"] == len(_requests(json.loads(COLLECTION.read_text())))


def _requests(collection: dict) -> list[dict]:
    found = []
    for item in collection["item"]:
        found += _requests(item) if "item" in item else [item]
    return found
