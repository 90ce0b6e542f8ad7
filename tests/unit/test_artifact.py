"""The artifact holds exactly what the SageMaker XGBoost container loads correctly, or is refused."""

import io
import json
import pickle
import tarfile

import joblib
import numpy as np
import pytest

from l2c import artifact, checks, versions
from l2c.artifact import ArtifactError


def tarball(*members: tuple[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def iris_booster_bytes(trained_models):
    return artifact.read_tarball_member((trained_models["iris"] / "model.tar.gz").read_bytes())


def test_written_tarball_holds_one_native_booster_at_its_root(trained_models):
    with tarfile.open(trained_models["iris"] / "model.tar.gz") as tar:
        assert tar.getnames() == ["xgboost-model"]
        data = tar.extractfile("xgboost-model").read()
    assert data.startswith(b"{L")  # UBJSON, not a pickle nor JSON text
    model = artifact.load_booster_bytes(data)
    assert (model.objective, model.num_features, model.num_classes) == ("multi:softprob", 4, 3)
    assert model.saved_with_version[:2] == (3, 2)


def test_a_second_file_is_refused_as_an_accidental_ensemble(iris_booster_bytes):
    data = tarball(("xgboost-model", iris_booster_bytes), ("notes.txt", b"hello"))
    with pytest.raises(ArtifactError, match="2 model files .* ensemble"):
        artifact.load_artifact_bytes(data)


def test_dot_files_and_the_root_folder_are_ignored_like_the_container_does(iris_booster_bytes):
    data = tarball(("./xgboost-model", iris_booster_bytes), ("./.DS_Store", b"x"), dirs=(".",))
    assert artifact.load_artifact_bytes(data).num_classes == 3


def test_a_joblib_pickle_is_refused_with_the_reason(trained_models):
    estimator_pickle = (trained_models["iris"] / "xgboost_classifier.joblib").read_bytes()
    with pytest.raises(ArtifactError, match="pickle.*arbitrary code"):
        artifact.load_artifact_bytes(tarball(("xgboost-model", estimator_pickle)))


def test_a_plain_pickle_is_refused_even_under_the_right_name():
    payload = pickle.dumps({"not": "a booster"})
    with pytest.raises(ArtifactError, match="pickle"):
        artifact.load_artifact_bytes(tarball(("xgboost-model", payload)))


def test_a_subfolder_is_refused(iris_booster_bytes):
    data = tarball(("model/xgboost-model", iris_booster_bytes), dirs=("model",))
    with pytest.raises(ArtifactError, match="subfolder"):
        artifact.load_artifact_bytes(data)


def test_a_path_escaping_the_model_folder_is_refused(iris_booster_bytes):
    with pytest.raises(ArtifactError, match="outside the model folder"):
        artifact.load_artifact_bytes(tarball(("../xgboost-model", iris_booster_bytes)))


def test_an_empty_archive_is_refused():
    with pytest.raises(ArtifactError, match="no model file"):
        artifact.load_artifact_bytes(tarball())


def test_garbage_is_refused_not_crashed_on():
    with pytest.raises(ArtifactError, match="not a readable tar archive"):
        artifact.load_artifact_bytes(b"definitely not gzip")
    with pytest.raises(ArtifactError, match="native"):
        artifact.load_artifact_bytes(tarball(("xgboost-model", b"binf\x00\x00legacy")))


def test_a_json_booster_from_another_xgboost_minor_is_refused(iris_booster_bytes):
    model = artifact.load_booster_bytes(iris_booster_bytes)
    document = json.loads(bytes(model.booster.save_raw(raw_format="json")))
    document["version"] = [3, 1, 0]
    with pytest.raises(ArtifactError, match=r"XGBoost 3\.1\.0.*container runs 3\.2\.0"):
        artifact.load_booster_bytes(json.dumps(document).encode())


def test_a_ubjson_booster_from_another_xgboost_minor_is_refused(iris_booster_bytes):
    drifted = iris_booster_bytes.replace(b"i\x03i\x02i\x00}", b"i\x03i\x01i\x00}")
    assert drifted != iris_booster_bytes
    assert artifact.saved_version(drifted) == (3, 1, 0)
    with pytest.raises(ArtifactError, match="3.1.0"):
        artifact.load_booster_bytes(drifted)


def test_the_json_format_from_the_same_version_is_accepted(iris_booster_bytes):
    model = artifact.load_booster_bytes(iris_booster_bytes)
    as_json = bytes(model.booster.save_raw(raw_format="json"))
    assert artifact.saved_version(as_json)[:2] == versions.major_minor(versions.CONTAINER_XGBOOST_VERSION)
    assert artifact.load_booster_bytes(as_json).num_classes == 3


def test_check_proves_reloaded_predictions_equal_the_trained_model(trained_models):
    for model_dir in trained_models.values():
        report = checks.check_model_dir(model_dir, estimator=joblib.load(next(model_dir.glob("*.joblib"))))
        assert report.sample_rows == 5
        assert report.max_abs_difference <= checks.PREDICTION_TOLERANCE


def test_check_refuses_a_tampered_tarball(trained_models, tmp_path, iris_booster_bytes):
    import shutil

    copy = shutil.copytree(trained_models["iris"], tmp_path / "iris")
    (copy / "model.tar.gz").write_bytes(tarball(("xgboost-model", iris_booster_bytes), ("extra", b"1")))
    with pytest.raises(ArtifactError, match="ensemble"):
        checks.check_model_dir(copy)


def test_check_refuses_a_booster_that_is_not_the_one_in_the_card(trained_models, tmp_path):
    import shutil

    copy = shutil.copytree(trained_models["iris"], tmp_path / "iris")
    other = artifact.read_tarball_member((trained_models["house-price"] / "model.tar.gz").read_bytes())
    (copy / "model.tar.gz").write_bytes(tarball(("xgboost-model", other)))
    with pytest.raises(ArtifactError, match="differs from the one the model card describes"):
        checks.check_model_dir(copy)


def test_container_style_prediction_ignores_column_count_so_our_layers_must_check(trained_models):
    # Documented container behaviour: no feature validation. A 3-value row to a 4-feature model
    # is still "predicted"; this is why the handler and the checks count columns themselves.
    model = artifact.load_artifact(trained_models["iris"])
    out = artifact.predict_like_container(model, np.array([[5.1, 3.3, 1.7]]))
    assert out.shape == (1, 3)
