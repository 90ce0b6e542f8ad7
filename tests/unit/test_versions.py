"""The laptop and the SageMaker container must run the same XGBoost."""

import re

import xgboost

from l2c import versions
from tests.conftest import REPO


def pinned(package: str) -> str:
    text = (REPO / "requirements.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, flags=re.MULTILINE)
    assert match, f"{package} is not pinned with == in requirements.txt"
    return match.group(1)


def test_requirements_pin_xgboost_to_the_container_version():
    assert pinned("xgboost") == versions.CONTAINER_XGBOOST_VERSION


def test_installed_xgboost_is_the_container_version():
    assert xgboost.__version__ == versions.CONTAINER_XGBOOST_VERSION


def test_image_version_names_the_same_xgboost_release():
    # Image "3.2-0" is XGBoost 3.2 plus the container's own revision after the dash.
    assert versions.CONTAINER_IMAGE_VERSION.split("-")[0] == ".".join(versions.CONTAINER_XGBOOST_VERSION.split(".")[:2])


def test_image_uri_comes_from_the_sagemaker_sdk_table():
    uri = versions.image_uri("eu-west-1")
    assert uri.endswith(f"/sagemaker-xgboost:{versions.CONTAINER_IMAGE_VERSION}")
    assert ".dkr.ecr.eu-west-1.amazonaws.com/" in uri


def test_drifted_xgboost_is_refused(monkeypatch):
    monkeypatch.setattr(versions, "local_xgboost_version", lambda: "3.1.2")
    try:
        versions.check_local_xgboost()
    except RuntimeError as err:
        assert "3.1.2" in str(err) and versions.CONTAINER_XGBOOST_VERSION in str(err)
    else:
        raise AssertionError("a drifted xgboost was accepted")
