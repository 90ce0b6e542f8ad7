"""The Runtime-API face over loopback with a stand-in control plane: wire shapes of errors,
weighted variants, TargetVariant, the model cache. (boto3 + moto: tests/integration.)"""

import io
import json
import random
import tarfile

import httpx
import joblib
import numpy as np
import pytest
import xgboost as xgb

from l2c.artifact import booster_bytes, write_tarball
from l2c.serving.runtime_api import MAX_PAYLOAD_BYTES, EndpointNotFound, Route, RuntimeApp, Variant
from l2c.serving.server import start_in_thread


def tarball_bytes(booster, tmp_path) -> bytes:
    return write_tarball(booster, tmp_path / "model.tar.gz").read_bytes()


@pytest.fixture(scope="module")
def boosters():
    """Two binary classifiers that disagree, so a response tells which variant answered."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] > 0).astype(int)
    train = xgb.DMatrix(features, label=labels)
    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}
    return {"a": xgb.train(params, train, 4), "b": xgb.train(params, xgb.DMatrix(features, label=1 - labels), 4)}


class StandInControlPlane:
    region = "eu-west-1"

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.objects: dict[str, bytes] = {}
        self.fetches = 0
        self.resolves = 0

    def account_id(self) -> str:
        return "111122223333"

    def resolve(self, name: str) -> Route:
        self.resolves += 1
        if name not in self.routes:
            raise EndpointNotFound(name)
        return self.routes[name]

    def fetch(self, url: str) -> bytes:
        self.fetches += 1
        return self.objects[url]


@pytest.fixture
def plane(boosters, tmp_path):
    plane = StandInControlPlane()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plane.objects["s3://models/a.tar.gz"] = tarball_bytes(boosters["a"], tmp_path / "a")
    plane.objects["s3://models/b.tar.gz"] = tarball_bytes(boosters["b"], tmp_path / "b")
    plane.routes["demo"] = Route(
        "demo", "demo-config",
        (Variant("A", 3.0, "s3://models/a.tar.gz", '"etag-a"'), Variant("B", 1.0, "s3://models/b.tar.gz", '"etag-b"')),
    )
    return plane


def runtime_client(plane, refresh_seconds=60.0):
    app = RuntimeApp(control_plane=plane, refresh_seconds=refresh_seconds, rng=random.Random(0))
    server = start_in_thread(app)
    return server, httpx.Client(base_url=server.url, timeout=30)


@pytest.fixture
def client(plane):
    server, client = runtime_client(plane)
    yield client
    server.stop()


def invoke(client, body=b"0.5,1.0,-1.0", endpoint="demo", **headers):
    headers.setdefault("content-type", "text/csv")
    return client.post(f"/endpoints/{endpoint}/invocations", content=body, headers=headers)


def expected_csv(booster, rows) -> bytes:
    stream = io.StringIO()
    np.savetxt(stream, booster.predict(xgb.DMatrix(rows), validate_features=False).tolist(), fmt="%s")
    return stream.getvalue().encode()


def test_success_names_the_variant_and_carries_the_container_output(client, boosters):
    response = invoke(client, **{"x-amzn-sagemaker-target-variant": "B"})
    assert response.status_code == 200
    assert response.headers["x-amzn-invoked-production-variant"] == "B"
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content == expected_csv(boosters["b"], np.array([[0.5, 1.0, -1.0]]))


def test_traffic_splits_by_weight(client):
    variants = [invoke(client).headers["x-amzn-invoked-production-variant"] for _ in range(400)]
    # weights 3:1 -> 300 expected for A; the binomial standard deviation is about 9
    assert 250 < variants.count("A") < 350
    assert variants.count("A") + variants.count("B") == 400


def test_unknown_target_variant_is_a_validation_error(client):
    response = invoke(client, **{"x-amzn-sagemaker-target-variant": "C"})
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"


def test_unknown_endpoint_is_a_validation_error_with_the_services_message(client):
    response = invoke(client, endpoint="nope")
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    assert response.json() == {"message": "Endpoint nope of account 111122223333 not found."}


def test_invalid_endpoint_name_is_a_validation_error(client):
    response = invoke(client, endpoint="bad_name")
    assert response.status_code == 400 and "regular expression" in response.json()["message"]


def test_container_error_becomes_model_error_424(client):
    response = invoke(client, body=b'{"a": 1}', **{"content-type": "application/json"})
    assert response.status_code == 424
    assert response.headers["x-amzn-errortype"] == "ModelError"
    body = response.json()
    original = (
        "application/json is not an accepted ContentType: csv, libsvm, parquet, recordio-protobuf, text/csv, "
        "text/libsvm, text/x-libsvm, application/x-parquet, application/x-recordio-protobuf."
    )
    assert body["OriginalStatusCode"] == 415
    assert body["OriginalMessage"] == original
    assert body["message"].startswith(f'Received client error (415) from primary with message "{original}". See https://eu-west-1.')
    assert "/aws/sagemaker/Endpoints/demo in account 111122223333" in body["message"]


def test_payload_over_six_megabytes_is_413(client):
    response = invoke(client, body=b"1" * (MAX_PAYLOAD_BYTES + 1))
    assert response.status_code == 413
    assert response.json() == {"message": f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."}


def test_models_are_loaded_once_and_routes_cached(client, plane):
    for _ in range(30):
        assert invoke(client).status_code == 200
    assert plane.fetches == 2 and plane.resolves == 1


def test_new_model_data_is_picked_up(plane, boosters, tmp_path):
    server, client = runtime_client(plane, refresh_seconds=0.0)
    with server:
        before = invoke(client, **{"x-amzn-sagemaker-target-variant": "A"}).content
        plane.objects["s3://models/a2.tar.gz"] = plane.objects["s3://models/b.tar.gz"]
        plane.routes["demo"] = Route("demo", "demo-config-2", (Variant("A", 1.0, "s3://models/a2.tar.gz", '"etag-2"'),))
        after = invoke(client, **{"x-amzn-sagemaker-target-variant": "A"}).content
    rows = np.array([[0.5, 1.0, -1.0]])
    assert before == expected_csv(boosters["a"], rows)
    assert after == expected_csv(boosters["b"], rows)


def test_model_environment_sets_the_container_defaults(plane):
    variant = Variant("A", 1.0, "s3://models/a.tar.gz", '"etag-a"', (("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json"),))
    plane.routes["demo"] = Route("demo", "demo-config", (variant,))
    server, client = runtime_client(plane)
    with server:
        response = invoke(client)
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["predictions"]


def test_pickle_artifact_is_a_model_error_that_says_why(plane, tmp_path):
    joblib.dump({"not": "a booster"}, tmp_path / "xgboost-model")
    with tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "xgboost-model", arcname="xgboost-model")
    plane.objects["s3://models/bad.tar.gz"] = (tmp_path / "bad.tar.gz").read_bytes()
    plane.routes["demo"] = Route("demo", "demo-config", (Variant("A", 1.0, "s3://models/bad.tar.gz", '"x"'),))
    server, client = runtime_client(plane)
    with server:
        response = invoke(client)
    assert response.status_code == 424
    assert response.json()["OriginalStatusCode"] == 500
    assert "pickle" in response.json()["OriginalMessage"]


def test_raw_booster_bytes_are_not_an_artifact(plane):
    plane.objects["s3://models/raw"] = booster_bytes(xgb.train({"nthread": 1}, xgb.DMatrix(np.ones((4, 2)), label=[0, 1, 0, 1]), 1))
    plane.routes["demo"] = Route("demo", "demo-config", (Variant("A", 1.0, "s3://models/raw", '"r"'),))
    server, client = runtime_client(plane)
    with server:
        response = invoke(client)
    assert response.status_code == 424
    assert "Unable to load model: not a readable tar archive" in response.json()["OriginalMessage"]


def test_unknown_path_is_404(client):
    response = client.get("/endpoints/demo")
    assert response.status_code == 404 and response.headers["x-amzn-errortype"] == "UnknownOperationException"
    assert json.loads(response.content)["message"] == "Unknown operation"
