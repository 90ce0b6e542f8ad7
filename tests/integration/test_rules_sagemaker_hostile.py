"""A hostile artifact in the local cloud: the endpoint fails as a bad artifact fails on AWS, and
neither the cloud's process (which checks it at CreateEndpoint) nor the runtime's (which loads
model data, even model data swapped under an InService endpoint) goes down with XGBoost.

The crashing booster is built here: UBJSON nested 100,000 arrays deep overflows XGBoost 3.2's
parser stack (tests/unit/test_hostile_artifacts.py shows it kills an unchecked process).
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import time

import boto3
import pytest
from aws_helpers import SAGEMAKER_TRUST, unique
from botocore.exceptions import ClientError

from l2c.local.tutorial import TUTORIAL_BODIES

REGION = "us-east-1"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0"
IRIS_ROW = TUTORIAL_BODIES["iris"]["data"]
CRASHED = "Unable to load model: XGBoost crashed while loading the model (signal 11, SIGSEGV)"


def crashing_tarball() -> bytes:
    def key(name: bytes) -> bytes:
        return b"L" + struct.pack(">q", len(name)) + name

    depth = 100_000
    booster = b"{" + key(b"learner") + b"[" * depth + b"]" * depth + key(b"version") + b"[i\x03i\x02i\x00]}"
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(booster)
        tar.addfile(info, io.BytesIO(booster))
    return stream.getvalue()


@pytest.fixture(scope="module")
def made(local_cloud):
    """Everything this module creates, removed when it ends (the session's cloud is shared)."""
    names = {"endpoints": [], "configs": [], "models": [], "roles": [], "bucket": unique("l2c-hostile")}
    yield names
    sm, iam = boto3.client("sagemaker", region_name=REGION), boto3.client("iam")
    for name in names["endpoints"]:
        wait_for(sm, name, {"InService", "Failed", "gone"})
        try:
            sm.delete_endpoint(EndpointName=name)
        except ClientError:
            pass
    for name in names["endpoints"]:
        wait_for(sm, name, {"gone"})
    for name in names["configs"]:
        sm.delete_endpoint_config(EndpointConfigName=name)
    for name in names["models"]:
        sm.delete_model(ModelName=name)
    for role in names["roles"]:
        iam.delete_role_policy(RoleName=role, PolicyName="read-models")
        iam.delete_role(RoleName=role)
    bucket = boto3.resource("s3", region_name=REGION).Bucket(names["bucket"])
    bucket.objects.all().delete()
    bucket.delete()


@pytest.fixture(scope="module")
def sm(local_cloud):
    return boto3.client("sagemaker", region_name=REGION)


@pytest.fixture(scope="module")
def runtime(local_cloud):
    return boto3.client("sagemaker-runtime", region_name=REGION)


@pytest.fixture(scope="module")
def s3(local_cloud):
    return boto3.client("s3", region_name=REGION)


@pytest.fixture(scope="module")
def role(made):
    iam, name = boto3.client("iam"), unique("l2c-hostile")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="read-models",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{made['bucket']}/*"}
                ],
            }
        ),
    )
    made["roles"].append(name)
    time.sleep(0.1)  # past IAM's propagation delay at the suite's pace
    return arn


@pytest.fixture(scope="module")
def bucket(s3, made):
    s3.create_bucket(Bucket=made["bucket"])
    return made["bucket"]


def endpoint_for(sm, s3, made, role, bucket: str, key: str, body: bytes) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    model, config, endpoint = unique("m-hostile"), unique("cfg-hostile"), unique("hostile")
    sm.create_model(
        ModelName=model,
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/{key}"},
    )
    made["models"].append(model)
    sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialVariantWeight": 1.0,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    made["configs"].append(config)
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    made["endpoints"].append(endpoint)
    return endpoint


def wait_for(sm, endpoint: str, final: set[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"]
        except ClientError as err:
            assert "Could not find endpoint" in err.response["Error"]["Message"]
            status = "gone"
        if status in final:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{endpoint} never reached {final}")


def log_lines(endpoint: str) -> list[str]:
    logs = boto3.client("logs", region_name=REGION)
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    lines = []
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
        lines += [event["message"] for event in events]
    return lines


def invoke(runtime, endpoint: str) -> bytes:
    return runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=IRIS_ROW)["Body"].read()


@pytest.fixture(scope="module")
def iris_endpoint(sm, s3, made, role, bucket, trained_models):
    iris = (trained_models["iris"] / "model.tar.gz").read_bytes()
    name = endpoint_for(sm, s3, made, role, bucket, "iris/model.tar.gz", iris)
    assert wait_for(sm, name, {"InService", "Failed"}) == "InService"
    return name


def test_an_artifact_that_crashes_xgboost_fails_the_endpoint_and_the_cloud_keeps_serving(
    sm, s3, made, role, bucket, runtime, iris_endpoint
):
    name = endpoint_for(sm, s3, made, role, bucket, "crash/model.tar.gz", crashing_tarball())
    assert wait_for(sm, name, {"InService", "Failed"}) == "Failed"
    assert sm.describe_endpoint(EndpointName=name)["FailureReason"] == (
        "The primary container for production variant AllTraffic did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )
    assert CRASHED in log_lines(name)
    # The cloud's process checked it in a child, and is still here, serving the other endpoint.
    assert invoke(runtime, iris_endpoint).count(b",") == 2


def test_model_data_swapped_for_a_crashing_booster_is_refused_by_the_runtime_which_keeps_serving(
    sm, s3, made, role, bucket, runtime, iris_endpoint, trained_models
):
    iris = (trained_models["iris"] / "model.tar.gz").read_bytes()
    name = endpoint_for(sm, s3, made, role, bucket, "swapped/model.tar.gz", iris)
    assert wait_for(sm, name, {"InService", "Failed"}) == "InService"
    assert invoke(runtime, name).count(b",") == 2
    # New model data under the same URL: the runtime sees the new ETag and checks it anew.
    s3.put_object(Bucket=bucket, Key="swapped/model.tar.gz", Body=crashing_tarball())
    deadline = time.monotonic() + 20
    while True:
        try:
            invoke(runtime, name)
        except ClientError as err:
            error = err.response
            break
        assert time.monotonic() < deadline, "the runtime never loaded the new model data"
        time.sleep(0.2)
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 500 and error["OriginalMessage"] == CRASHED
    # Remembered for this artifact version: refused again at once, and the runtime still serves.
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(ClientError, match="ModelError"):
            invoke(runtime, name)
    assert time.monotonic() - started < 5.0
    assert invoke(runtime, iris_endpoint).count(b",") == 2
