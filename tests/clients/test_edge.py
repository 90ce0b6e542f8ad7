"""One edge URL: with only ``AWS_ENDPOINT_URL`` set, every AWS client reaches l2c's own data planes.

A client that knows nothing of l2c (a fresh Python process with boto3, no config files, no
per-service variables) invokes a deployed endpoint through the control-plane port and gets the
model's real predictions; an endpoint that does not exist is AWS's ValidationError, never a
canned answer from moto's stub.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import pytest

from l2c.cloud import calling, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.local.tutorial import TUTORIAL_BODIES

STACK = "edge-iris"


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployment = stack.deploy(STACK, trained_models["iris"], session=cloud_session, reporter=Reporter())
    yield deployment
    teardown.destroy(STACK, session=cloud_session, reporter=Reporter())


def edge_only_env(local_cloud, tmp_path) -> dict[str, str]:
    """What a user's shell holds after `export AWS_ENDPOINT_URL=...`, and nothing else of AWS's."""
    return {
        "PATH": "/usr/bin:/bin",
        "AWS_ENDPOINT_URL": local_cloud.env["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }


def run_boto3(script: str, env: dict[str, str]) -> dict:
    """Run ``script`` in a fresh interpreter with exactly ``env``; it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


INVOKE = """
    import json, boto3
    runtime = boto3.client("sagemaker-runtime")
    answers = {"endpoint_url": runtime.meta.endpoint_url}
    reply = runtime.invoke_endpoint(EndpointName=%r, ContentType="text/csv", Accept="application/json", Body=%r)
    answers["ok"] = {"body": json.loads(reply["Body"].read()), "variant": reply["InvokedProductionVariant"]}
    try:
        runtime.invoke_endpoint(EndpointName="l2c-no-such-endpoint", ContentType="text/csv", Body="1,2,3,4")
    except runtime.exceptions.ValidationError as err:
        answers["unknown"] = {"code": err.response["Error"]["Code"], "message": err.response["Error"]["Message"],
                              "status": err.response["ResponseMetadata"]["HTTPStatusCode"]}
    print(json.dumps(answers))
"""


def test_invoke_endpoint_through_the_edge_alone_returns_the_models_predictions(
    deployed, local_cloud, tmp_path, cloud_session
):
    row = TUTORIAL_BODIES["iris"]["data"]
    answers = run_boto3(INVOKE % (deployed.endpoint, row), edge_only_env(local_cloud, tmp_path))
    assert answers["endpoint_url"] == local_cloud.env["AWS_ENDPOINT_URL"]
    # The same prediction the endpoint gives through its own runtime port: the model's, not a stub's.
    direct = calling.invoke(STACK, row, session=cloud_session)
    assert answers["ok"]["body"] == direct
    probabilities = answers["ok"]["body"]["predictions"][0]["score"]
    assert len(probabilities) == 3 and abs(sum(probabilities) - 1) < 1e-5
    assert answers["ok"]["variant"] == "AllTraffic"


def test_an_unknown_endpoint_through_the_edge_is_awss_validation_error(deployed, local_cloud, tmp_path):
    answers = run_boto3(
        INVOKE % (deployed.endpoint, TUTORIAL_BODIES["iris"]["data"]), edge_only_env(local_cloud, tmp_path)
    )
    unknown = answers["unknown"]
    assert unknown["code"] == "ValidationError" and unknown["status"] == 400
    assert unknown["message"] == f"Endpoint l2c-no-such-endpoint of account {deployed_account(local_cloud)} not found."


def deployed_account(local_cloud) -> str:
    import boto3

    sts = boto3.client(
        "sts",
        endpoint_url=local_cloud.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return sts.get_caller_identity()["Account"]


def test_the_execute_api_stage_answers_on_the_edge_too(deployed, local_cloud):
    api_id = deployed.api_id
    path = deployed.url.rsplit("/", 1)[1]
    url = f"{local_cloud.env['AWS_ENDPOINT_URL']}/restapis/{api_id}/test/_user_request_/{path}"
    headers = {"x-api-key": deployed.api_key}
    reply = httpx.post(url, json=TUTORIAL_BODIES["iris"], headers=headers, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["prediction"] in ("setosa", "versicolor", "virginica")
    # The same stage by Host header, as https://{api}.execute-api.{region}.amazonaws.com is addressed.
    host = f"{api_id}.execute-api.localhost.localstack.cloud"
    by_host = httpx.post(
        f"{local_cloud.env['AWS_ENDPOINT_URL']}/test/{path}",
        json=TUTORIAL_BODIES["iris"],
        headers={**headers, "Host": host},
        timeout=60,
    )
    assert by_host.status_code == 200 and by_host.json() == reply.json()
    assert httpx.post(url, json=TUTORIAL_BODIES["iris"], timeout=60).status_code == 403  # no key: Forbidden


def test_the_pace_is_a_setting_of_the_edge_and_refuses_nonsense(local_cloud):
    url = local_cloud.env["AWS_ENDPOINT_URL"] + "/_l2c/pace"
    assert httpx.get(url).json()["pace"] == pytest.approx(float(local_cloud.env["L2C_PACE"]))
    refused = httpx.post(url, json={"pace": 7})
    assert refused.status_code == 400 and "between 0 and 1" in refused.json()["message"]
    assert httpx.post(url, json={"pace": "fast"}).status_code == 400
    assert httpx.get(url).json()["pace"] == pytest.approx(float(local_cloud.env["L2C_PACE"]))
