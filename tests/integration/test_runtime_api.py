"""boto3's own ``sagemaker-runtime`` client, unmodified, against the Runtime-API face, with the
model deployed into moto (S3 + SageMaker) exactly as the deploy code does on AWS."""

import io
import logging

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from l2c.artifact import write_tarball
from l2c.serving.server import start_runtime_in_thread

# moto and a runtime of its own, never the session's cloud (tests/integration/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.own_cloud]

ROLE = "arn:aws:iam::123456789012:role/l2c-sagemaker"
BUCKET = "l2c-runtime-test"


@pytest.fixture(scope="module")
def moto_url():
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def aws_env(moto_url):
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        patch.setenv(name, value)
    patch.delenv("AWS_PROFILE", raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def regressors():
    """Two regressors whose predictions differ, so the answer shows which variant served it."""
    rng = np.random.default_rng(4)
    features = rng.normal(size=(200, 13))
    target = features @ rng.normal(size=13) + 22
    params = {"objective": "reg:squarederror", "max_depth": 3, "nthread": 1}
    return {
        "v1": xgb.train(params, xgb.DMatrix(features, label=target), 6),
        "v2": xgb.train(params, xgb.DMatrix(features, label=target * 2), 6),
    }


@pytest.fixture(scope="module")
def deployed(aws_env, regressors, tmp_path_factory):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for name, booster in regressors.items():
        tarball = write_tarball(booster, tmp_path_factory.mktemp(name) / "model.tar.gz")
        s3.upload_file(str(tarball), BUCKET, f"{name}/model.tar.gz")
        boto3.client("sagemaker").create_model(
            ModelName=f"house-{name}",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "xgboost:3.2-0", "ModelDataUrl": f"s3://{BUCKET}/{name}/model.tar.gz"},
        )
    deploy("house-price", [("AllTraffic", "house-v1", 1.0)])
    deploy("house-ab", [("VariantA", "house-v1", 1.0), ("VariantB", "house-v2", 1.0)])
    return regressors


def deploy(endpoint: str, variants, config: str | None = None) -> None:
    sagemaker = boto3.client("sagemaker")
    config = config or f"{endpoint}-config"
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": v,
                "ModelName": m,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": w,
            }
            for v, m, w in variants
        ],
    )
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)


@pytest.fixture(scope="module")
def runtime(deployed, monkeypatch_module):
    with start_runtime_in_thread(refresh_seconds=0.0) as server:
        monkeypatch_module.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
        yield boto3.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


ROW = ",".join(["0.5"] * 13)


def expected_csv(booster, rows: np.ndarray) -> bytes:
    stream = io.StringIO()
    np.savetxt(stream, booster.predict(xgb.DMatrix(rows), validate_features=False).tolist(), fmt="%s")
    return stream.getvalue().encode()


def test_invoke_endpoint_returns_the_container_output(runtime, regressors):
    response = runtime.invoke_endpoint(EndpointName="house-price", ContentType="text/csv", Body=ROW)
    assert response["Body"].read() == expected_csv(regressors["v1"], np.full((1, 13), 0.5))
    assert response["ContentType"] == "text/csv; charset=utf-8"
    assert response["InvokedProductionVariant"] == "AllTraffic"


def test_json_accept(runtime):
    response = runtime.invoke_endpoint(
        EndpointName="house-price", ContentType="text/csv", Accept="application/json", Body=ROW
    )
    assert response["ContentType"] == "application/json"
    assert response["Body"].read().startswith(b'{"predictions": [{"score": ')


def test_unknown_endpoint_raises_validation_error(runtime):
    with pytest.raises(runtime.exceptions.ValidationError) as caught:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="text/csv", Body=ROW)
    assert caught.value.response["Error"]["Message"] == "Endpoint no-such-endpoint of account 123456789012 not found."
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_container_error_raises_model_error_with_the_original_status(runtime):
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName="house-price", ContentType="application/json", Body='{"data": 1}')
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 415
    assert error["OriginalMessage"].startswith("application/json is not an accepted ContentType:")
    assert error["Error"]["Message"].startswith("Received client error (415) from primary with message")
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["ResponseMetadata"]["RetryAttempts"] == 0


def test_non_number_raises_model_error_415(runtime):
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName="house-price", ContentType="text/csv", Body="a,b,c")
    assert caught.value.response["OriginalStatusCode"] == 415
    assert caught.value.response["OriginalMessage"].startswith("Loading csv data failed with Exception")


def test_payload_over_the_service_limit_is_413_without_retries(runtime):
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="house-price", ContentType="text/csv", Body=b"1" * (6 * 1024 * 1024 + 1))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_target_variant_and_weighted_split(runtime, regressors):
    rows = np.full((1, 13), 0.5)
    targeted = runtime.invoke_endpoint(
        EndpointName="house-ab", ContentType="text/csv", Body=ROW, TargetVariant="VariantB"
    )
    assert targeted["InvokedProductionVariant"] == "VariantB"
    assert targeted["Body"].read() == expected_csv(regressors["v2"], rows)
    served = {"VariantA": 0, "VariantB": 0}
    expected = {"VariantA": expected_csv(regressors["v1"], rows), "VariantB": expected_csv(regressors["v2"], rows)}
    for _ in range(60):
        response = runtime.invoke_endpoint(EndpointName="house-ab", ContentType="text/csv", Body=ROW)
        variant = response["InvokedProductionVariant"]
        assert response["Body"].read() == expected[variant]
        served[variant] += 1
    # equal weights: 30 expected each; 60 draws put fewer than 12 on one side with p < 1e-5
    assert min(served.values()) >= 12


def test_redeploying_an_endpoint_serves_the_new_model(runtime, regressors):
    deploy("house-redeploy", [("AllTraffic", "house-v1", 1.0)])
    first = runtime.invoke_endpoint(EndpointName="house-redeploy", ContentType="text/csv", Body=ROW)["Body"].read()
    deploy("house-redeploy", [("AllTraffic", "house-v2", 1.0)], config="house-redeploy-config-2")
    second = runtime.invoke_endpoint(EndpointName="house-redeploy", ContentType="text/csv", Body=ROW)["Body"].read()
    rows = np.full((1, 13), 0.5)
    assert (first, second) == (expected_csv(regressors["v1"], rows), expected_csv(regressors["v2"], rows))
