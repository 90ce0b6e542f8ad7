"""The container face over loopback: every documented case, compared with the bytes the
container's own code (DMatrix predict, np.savetxt, json.dumps) gives for the same model."""

import asyncio
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import joblib
import numpy as np
import pytest
import xgboost as xgb
from scipy.sparse import csr_matrix
from sklearn.datasets import load_iris

from l2c.artifact import ArtifactError, load_artifact, write_tarball
from l2c.serving.engine import ContainerSettings, Engine
from l2c.serving.server import serve_command, start_container_in_thread

IRIS_ROW = "5.1,3.5,1.4,0.2"
IRIS_ROWS = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n5.9,3.0,4.2,1.5"


@pytest.fixture(scope="session")
def iris_tarball(tmp_path_factory):
    features, labels = load_iris(return_X_y=True)
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3, objective="multi:softprob", n_jobs=1)
    model.fit(features, labels)
    return write_tarball(model.get_booster(), tmp_path_factory.mktemp("iris") / "model.tar.gz")


@pytest.fixture(scope="session")
def house_tarball(tmp_path_factory):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 13))
    target = features[:, 0] * 3 + features[:, 5] ** 2 + 20
    model = xgb.XGBRegressor(n_estimators=8, max_depth=3, n_jobs=1).fit(features, target)
    return write_tarball(model.get_booster(), tmp_path_factory.mktemp("house") / "model.tar.gz")


def container_predict(tarball, rows) -> np.ndarray:
    """What the container computes: a DMatrix (missing = NaN) and Booster.predict."""
    return load_artifact(tarball).booster.predict(xgb.DMatrix(rows), validate_features=False)


def savetxt(predictions) -> bytes:
    stream = io.StringIO()
    np.savetxt(stream, predictions.tolist(), delimiter=",", fmt="%s")
    return stream.getvalue().encode()


def rows_of(text: str) -> np.ndarray:
    return np.array([[float(v) if v else np.nan for v in line.split(",")] for line in text.split("\n")])


@pytest.fixture(scope="module")
def iris_server(iris_tarball):
    with start_container_in_thread(iris_tarball, settings=ContainerSettings()) as server:
        yield httpx.Client(base_url=server.url, timeout=30)


@pytest.fixture(scope="module")
def house_server(house_tarball):
    with start_container_in_thread(house_tarball, settings=ContainerSettings()) as server:
        yield httpx.Client(base_url=server.url, timeout=30)


def invoke(client, body, content_type="text/csv", accept=None):
    headers = {}
    if content_type is not None:
        headers["content-type"] = content_type
    if accept is not None:
        headers["accept"] = accept
    return client.post("/invocations", content=body if isinstance(body, bytes) else body.encode(), headers=headers)


# --------------------------------------------------------------------------- routes


def test_ping_is_200_and_empty(iris_server):
    response = iris_server.get("/ping")
    assert (response.status_code, response.content) == (200, b"")


def test_unknown_path_is_404_and_wrong_method_405(iris_server):
    assert iris_server.get("/nope").status_code == 404
    assert iris_server.get("/invocations").status_code == 405


def test_execution_parameters(iris_server):
    parameters = iris_server.get("/execution-parameters").json()
    assert parameters["MaxPayloadInMB"] == 6 and parameters["BatchStrategy"] == "MULTI_RECORD"


# --------------------------------------------------------------------------- outputs


def test_softprob_csv_single_row(iris_server, iris_tarball):
    response = invoke(iris_server, IRIS_ROW)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content == savetxt(container_predict(iris_tarball, rows_of(IRIS_ROW)))
    assert response.content.count(b",") == 2  # p0,p1,p2


def test_softprob_csv_many_rows_default_and_star_accept(iris_server, iris_tarball):
    expected = savetxt(container_predict(iris_tarball, rows_of(IRIS_ROWS)))
    assert invoke(iris_server, IRIS_ROWS).content == expected
    assert invoke(iris_server, IRIS_ROWS, accept="*/*").content == expected
    assert invoke(iris_server, IRIS_ROWS, content_type="csv", accept="text/csv").content == expected


def test_softprob_json(iris_server, iris_tarball):
    response = invoke(iris_server, IRIS_ROWS, accept="application/json")
    predictions = container_predict(iris_tarball, rows_of(IRIS_ROWS)).tolist()
    assert response.headers["content-type"] == "application/json"
    assert response.content == json.dumps({"predictions": [{"score": p} for p in predictions]}).encode()


def test_regression_csv_json_jsonlines(house_server, house_tarball):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(5, 13))
    text = "\n".join(",".join(repr(v) for v in row) for row in rows.tolist())
    predictions = container_predict(house_tarball, rows)
    assert invoke(house_server, text).content == savetxt(predictions)
    assert (
        invoke(house_server, text, accept="application/json").content
        == json.dumps({"predictions": [{"score": p} for p in predictions.tolist()]}).encode()
    )
    jsonlines = invoke(house_server, text, accept="application/jsonlines")
    assert jsonlines.headers["content-type"] == "application/jsonlines"
    assert jsonlines.content == b"".join(json.dumps({"score": p}).encode() + b"\n" for p in predictions.tolist())


