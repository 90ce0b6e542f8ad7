"""`l2c import`: a model trained elsewhere becomes a model folder `l2c check` and `l2c deploy` take.

The joblib file is made the tutorial's way (iris, train_test_split, XGBClassifier, joblib.dump);
the regressor is a native .ubj booster trained on the house prices.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from l2c import artifact, checks
from l2c.datasets import load_house_prices
from l2c.model_import import ImportRefused, detect_format, import_model

IRIS_LABELS = ["setosa", "versicolor", "virginica"]
# A UBJSON booster (and the snapshot a pickle holds) ends with "version": [3, 2, 0] as a counted
# int8 array; swapping the two ints fakes a booster saved by XGBoost 1.7.
VERSION_3_2 = b"version[#L\x00\x00\x00\x00\x00\x00\x00\x03i\x03i\x02"
VERSION_1_7 = b"version[#L\x00\x00\x00\x00\x00\x00\x00\x03i\x01i\x07"


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def tutorial_classifier(tmp_path_factory):
    """The tutorial's step 2, as its notebook runs it."""
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=100)
    model = xgb.XGBClassifier(n_estimators=10, max_depth=5, learning_rate=0.2).fit(x_train, y_train)
    folder = tmp_path_factory.mktemp("tutorial")
    joblib.dump(model, folder / "model.joblib")
    np.savetxt(folder / "test.csv", x_test, delimiter=",")
    return model, folder / "model.joblib", x_test, folder / "test.csv"


@pytest.fixture(scope="module")
def ubj_regressor(tmp_path_factory):
    data = load_house_prices()
    x = data.features.to_numpy()
    model = xgb.XGBRegressor(n_estimators=50, max_depth=3).fit(x, data.target_codes)
    path = tmp_path_factory.mktemp("regressor") / "model.ubj"
    model.get_booster().save_model(path)
    return model, path, x, data.feature_names


def booster_of(model_dir) -> artifact.LoadedModel:
    return artifact.load_artifact(model_dir)


# --------------------------------------------------------------------------- what it imports


def test_the_tutorials_joblib_classifier_predicts_as_in_memory(tutorial_classifier, tmp_path):
    model, path, x_test, test_csv = tutorial_classifier
    folder = import_model(
        path, "iris-own", tmp_path, trust_pickle=True, class_labels=IRIS_LABELS, sample_csv=test_csv, on_note=quiet
    )
    served = artifact.predict_like_container(booster_of(folder), x_test)
    assert np.allclose(served, model.predict_proba(x_test), rtol=0, atol=1e-6)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["task"] == "classification" and card["objective"] == "multi:softprob"
    assert card["class_labels"] == IRIS_LABELS
    assert card["feature_names"] == ["f0", "f1", "f2", "f3"]
    assert card["imported_from"]["format"] == "joblib"
    assert np.allclose(np.loadtxt(folder / card["sample_file"], delimiter=","), x_test[:5])
    assert checks.check_model_dir(folder).sample_rows == 5


def test_a_pickle_is_refused_without_trust_and_nothing_is_written(tutorial_classifier, tmp_path):
    _, path, _, _ = tutorial_classifier
    with pytest.raises(ImportRefused, match="runs whatever code it holds.*--trust-pickle"):
        import_model(path, "iris-own", tmp_path, on_note=quiet)
    assert not any(tmp_path.iterdir())


def test_trusting_a_pickle_warns_why(tutorial_classifier, tmp_path):
    _, path, _, _ = tutorial_classifier
    notes = []
    import_model(path, "iris-own", tmp_path, trust_pickle=True, on_note=notes.append)
    assert any(note.startswith("warning:") and "runs any code" in note for note in notes)
    assert any("f0..f3" in note for note in notes)  # no names in the file: said so
    assert any("zeros" in note for note in notes)  # no sample rows: said so


def test_a_compressed_joblib_dump_is_read_as_a_pickle(tutorial_classifier, tmp_path):
    model, _, x_test, _ = tutorial_classifier
    for compress in ("zlib", "gzip"):
        path = tmp_path / f"model-{compress}.joblib"
        joblib.dump(model, path, compress=(compress, 3))
        assert detect_format(path.read_bytes()) == "pickle"
        folder = import_model(path, f"iris-{compress}", tmp_path / "models", trust_pickle=True, on_note=quiet)
        assert np.allclose(
            artifact.predict_like_container(booster_of(folder), x_test), model.predict_proba(x_test), atol=1e-6
        )


