"""Small pieces the integration tests share: Lambda packages, trust policies, unique names, errors,
and newman running the Postman collection."""

from __future__ import annotations

import io
import json
import os
import subprocess
import textwrap
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
SAGEMAKER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def zipped(source: str) -> bytes:
    """A deployment package holding ``source`` as app.py (handler ``app.handler``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", textwrap.dedent(source))
    return buffer.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_of(info) -> tuple[str, int, str]:
    """Code, HTTP status and message of the ClientError a ``pytest.raises`` caught."""
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


REPO = Path(__file__).resolve().parents[2]
NEWMAN = REPO / "node_modules" / ".bin" / "newman"
COLLECTION = REPO / "postman" / "l2c.postman_collection.json"


def run_newman(base_url: str, api_key: str, report: Path) -> dict:
    """Run the committed Postman collection with newman against ``base_url``; its run stats."""
    assert NEWMAN.is_file(), "newman is not installed: run `npm ci` (make test does)"
    result = subprocess.run(
        [
            str(NEWMAN), "run", str(COLLECTION),
            "--env-var", f"baseUrl={base_url}",
            "--env-var", f"apiKey={api_key}",
            "--reporters", "cli,json", "--reporter-json-export", str(report),
            "--timeout-request", "60000", "--color", "off",
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return json.loads(report.read_text())["run"]["stats"]


@contextmanager
def own_local_cloud(state_dir: Path, pace: float | None = None):
    """A LocalCloud of this test module, in this process on free ports (so parts of it can be
    stopped and restarted); it points this process's boto3 at itself, and the environment is
    put back when it stops."""
    from l2c.local.cloud import LocalCloud, Ports

    saved = dict(os.environ)
    os.environ["L2C_STATE_DIR"] = str(state_dir)
    cloud = LocalCloud(Ports.free(), pace=pace).start()
    try:
        yield cloud
    finally:
        cloud.stop()
        os.environ.clear()
        os.environ.update(saved)
