"""Models trained outside l2c, imported with `l2c import`, deployed unchanged and called through
the API of the session's local cloud: the answers are the in-memory models' predictions."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from l2c.cloud import inventory, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.datasets import load_house_prices
from l2c.model_import import import_model

IRIS_LABELS = ["setosa", "versicolor", "virginica"]
ROWS = 10


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The tutorial's joblib classifier and a .ubj house-price regressor, imported, with the
    in-memory models and rows they were not trained on."""
    folder = tmp_path_factory.mktemp("imported")
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=100)
    classifier = xgb.XGBClassifier(n_estimators=10, max_depth=5, learning_rate=0.2).fit(x_train, y_train)
    joblib.dump(classifier, folder / "model.joblib")
    houses = load_house_prices()
    hx, hy = houses.features.to_numpy(), houses.target_codes
    regressor = xgb.XGBRegressor(n_estimators=100, max_depth=3).fit(hx[100:], hy[100:])
    regressor.get_booster().save_model(folder / "model.ubj")
    models = folder / "models"
    quiet = lambda _line: None  # noqa: E731
    return {
        "iris-own": (
            import_model(
                folder / "model.joblib", "iris-own", models, trust_pickle=True, class_labels=IRIS_LABELS, on_note=quiet
            ),
            x_test[:ROWS],
            classifier.predict_proba(x_test[:ROWS]),
        ),
        "house-own": (
            import_model(folder / "model.ubj", "house-own", models, feature_names=houses.feature_names, on_note=quiet),
            hx[:ROWS],
            regressor.predict(hx[:ROWS]),
        ),
    }


@pytest.fixture(scope="module")
def deployed(cloud_session, imported):
    deployments = {}
    try:
        for name, (model_dir, _, _) in imported.items():
            deployments[name] = stack.deploy(name, model_dir, session=cloud_session, reporter=Reporter())
        yield deployments
    finally:
        for name in deployments:
            teardown.destroy(name, session=cloud_session, reporter=Reporter())


def call(deployment, rows: np.ndarray) -> dict:
    body = {"data": "\n".join(",".join(repr(float(v)) for v in row) for row in rows)}
    response = httpx.post(deployment.url, json=body, headers={"x-api-key": deployment.api_key}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_imported_joblib_classifier_answers_its_in_memory_probabilities(deployed, imported):
    _, rows, expected = imported["iris-own"]
    predictions = call(deployed["iris-own"], rows)["predictions"]
    assert len(predictions) == ROWS
    got = np.array([list(p["probabilities"].values()) for p in predictions])
    assert all(list(p["probabilities"]) == IRIS_LABELS for p in predictions)
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert [p["label"] for p in predictions] == [IRIS_LABELS[i] for i in expected.argmax(axis=1)]


def test_the_imported_ubj_regressor_answers_its_in_memory_values(deployed, imported):
    _, rows, expected = imported["house-own"]
    predictions = call(deployed["house-own"], rows)["predictions"]
    got = np.array([p["value"] for p in predictions], dtype=np.float64)
    # float32 arithmetic on both sides: equal to float32 precision
    assert np.allclose(got, expected.astype(np.float64), rtol=1e-6, atol=0)


def test_the_api_takes_the_imported_feature_names(deployed, imported):
    _, rows, expected = imported["house-own"]
    names = load_house_prices().feature_names
    response = httpx.post(
        deployed["house-own"].url,
        json={"features": dict(zip(names, map(float, rows[0])))},
        headers={"x-api-key": deployed["house-own"].api_key},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == pytest.approx(float(expected[0]), rel=1e-6)


def test_the_cli_deploys_and_invokes_an_imported_model_by_name(deployed, imported):
    # `l2c deploy NAME` reads models/NAME from where it runs, as after `l2c import` there.
    model_dir, rows, expected = imported["iris-own"]
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "l2c.cli", *args],
        cwd=model_dir.parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    deploy = run("deploy", "iris-own")
    assert deploy.returncode == 0, deploy.stderr
    invoke = run("invoke", "iris-own", ",".join(repr(float(v)) for v in rows[0]), "--api")
    assert invoke.returncode == 0 and "HTTP 200" in invoke.stdout, invoke.stderr
    answer = json.loads(invoke.stdout.split("\n", 1)[1])
    assert np.allclose(list(answer["predictions"][0]["probabilities"].values()), expected[0], rtol=1e-6, atol=1e-7)


def test_destroy_leaves_nothing_of_the_imported_stacks(deployed, cloud_session):
    for name in list(deployed):
        report = teardown.destroy(name, session=cloud_session, reporter=Reporter())
        assert report.stacks == [name]
        # Other test modules' stacks (and the shared bucket and API they use) may remain.
        assert [resource for resource in report.remaining if resource.stack == name] == []
        assert name not in {resource.stack for resource in inventory.status(cloud_session).resources}
        del deployed[name]  # destroyed: the fixture has nothing left to clean