def test_a_ubj_regressor_is_imported_with_its_names(ubj_regressor, tmp_path):
    model, path, x, names = ubj_regressor
    sample = tmp_path / "rows.csv"
    sample.write_text(
        ",".join(names) + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x[:20]) + "\n"
    )
    folder = import_model(path, "house-own", tmp_path, feature_names=names, sample_csv=sample, on_note=quiet)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["task"] == "regression" and card["class_labels"] is None
    assert card["feature_names"] == names and card["imported_from"]["format"] == "ubj"
    assert card["feature_ranges"][names[0]] == [float(x[:20, 0].min()), float(x[:20, 0].max())]
    served = artifact.predict_like_container(booster_of(folder), x)
    assert np.allclose(served, model.predict(x), rtol=1e-6, atol=1e-5)


def test_a_json_booster_and_a_tarball_made_elsewhere_are_imported(ubj_regressor, tmp_path):
    model, path, x, _ = ubj_regressor
    booster = xgb.Booster(model_file=str(path))
    as_json = tmp_path / "model.json"
    booster.save_model(as_json)
    tarball = artifact.write_tarball(booster, tmp_path / "elsewhere" / "model.tar.gz")
    for source, kind in ((as_json, "json"), (tarball, "model.tar.gz")):
        folder = import_model(
            source, f"house-{kind[:4].strip('.')}", tmp_path / "models", task="regression", on_note=quiet
        )
        assert json.loads((folder / "model_card.json").read_text())["imported_from"]["format"] == kind
        assert np.allclose(artifact.predict_like_container(booster_of(folder), x), model.predict(x), atol=1e-5)


def test_feature_names_in_the_booster_are_read(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(np.random.default_rng(0).random((40, 3)), columns=["width", "height", "depth"])
    model = xgb.XGBClassifier(n_estimators=3).fit(frame, np.arange(40) % 2)
    model.save_model(tmp_path / "binary.json")
    folder = import_model(tmp_path / "binary.json", "boxes", tmp_path / "models", on_note=quiet)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["feature_names"] == ["width", "height", "depth"]
    assert card["objective"] == "binary:logistic" and card["class_labels"] == ["0", "1"]


# --------------------------------------------------------------------------- what it refuses


def test_a_scikit_learn_pipeline_is_refused(tmp_path):
    x, y = load_iris(return_X_y=True)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", xgb.XGBClassifier(n_estimators=2))]).fit(x, y)
    joblib.dump(pipeline, tmp_path / "pipeline.joblib")
    with pytest.raises(ImportRefused, match="Pipeline.*XGBoost boosters only.*scikit-learn container"):
        import_model(tmp_path / "pipeline.joblib", "pipe", tmp_path / "models", trust_pickle=True, on_note=quiet)


def test_a_random_forest_is_refused(tmp_path):
    x, y = load_iris(return_X_y=True)
    joblib.dump(RandomForestClassifier(n_estimators=2).fit(x, y), tmp_path / "forest.joblib")
    with pytest.raises(
        ImportRefused, match="RandomForestClassifier.*XGBClassifier, XGBRegressor.*scikit-learn container"
    ):
        import_model(tmp_path / "forest.joblib", "forest", tmp_path / "models", trust_pickle=True, on_note=quiet)


def test_a_softmax_classifier_is_refused(tmp_path):
    x, y = load_iris(return_X_y=True)
    xgb.XGBClassifier(objective="multi:softmax", n_estimators=2).fit(x, y).save_model(tmp_path / "softmax.ubj")
    with pytest.raises(ImportRefused, match="multi:softmax.*class indices.*multi:softprob"):
        import_model(tmp_path / "softmax.ubj", "soft", tmp_path / "models", on_note=quiet)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"sepal_length,sepal_width\n5.1,3.5\n", "not a model"),
        (b"PK\x03\x04" + b"\x00" * 40, "ZIP archive"),
        (b"\x1f\x8b" + b"\x00" * 40, "cannot be decompressed"),
    ],
)
def test_a_file_that_is_not_a_model_is_refused(tmp_path, content, message):
    (tmp_path / "model.joblib").write_bytes(content)
    with pytest.raises(ImportRefused, match=message):
        import_model(tmp_path / "model.joblib", "notes", tmp_path / "models", trust_pickle=True, on_note=quiet)