@pytest.mark.parametrize("delimiter", [";", " ", "\t"])
def test_sniffed_delimiters(iris_server, iris_tarball, delimiter):
    response = invoke(iris_server, IRIS_ROWS.replace(",", delimiter))
    assert response.content == savetxt(container_predict(iris_tarball, rows_of(IRIS_ROWS)))


def test_empty_fields_and_nan_are_missing_values(iris_server, iris_tarball):
    text = "5.1,,1.4,nan\n,,,"
    assert invoke(iris_server, text).content == savetxt(
        container_predict(iris_tarball, rows_of(text.replace("nan", "")))
    )


def test_fewer_columns_are_predicted_as_missing_like_the_container(iris_server, iris_tarball):
    response = invoke(iris_server, "5.1,3.5,1.4")
    assert response.status_code == 200
    assert response.content == savetxt(container_predict(iris_tarball, np.array([[5.1, 3.5, 1.4]])))


@pytest.mark.parametrize("content_type", [None, "text/libsvm", "text/x-libsvm", "libsvm"])
def test_libsvm(iris_server, iris_tarball, content_type):
    body = "0 0:5.1 1:3.5 2:1.4 3:0.2\n2 0:6.7 2:5.2"
    matrix = csr_matrix(
        (np.array([5.1, 3.5, 1.4, 0.2, 6.7, 5.2]), (np.array([0, 0, 0, 0, 1, 1]), np.array([0, 1, 2, 3, 0, 2])))
    )
    response = invoke(iris_server, body, content_type=content_type)
    assert response.content == savetxt(container_predict(iris_tarball, matrix))


def test_large_csv_takes_the_fast_path_and_gives_the_same_bytes(iris_server, iris_tarball):
    # 9,000 rows: pandas parses it, a worker thread answers it, every core predicts it
    rng = np.random.default_rng(5)
    rows = np.round(rng.uniform(0, 8, size=(9000, 4)), 1)
    text = "\n".join(",".join(repr(v) for v in row) for row in rows.tolist())
    response = invoke(iris_server, text + "\n")
    assert response.content == savetxt(container_predict(iris_tarball, rows))


# --------------------------------------------------------------------------- selectable output


def test_selectable_output_softprob(iris_tarball):
    settings = ContainerSettings(inference_output=("predicted_label", "probabilities", "foo"))
    predictions = container_predict(iris_tarball, rows_of(IRIS_ROWS))
    with start_container_in_thread(iris_tarball, settings=settings) as server:
        client = httpx.Client(base_url=server.url)
        csv_response = invoke(client, IRIS_ROWS)
        json_response = invoke(client, IRIS_ROWS, accept="application/json")
    expected_rows = [
        {"predicted_label": int(np.argmax(p)), "probabilities": p.tolist(), "foo": float("nan")} for p in predictions
    ]
    assert (
        csv_response.content
        == "\n".join(f'{row["predicted_label"]},"{row["probabilities"]}",nan' for row in expected_rows).encode()
    )
    assert json_response.content == json.dumps({"predictions": expected_rows}).encode()


def test_selectable_output_regression_and_default_accept(house_tarball):
    settings = ContainerSettings(inference_output=("predicted_score",), default_accept="application/jsonlines")
    rows = np.ones((2, 13))
    with start_container_in_thread(house_tarball, settings=settings) as server:
        response = invoke(httpx.Client(base_url=server.url), "\n".join(["1," * 12 + "1"] * 2))
    predictions = container_predict(house_tarball, rows).tolist()
    assert response.content == b"".join(json.dumps({"predicted_score": p}).encode() + b"\n" for p in predictions)


