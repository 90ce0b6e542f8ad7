"""Small pieces the integration and client tests share: Lambda packages, trust policies, unique
names, errors, newman running the Postman collection, and what l2c left in every service."""

from __future__ import annotations

import io
import json
import subprocess
import textwrap
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

from l2c.cloud import tags
from l2c.config import POSTMAN_DIR

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
COLLECTION = POSTMAN_DIR / "l2c.postman_collection.json"


def run_newman(base_url: str, api_key: str, report: Path) -> dict:
    """Run the committed Postman collection with newman against ``base_url``; its run stats."""
    assert NEWMAN.is_file(), "newman is not installed: run `npm ci` (make test does)"
    result = subprocess.run(
        [
            str(NEWMAN),
            "run",
            str(COLLECTION),
            "--env-var",
            f"baseUrl={base_url}",
            "--env-var",
            f"apiKey={api_key}",
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--timeout-request",
            "60000",
            "--color",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return json.loads(report.read_text())["run"]["stats"]


@contextmanager
def own_local_cloud(state_dir: Path, pace: float | None = None):
    """A LocalCloud of this test module, in this process on free ports (so parts of it can be
    stopped and restarted). While it runs, this process's environment points at it (as the
    session's cloud is pointed at for the other modules), so `connect(LOCAL)` and the `l2c`
    commands the tests run find it; the environment is put back when it stops."""
    import pytest

    from l2c.local.cloud import LocalCloud, Ports

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("L2C_STATE_DIR", str(state_dir))
        cloud = LocalCloud(Ports.free(), pace=pace).start()
        try:
            for name, value in cloud.env.items():
                patch.setenv(name, value)
            yield cloud
        finally:
            cloud.stop()


def everything_l2c_left(session) -> list[str]:
    """Lists every service directly (not through l2c's inventory) for anything l2c made."""
    left = []
    s3, iam, sm, lam, logs, gateway, scaling = (
        session.client(name)
        for name in ("s3", "iam", "sagemaker", "lambda", "logs", "apigateway", "application-autoscaling")
    )
    left += [f"bucket {b['Name']}" for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("l2c-")]
    for role in iam.list_roles()["Roles"]:
        if role["Path"] == "/l2c/" or tags.is_l2c(
            tags.from_tag_list(iam.list_role_tags(RoleName=role["RoleName"])["Tags"])
        ):
            left.append(f"role {role['RoleName']}")
    left += [f"policy {p['PolicyName']}" for p in iam.list_policies(Scope="Local")["Policies"]]
    left += [f"model {m['ModelName']}" for m in sm.list_models()["Models"]]
    left += [f"endpoint config {c['EndpointConfigName']}" for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    left += [f"endpoint {e['EndpointName']}" for e in sm.list_endpoints()["Endpoints"]]
    left += [
        f"function {f['FunctionName']}"
        for f in lam.list_functions()["Functions"]
        if f["FunctionName"].startswith("l2c-")
    ]
    left += [
        f"log group {g['logGroupName']}"
        for g in logs.describe_log_groups()["logGroups"]
        if "/l2c-" in g["logGroupName"]
    ]
    left += [f"rest api {a['name']}" for a in gateway.get_rest_apis()["items"] if tags.is_l2c(a.get("tags"))]
    left += [f"api key {k['name']}" for k in gateway.get_api_keys()["items"] if tags.is_l2c(k.get("tags"))]
    left += [f"usage plan {p['name']}" for p in gateway.get_usage_plans()["items"] if tags.is_l2c(p.get("tags"))]
    left += [
        f"scaling {t['ResourceId']}"
        for t in scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    ]
    return left