def test_a_booster_saved_by_an_older_xgboost_is_refused(ubj_regressor, tmp_path):
    _, path, _, _ = ubj_regressor
    old = path.read_bytes().replace(VERSION_3_2, VERSION_1_7)
    assert old != path.read_bytes()
    (tmp_path / "old.ubj").write_bytes(old)
    with pytest.raises(ImportRefused, match=r"XGBoost 1\.7\.0.*retrain/resave with xgboost==3\.2\.0"):
        import_model(tmp_path / "old.ubj", "old", tmp_path / "models", on_note=quiet)


def test_a_pickled_estimator_from_an_older_xgboost_is_refused(tutorial_classifier, tmp_path):
    model, _, _, _ = tutorial_classifier
    dumped = pickle.dumps(model)
    assert dumped.count(VERSION_3_2) >= 1  # the snapshot records it in its config and its model
    (tmp_path / "old.pkl").write_bytes(dumped.replace(VERSION_3_2, VERSION_1_7))
    with pytest.raises(ImportRefused, match=r"XGBoost 1\.7\.0.*retrain/resave with xgboost==3\.2\.0"):
        import_model(tmp_path / "old.pkl", "old", tmp_path / "models", trust_pickle=True, on_note=quiet)


@pytest.mark.parametrize("name", ["Iris", "my_model", "x", "9lives", "a" * 33])
def test_a_name_that_cannot_name_a_stack_is_refused(tutorial_classifier, tmp_path, name):
    _, path, _, _ = tutorial_classifier
    with pytest.raises(ImportRefused, match="cannot name a stack"):
        import_model(path, name, tmp_path, trust_pickle=True, on_note=quiet)


def test_options_that_contradict_the_model_are_refused(tutorial_classifier, tmp_path):
    _, path, _, _ = tutorial_classifier
    (tmp_path / "narrow.csv").write_text("1,2,3\n")
    cases = [
        ({"feature_names": ["a", "b"]}, "lists 2 names; the booster takes 4"),
        ({"class_labels": ["a", "b"]}, "2 class labels given; the booster scores 3"),
        ({"task": "regression"}, "makes it classification"),
        ({"sample_csv": tmp_path / "narrow.csv"}, "row 1 has 3 values; the model takes 4"),
    ]
    for options, message in cases:
        with pytest.raises(ImportRefused, match=message):
            import_model(path, "iris-own", tmp_path / "models", trust_pickle=True, on_note=quiet, **options)


def test_an_existing_model_is_kept_unless_overwrite(tutorial_classifier, tmp_path):
    _, path, _, _ = tutorial_classifier
    import_model(path, "iris-own", tmp_path, trust_pickle=True, on_note=quiet)
    with pytest.raises(ImportRefused, match="already holds a model.*--overwrite"):
        import_model(path, "iris-own", tmp_path, trust_pickle=True, on_note=quiet)
    assert import_model(path, "iris-own", tmp_path, trust_pickle=True, overwrite=True, on_note=quiet).is_dir()


# --------------------------------------------------------------------------- the command


def l2c(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "l2c.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_command_imports_and_checks(tutorial_classifier, tmp_path):
    _, path, _, _ = tutorial_classifier
    result = l2c(
        "import",
        str(path),
        "--name",
        "iris-own",
        "--trust-pickle",
        "--class-labels",
        ",".join(IRIS_LABELS),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "warning: --trust-pickle" in result.stderr
    assert "l2c deploy iris-own" in result.stdout
    check = l2c("check", "models/iris-own", cwd=tmp_path)
    assert check.returncode == 0 and "container will load" in check.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "iris-own"], "is a pickle"),
        (["--name", "Iris"], "cannot name a stack"),
        (["--name", "iris-own", "--trust-pickle", "--task", "ranking"], "use classification or regression"),
    ],
)
def test_the_commands_errors_are_one_line(tutorial_classifier, tmp_path, args, message):
    _, path, _, _ = tutorial_classifier
    result = l2c("import", str(path), *args, cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "models" / "iris-own").exists()
