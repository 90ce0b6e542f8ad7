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
        "demo",
        "demo-config",
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
    assert body["message"].startswith(
        f'Received client error (415) from primary with message "{original}". See https://eu-west-1.'
    )
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
    variant = Variant(
        "A", 1.0, "s3://models/a.tar.gz", '"etag-a"', (("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json"),)
    )
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
    plane.objects["s3://models/raw"] = booster_bytes(
        xgb.train({"nthread": 1}, xgb.DMatrix(np.ones((4, 2)), label=[0, 1, 0, 1]), 1)
    )
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


# --------------------------------------------------------------------------- async, stream, authorization, logs


def test_payload_part_is_framed_as_botocore_reads_an_event_stream():
    from botocore.eventstream import EventStreamBuffer

    from l2c.serving.runtime_api import payload_part

    buffer = EventStreamBuffer()
    buffer.add_data(payload_part(b"0.1,0.2,0.7\n") + payload_part(b""))
    messages = list(buffer)
    assert [m.payload for m in messages] == [b"0.1,0.2,0.7\n", b""]
    assert messages[0].headers == {
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }


def test_response_stream_path_carries_the_answer_and_the_variant(client, boosters):
    response = client.post(
        "/endpoints/demo/invocations-response-stream",
        content=b"0.5,1.0,-1.0",
        headers={"content-type": "text/csv", "x-amzn-sagemaker-target-variant": "A"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert response.headers["x-amzn-sagemaker-content-type"].startswith("text/csv")
    assert response.headers["x-amzn-invoked-production-variant"] == "A"
    assert expected_csv(boosters["a"], np.array([[0.5, 1.0, -1.0]])) in response.content


def test_async_path_on_a_real_time_endpoint_is_a_validation_error(client):
    response = client.post("/endpoints/demo/async-invocations", headers={"x-amzn-sagemaker-inputlocation": "s3://b/k"})
    assert response.status_code == 400 and response.headers["x-amzn-errortype"] == "ValidationError"
    assert "not an asynchronous inference endpoint" in response.json()["message"]


class Count:
    value = 0


class StandInAuthorizer:
    """LocalAuthorizer's interface; denies one endpoint to one temporary key."""

    def __init__(self):
        self.asked = []

    def cached(self, key, action, resource):
        return {"allowed": True} if not key.startswith("ASIA") else None

    def decide(self, key, action, resource):
        self.asked.append((key, action, resource))
        return {
            "allowed": not resource.endswith(":endpoint/demo"),
            "principal": "arn:aws:sts::111122223333:assumed-role/r/s",
        }


def signed(key: str) -> dict:
    return {
        "authorization": f"AWS4-HMAC-SHA256 Credential={key}/20261202/eu-west-1/sagemaker/aws4_request, SignedHeaders=host"
    }


def test_a_temporary_key_the_policy_does_not_allow_is_access_denied(plane):
    app = RuntimeApp(control_plane=plane, authorizer=StandInAuthorizer(), rng=random.Random(0))
    with start_in_thread(app) as server, httpx.Client(base_url=server.url) as client:
        denied = invoke(client, **signed("ASIAEXAMPLE"))
        allowed = invoke(client, **signed("testing"))
    assert denied.status_code == 400 and denied.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert denied.json()["message"] == (
        "User: arn:aws:sts::111122223333:assumed-role/r/s is not authorized to perform: sagemaker:InvokeEndpoint on "
        "resource: arn:aws:sagemaker:eu-west-1:111122223333:endpoint/demo because no identity-based policy allows the "
        "sagemaker:InvokeEndpoint action"
    )
    assert allowed.status_code == 200
    assert app.authorizer.asked == [
        ("ASIAEXAMPLE", "sagemaker:InvokeEndpoint", "arn:aws:sagemaker:eu-west-1:111122223333:endpoint/demo")
    ]


def test_the_local_authorizer_remembers_answers_until_the_control_plane_changes(monkeypatch):
    from l2c.serving import runtime_api

    count = Count()
    authorizer = runtime_api.LocalAuthorizer("http://127.0.0.1:1", count)
    assert authorizer.cached("testing", "a", "r") == {"allowed": True, "principal": None}  # the account's own key
    asked = []

    class Answer(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(request, timeout):
        asked.append(json.loads(request.data))
        return Answer(b'{"allowed": false, "principal": "p"}')

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    assert authorizer.cached("ASIAX", "a", "r") is None
    assert authorizer.decide("ASIAX", "a", "r") == {"allowed": False, "principal": "p"}
    assert authorizer.cached("ASIAX", "a", "r") == {"allowed": False, "principal": "p"}
    count.value += 1  # moto changed: ask again
    assert authorizer.cached("ASIAX", "a", "r") is None
    assert asked == [{"access_key": "ASIAX", "action": "a", "resource": "r"}]


def test_a_model_error_is_one_line_of_the_container_log(plane):
    lines = []
    app = RuntimeApp(control_plane=plane, container_log=lambda *args: lines.append(args), rng=random.Random(0))
    with start_in_thread(app) as server, httpx.Client(base_url=server.url) as client:
        response = invoke(client, body=b"a,b,c", **{"x-amzn-sagemaker-target-variant": "B"})
    assert response.status_code == 424
    assert (
        len(lines) == 1 and lines[0][:2] == ("demo", "B") and lines[0][2].startswith("Model error (415): Loading csv")
    )


def test_an_async_endpoint_takes_no_real_time_invocation(plane):
    plane.routes["demo"] = Route("demo", "demo-config", plane.routes["demo"].variants, asynchronous=True)
    server, client = runtime_client(plane)
    with server:
        response = invoke(client)
        stream = client.post(
            "/endpoints/demo/invocations-response-stream", content=b"1,2,3", headers={"content-type": "text/csv"}
        )
    for answer in (response, stream):
        assert answer.status_code == 400 and answer.headers["x-amzn-errortype"] == "ValidationError"
        assert "use InvokeEndpointAsync" in answer.json()["message"]
