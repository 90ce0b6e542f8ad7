"""Unmodified clients against the local cloud with nothing but AWS_ENDPOINT_URL: the AWS CLI and newman.

The CLI runs as a data scientist's shell would run it: fake credentials and a region in the
environment, no config or credentials files, and one endpoint variable, which the CLI's own
botocore honours for every service (Lambda Invoke, API Gateway, SageMaker Runtime alike).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from l2c.cloud import apigateway, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.local.tutorial import TUTORIAL_BODIES
from tests.integration.aws_helpers import run_newman

AWS = Path(sys.executable).with_name("aws")
IRIS_ROW = TUTORIAL_BODIES["iris"]["data"]


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployments = {
        name: stack.deploy(name, trained_models[name], session=cloud_session, reporter=Reporter())
        for name in ("iris", "house-price")
    }
    yield deployments
    teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())


@pytest.fixture(scope="module")
def cli_env(local_cloud, tmp_path_factory) -> dict[str, str]:
    """The environment of a shell that knows only where the cloud is."""
    nowhere = tmp_path_factory.mktemp("no-aws-config")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "L2C_"))}
    env.update(
        {
            "AWS_ENDPOINT_URL": local_cloud.env["AWS_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": local_cloud.env["AWS_DEFAULT_REGION"],
            "AWS_CONFIG_FILE": str(nowhere / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(nowhere / "credentials"),
        }
    )
    return env


def aws(cli_env, *arguments: str) -> subprocess.CompletedProcess:
    assert AWS.is_file(), "the AWS CLI is not installed: pip install -r requirements-dev.txt"
    result = subprocess.run(
        [str(AWS), *arguments, "--output", "json"], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_aws_lambda_invoke_runs_the_deployed_function_with_its_log_tail(cli_env, deployed, tmp_path):
    out = tmp_path / "answer.json"
    event = {"data": IRIS_ROW}
    result = aws(
        cli_env,
        "lambda",
        "invoke",
        "--function-name",
        deployed["iris"].function,
        "--payload",
        json.dumps(event),
        "--log-type",
        "Tail",
        str(out),
    )
    meta = json.loads(result.stdout)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST" and "FunctionError" not in meta
    assert "REPORT RequestId:" in base64.b64decode(meta["LogResult"]).decode()
    answer = json.loads(out.read_text())  # the console-test event gets the handler's dict itself
    assert answer["predictions"][0]["label"] == "setosa"


def test_aws_sagemaker_runtime_invoke_endpoint_returns_real_predictions(cli_env, deployed, tmp_path):
    out = tmp_path / "prediction.csv"
    result = aws(
        cli_env,
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        deployed["iris"].endpoint,
        "--content-type",
        "text/csv",
        "--body",
        IRIS_ROW,
        str(out),
    )
    assert json.loads(result.stdout)["ContentType"].startswith("text/csv")
    probabilities = [float(value) for value in out.read_text().strip().split(",")]
    assert len(probabilities) == 3 and abs(sum(probabilities) - 1) < 1e-4
    assert probabilities[0] == max(probabilities)  # the tutorial's flower is a setosa


def test_aws_apigateway_test_invoke_method_runs_the_prediction_path(cli_env, deployed, cloud_session):
    deployment = deployed["iris"]
    resource = next(
        item
        for item in apigateway.resources(cloud_session, deployment.api_id)
        if item["path"] == f"/{apigateway.resource_path('iris')}"
    )
    # TestInvokeMethod calls from the stage "test-invoke-stage": the deploy's permission names only its
    # own stage, so (as on AWS) the console's Test needs a permission for it too.
    cloud_session.client("lambda").add_permission(
        FunctionName=deployment.function,
        StatementId="cli-test-invoke",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=apigateway.method_arn(cloud_session, deployment.api_id, resource["path"].lstrip("/"), stage="*"),
    )
    result = aws(
        cli_env,
        "apigateway",
        "test-invoke-method",
        "--rest-api-id",
        deployment.api_id,
        "--resource-id",
        resource["id"],
        "--http-method",
        "POST",
        "--body",
        json.dumps({"data": IRIS_ROW}),
        "--headers",
        "Content-Type=application/json",
    )
    answer = json.loads(result.stdout)
    assert answer["status"] == 200, answer["log"]
    assert json.loads(answer["body"])["predictions"][0]["label"] == "setosa"
    assert answer["log"].startswith("Execution log for request ")
    assert "Method completed with status: 200" in answer["log"]


def test_newman_runs_the_collection_through_the_edge_url(local_cloud, deployed, tmp_path):
    deployment = deployed["iris"]
    base_url = f"{local_cloud.env['AWS_ENDPOINT_URL']}/restapis/{deployment.api_id}/{apigateway.STAGE}/_user_request_"
    stats = run_newman(base_url, deployment.api_key, tmp_path / "newman.json")
    assert stats["assertions"]["failed"] == 0 and stats["requests"]["failed"] == 0
    assert stats["assertions"]["total"] >= 20
