"""l2c's container face against the suite's reference of the real container (tests/reference/
container.py: nginx's routing plus the container's Flask app, rebuilt from the container's
sources): the same request gets the same status, Content-Type and bytes, over loopback.

The corpus covers every route and method, each content type the container reads (parameters
included), 0- and 1-based libsvm, bodies with blank lines, every objective the container can
select output for, and the environment it reads. Where l2c differs on purpose (docs/serving.md,
"Deliberate differences"), the difference itself is asserted, never skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import xgboost as xgb
from werkzeug.test import Client

from l2c.artifact import booster_bytes, load_booster_bytes
from l2c.serving.container import ContainerApp
from l2c.serving.engine import ContainerSettings, Engine
from l2c.serving.server import start_in_thread
from tests.reference import container as reference

FEATURES = 4
OBJECTIVES = {
    "reg:squarederror": {},
    "reg:logistic": {},
    "reg:gamma": {},
    "reg:absoluteerror": {},
    "reg:tweedie": {},
    "binary:logistic": {},
    "binary:logitraw": {},
    "binary:hinge": {},
    "multi:softmax": {"num_class": 3},
    "multi:softprob": {"num_class": 3},
    "count:poisson": {},  # not selectable: the container's 500 names it
}


def train(objective: str) -> xgb.Booster:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(120, FEATURES))
    if objective.startswith("multi:"):
        labels = np.arange(120) % 3
    elif objective.startswith(("binary:", "reg:logistic")):
        labels = (features[:, 0] > 0).astype(float)
    else:
        labels = np.abs(features[:, 0] * 2 + features[:, 1]) + 0.5
    params = {"objective": objective, "max_depth": 3, "nthread": 1, **OBJECTIVES[objective]}
    booster = xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=4)
    return load_booster_bytes(booster_bytes(booster)).booster  # as it comes out of an artifact


@pytest.fixture(scope="module")
def boosters() -> dict[str, xgb.Booster]:
    return {objective: train(objective) for objective in OBJECTIVES}


@dataclass
class Pair:
    """One booster served both ways with one environment: l2c over loopback, the reference in-process."""

    ours: httpx.Client
    theirs: Client

    def both(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        headers = headers or {}
        mine = self.ours.request(method, path, content=body, headers=headers)
        theirs = self.theirs.open(path, method=method, data=body, headers=headers)
        return mine, theirs


@pytest.fixture(scope="module")
def serve(boosters):
    servers = []

    def pair(objective: str = "multi:softprob", environ: dict | None = None) -> Pair:
        booster = boosters[objective]
        model = load_booster_bytes(booster_bytes(booster))
        engine = Engine(model, ContainerSettings.from_env(environ or {}))
        server = start_in_thread(ContainerApp(engine))
        servers.append(server)
        return Pair(httpx.Client(base_url=server.url, timeout=60), Client(reference.container_app(booster, environ)))

    yield pair
    for server in servers:
        server.stop()


def canonical(body: bytes, content_type: str) -> bytes:
    """The bytes, except that JSON objects are compared with sorted keys: the container lists
    keys an objective cannot give in set order, which Python randomises per process."""
    if content_type.startswith("application/json") and body:
        if content_type == "application/jsonlines":
            return b"\n".join(json.dumps(json.loads(line), sort_keys=True).encode() for line in body.splitlines())
        return json.dumps(json.loads(body), sort_keys=True).encode()
    return reference.without_xgboost_trace(body.decode("utf-8", "replace")).encode()


def assert_same(mine: httpx.Response, theirs) -> None:
    assert mine.status_code == theirs.status_code, (mine.status_code, mine.content[:300], theirs.data[:300])
    assert mine.headers.get("content-type") == theirs.headers.get("Content-Type")
    content_type = theirs.headers.get("Content-Type", "")
    assert canonical(mine.content, content_type) == canonical(theirs.data, content_type), (
        mine.content[:300],
        theirs.data[:300],
    )
    if "Allow" in theirs.headers:  # Flask lists the methods in set order
        assert set(mine.headers["allow"].split(", ")) == set(theirs.headers["Allow"].split(", "))


# --------------------------------------------------------------------------- routes and methods

PATHS = [
    "/ping",
    "/invocations",
    "/execution-parameters",
    "/",
    "/nope",
    "/pingx",
    "/ping/",
    "/invocations/x",
    "/execution-parametersX",
    "/invocation",
    "/models",
    "/%70ing",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]


@pytest.mark.parametrize("path", PATHS)
def test_every_path_and_method_is_answered_as_by_nginx_and_flask(serve, path):
    pair = serve()
    for method in METHODS:
        body = b"5.1,3.5,1.4,0.2" if method == "POST" else b""
        mine, theirs = pair.both(method, path, body, {"content-type": "text/csv"})
        assert_same(mine, theirs)


def test_other_paths_get_nginxs_empty_json_404_as_octet_stream(serve):
    mine, _ = serve().both("GET", "/metrics")
    assert (mine.status_code, mine.content, mine.headers["content-type"]) == (404, b"{}", "application/octet-stream")


def test_options_is_200_with_the_allowed_methods(serve):
    pair = serve()
    for path, allowed in (("/ping", {"GET", "HEAD", "OPTIONS"}), ("/invocations", {"POST", "OPTIONS"})):
        mine, _ = pair.both("OPTIONS", path)
        assert mine.status_code == 200 and mine.content == b"" and set(mine.headers["allow"].split(", ")) == allowed


# --------------------------------------------------------------------------- bodies

CSV_BODIES = [
    b"5.1,3.5,1.4,0.2",
    b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n",
    b"5.1;3.5;1.4;0.2",
    b"5.1\t3.5",
    b"5.1,,1.4,nan",
    b"5.1,3.5,1.4,0.2,9.9",
    b"5.1,3.5\n1",
    b"a,b,c,d",
    b"1,inf,2,3",
    b"1e39,1,1,1",
    b"  \n5.1,3.5,1.4,0.2\n\n",
    b"5.1,3.5,1.4,0.2\r\n6.7,3.0,5.2,2.3",
    b"\xff\xfe",
    b"",
    b"5",
    b'"1","2"',
]
LIBSVM_BODIES = [
    b"0 1:5.1 2:3.5 3:1.4 4:0.2",  # standard 1-based libsvm
    b"0 0:5.1 1:3.5 2:1.4 3:0.2",  # 0-based
    b"0 2:3.5 4:0.2\n1 1:6.7 3:5.2",  # sparse 1-based: shifted, else the wrong features
    b"0 1:5.1 3:1.4\n0\n\n",  # trailing lines without a feature are no rows
    b"1 1:5.1\n\n1 2:3.0\n0",  # a blank line between rows is a row
    b"0 0:1 4:2",  # 0 present: no shift, so 5 columns: too many
    b"0 1:5.1 5:1",  # 1-based but 5 features
    b"0 1:5.1 1:2.0",
    b"x 1:5.1",
    b"0 a:1",
    b"0 1:a",
    b"0 -1:1",
    b"0 1.5:1",
    b"0 1:1:2",
    b"0 1_0:1",
    b"no features",
    b"0 1:inf",
    b"0\t1:5.1",
    b"0 10000000000000000000000:1",
]
CONTENT_TYPES = [
    "text/csv",
    "csv",
    "TEXT/CSV",
    "text/csv; charset=utf-8",
    "text/csv;charset=UTF-8",
    'text/csv; label_size="1"',
    "text/csv; label_size=1; charset=utf-8",
    "text/csv; label_size=2",
    "text/csv; label_size=1=1",
    "text/csv;",
    "text/libsvm",
    "text/libsvm; charset=utf-8",
    "text/x-libsvm;q=1",
    "Text/LibSVM",
    "libsvm",
    None,
    "",
    "application/json",
    "application/x-parquet",
    "parquet; x=1",
    "label_size=1; text/csv",
    "text/csvx",
    'text/csv; a="b;c"; label_size=2',
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_each_content_type_and_body_is_read_as_the_container_reads_it(serve, content_type):
    pair = serve()
    headers = {"accept": "text/csv"} | ({} if content_type is None else {"content-type": content_type})
    for body in CSV_BODIES + LIBSVM_BODIES:
        mine, theirs = pair.both("POST", "/invocations", body, headers)
        assert_same(mine, theirs)


def test_one_based_libsvm_rows_are_predicted_on_the_right_features(serve, boosters):
    mine, _ = serve().both("POST", "/invocations", b"0 2:3.5 4:0.2", {"content-type": "text/libsvm"})
    row = np.array([[np.nan, 3.5, np.nan, 0.2]])
    expected = boosters["multi:softprob"].predict(xgb.DMatrix(row), validate_features=False)
    assert mine.status_code == 200
    assert np.allclose(np.array(mine.text.split(","), dtype=float), expected[0])


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "text/csv",
        "application/json",
        "application/json; verbose=1",
        "TEXT/CSV",
        "text/html",
        "application/jsonlines, text/csv",
        "",
    ],
)
def test_accept_headers(serve, accept):
    pair = serve()
    headers = {"content-type": "text/csv"} | ({} if accept is None else {"accept": accept})
    assert_same(*pair.both("POST", "/invocations", b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3", headers))


# --------------------------------------------------------------------------- environment

SELECTIONS = [
    "predicted_label",
    "labels,probability",
    "probabilities, raw_scores",
    "raw_score,predicted_score",
    "Predicted_Label,PROBABILITIES,labels,raw_scores,raw_score,probability,predicted_score",
    "predicted_label,predicted_label",
    "nonsense",
]


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_selectable_output_for_every_objective_the_container_lists(serve, objective):
    for selection in SELECTIONS:
        pair = serve(objective, {"SAGEMAKER_INFERENCE_OUTPUT": selection})
        for accept in ("text/csv", "application/json", "application/jsonlines"):
            mine, theirs = pair.both(
                "POST", "/invocations", b"0.1,0.2,0.3,0.4\n-1,2,-3,4", {"content-type": "text/csv", "accept": accept}
            )
            assert_same(mine, theirs)
            if objective != "count:poisson":
                assert mine.status_code == 200


def test_absolute_error_models_give_their_predicted_score(serve, boosters):
    mine, _ = serve("reg:absoluteerror", {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_score"}).both(
        "POST", "/invocations", b"0.1,0.2,0.3,0.4", {"content-type": "text/csv", "accept": "application/json"}
    )
    expected = boosters["reg:absoluteerror"].predict(xgb.DMatrix(np.array([[0.1, 0.2, 0.3, 0.4]])))
    assert mine.status_code == 200
    assert mine.json() == {"predictions": [{"predicted_score": float(expected[0])}]}


def test_default_accept_comes_from_the_environment(serve):
    pair = serve(environ={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"})
    assert_same(*pair.both("POST", "/invocations", b"5.1,3.5,1.4,0.2", {"content-type": "text/csv", "accept": "*/*"}))


def test_max_content_length_has_no_ceiling(serve):
    limit = 24 * 1024 * 1024
    pair = serve(environ={"MAX_CONTENT_LENGTH": str(limit)})
    mine, theirs = pair.both("GET", "/execution-parameters")
    assert_same(mine, theirs)
    assert mine.json()["MaxPayloadInMB"] == 24
    # Over the 20 MiB older images capped at; padding (which both strip) keeps the parse cheap.
    body = b"5.1,3.5,1.4,0.2" + b" " * (21 * 1024 * 1024)
    mine, theirs = pair.both("POST", "/invocations", body, {"content-type": "text/csv"})
    assert mine.status_code == theirs.status_code == 200
    assert mine.content == theirs.data
    mine, theirs = pair.both("POST", "/invocations", body + b" " * (3 * 1024 * 1024), {"content-type": "text/csv"})
    assert mine.status_code == theirs.status_code == 413


# --------------------------------------------------------------------------- deliberate differences


def test_jsonlines_without_selected_output_is_answered_where_the_container_fails(serve):
    mine, theirs = serve().both(
        "POST", "/invocations", b"5.1,3.5,1.4,0.2", {"content-type": "text/csv", "accept": "application/jsonlines"}
    )
    assert theirs.status_code == 500  # its encoders have no jsonlines writer
    assert mine.status_code == 200 and json.loads(mine.content)["score"]


def test_xgboost_errors_lose_only_their_timestamp_source_path_and_stack_trace(serve):
    mine, theirs = serve().both("POST", "/invocations", b"5.1,3.5,1.4,0.2,9.9", {"content-type": "text/csv"})
    assert theirs.status_code == mine.status_code == 400
    assert b"Stack trace" in theirs.data and b".cc:" in theirs.data
    assert mine.text == reference.without_xgboost_trace(theirs.data.decode())
    assert "Stack trace" not in mine.text and ".cc:" not in mine.text
