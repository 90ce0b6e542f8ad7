"""The Postman collection, run by newman against both models deployed into the local cloud."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from l2c.cloud import stack
from l2c.cloud.progress import Reporter

REPO = Path(__file__).resolve().parents[2]
NEWMAN = REPO / "node_modules" / ".bin" / "newman"
COLLECTION = REPO / "postman" / "l2c.postman_collection.json"


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployments = {
        name: stack.deploy(name, trained_models[name], session=cloud_session, reporter=Reporter())
        for name in ("iris", "house-price")
    }
    yield deployments
    stack.destroy(everything=True, session=cloud_session, reporter=Reporter())


def test_the_collection_runs_green_under_newman(deployed, tmp_path):
    assert NEWMAN.is_file(), "newman is not installed: run `npm ci` (make test does)"
    deployment = deployed["iris"]
    report = tmp_path / "newman.json"
    result = subprocess.run(
        [
            str(NEWMAN), "run", str(COLLECTION),
            "--env-var", f"baseUrl={deployment.url.rsplit('/', 1)[0]}",
            "--env-var", f"apiKey={deployment.api_key}",
            "--reporters", "cli,json", "--reporter-json-export", str(report),
            "--timeout-request", "60000", "--color", "off",
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    stats = json.loads(report.read_text())["run"]["stats"]
    assert stats["assertions"]["failed"] == 0 and stats["requests"]["failed"] == 0
    assert stats["assertions"]["total"] >= 20  # the collection's tests did run, not just its requests
    assert stats["requests"]["total"] == len(_requests(json.loads(COLLECTION.read_text())))


def _requests(collection: dict) -> list[dict]:
    found = []
    for item in collection["item"]:
        found += _requests(item) if "item" in item else [item]
    return found