def test_settings_from_environment():
    settings = ContainerSettings.from_env(
        {
            "SAGEMAKER_INFERENCE_OUTPUT": "Predicted_Label, labels",
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json",
            "MAX_CONTENT_LENGTH": str(100 * 1024 * 1024),
        }
    )
    assert settings.inference_output == ("predicted_label", "labels")
    assert settings.default_accept == "application/json"
    assert settings.max_content_length == 100 * 1024 * 1024  # taken as it is: no ceiling in the 3.2 line
    with pytest.raises(ValueError):
        ContainerSettings.from_env({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/plain"})


# --------------------------------------------------------------------------- errors


def test_empty_body_is_204(iris_server):
    response = invoke(iris_server, b"")
    assert (response.status_code, response.content) == (204, b"")


def test_json_body_is_415_with_the_containers_message(iris_server):
    response = invoke(iris_server, '{"data": "5.1,3.5,1.4,0.2"}', content_type="application/json")
    assert response.status_code == 415
    assert response.text.startswith("application/json is not an accepted ContentType: csv, libsvm, parquet,")


def test_non_number_is_415(iris_server):
    response = invoke(iris_server, "5.1,setosa,1.4,0.2")
    assert response.status_code == 415
    assert response.text.startswith("Loading csv data failed with Exception, please ensure data is in csv format:")


def test_parquet_is_415_not_supported(iris_server):
    response = invoke(iris_server, "x", content_type="application/x-parquet")
    assert (response.status_code, response.text) == (415, "Content-type application/x-parquet is not supported.")


def test_bad_accept_is_406_after_a_good_body(iris_server):
    assert invoke(iris_server, IRIS_ROW, accept="text/html").status_code == 406
    assert invoke(iris_server, "bad", accept="text/html").status_code == 415  # the body is judged first


def test_too_many_columns_is_400(iris_server):
    response = invoke(iris_server, "1,2,3,4,5")
    assert response.status_code == 400
    assert response.text.startswith("Unable to evaluate payload provided: ")
    assert "(4 vs. 5)" in response.text


def test_body_over_max_content_length_is_413(iris_tarball):
    body = (IRIS_ROW + "\n") * 100
    with start_container_in_thread(
        iris_tarball, settings=ContainerSettings(max_content_length=len(body) - 1)
    ) as server:
        client = httpx.Client(base_url=server.url)
        too_large = invoke(client, body)
        chunked = client.post("/invocations", content=iter([body.encode()]), headers={"content-type": "text/csv"})
        just_fits = invoke(client, body[:-1])
    assert too_large.status_code == 413 and b"Request Entity Too Large" in too_large.content
    assert chunked.status_code == 413
    assert just_fits.status_code == 200


def test_error_bodies_never_carry_a_stack_trace(iris_server):
    for body, content_type in [
        ("1,2,3,4,5", "text/csv"),
        ("1,inf,2,3", "text/csv"),
        ("0 x:1", "text/libsvm"),
        (b"\xff\xfe", "text/csv"),
    ]:
        response = invoke(iris_server, body, content_type=content_type)
        assert 400 <= response.status_code < 500
        assert "Traceback" not in response.text and "[bt]" not in response.text and "/__w/" not in response.text


def test_pickle_artifact_is_refused_with_the_reason(tmp_path, capsys):
    model = xgb.XGBClassifier(n_estimators=2, max_depth=2, n_jobs=1).fit(*load_iris(return_X_y=True))
    joblib.dump(model, tmp_path / "xgboost-model")
    with pytest.raises(ArtifactError, match="pickle"):
        load_artifact(tmp_path / "xgboost-model")
    assert serve_command(str(tmp_path / "xgboost-model"), port=0) == 1
    assert "pickle" in capsys.readouterr().out


# --------------------------------------------------------------------------- concurrency


def test_many_parallel_clients_get_their_own_right_answers(iris_server, iris_tarball, house_server):
    rng = np.random.default_rng(11)
    cases = [np.round(rng.uniform(0, 8, size=(n, 4)), 2) for n in (1, 3, 50, 2000)]
    expected = [savetxt(container_predict(iris_tarball, rows)) for rows in cases]
    bodies = ["\n".join(",".join(repr(v) for v in row) for row in rows.tolist()) for rows in cases]
    failures = []
    lock = threading.Lock()

    def client_loop(seed: int) -> None:
        client = httpx.Client(base_url=str(iris_server.base_url), timeout=30)
        order = np.random.default_rng(seed).integers(0, len(cases), 25)
        for index in order.tolist():
            response = invoke(client, bodies[index])
            if response.status_code != 200 or response.content != expected[index]:
                with lock:
                    failures.append((index, response.status_code))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(client_loop, range(16)))
    assert failures == []


# --------------------------------------------------------------------------- batching and the CLI


def test_requests_of_one_loop_turn_are_predicted_together_with_unchanged_answers(iris_tarball, monkeypatch):
    engine = Engine(load_artifact(iris_tarball), ContainerSettings())
    calls = []
    predict = engine.one_thread.predict
    monkeypatch.setattr(engine.one_thread, "predict", lambda rows: calls.append(len(rows)) or predict(rows))
    rng = np.random.default_rng(3)
    bodies = [",".join(repr(v) for v in rng.uniform(0, 8, 4).round(2).tolist()) for _ in range(6)]
    bodies += ["1,2,3,4,5", "5.1,x,1,1", "", "5.1,3.5\n6.0,2.2"]
    accepts = [None, "application/json", "text/html", None, None, None, None, None, None, "application/jsonlines"]
    expected = [engine.invoke(body.encode(), "text/csv", accept) for body, accept in zip(bodies, accepts)]
    assert [reply.status for reply in expected] == [200, 200, 406, 200, 200, 200, 400, 415, 204, 200]
    calls.clear()

    async def all_at_once():
        return await asyncio.gather(*(engine.ainvoke(b.encode(), "text/csv", a) for b, a in zip(bodies, accepts)))

    assert asyncio.run(all_at_once()) == expected
    assert calls == [8]  # one prediction for the 6 + 2 rows that parsed and fit


def test_cli_serve_reports_a_missing_model_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from l2c.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing-here")])
    assert result.exit_code == 1
    assert "no artifact at" in result.output and "Traceback" not in result.output
