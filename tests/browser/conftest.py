"""Fixtures of the browser tests: headless Chromium, and both tutorial models deployed into the
session's local cloud with their model folders where the cloud finds their cards.

The browser is part of the suite: when Chromium or its driver is missing the tests fail, with
the command that installs them, rather than skip.
"""

from __future__ import annotations

import shutil

import pytest
from page_driver import missing, start_chromium

MODELS = ("iris", "house-price")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    absent = missing()
    if absent:
        pytest.fail(f"{', '.join(absent)} missing: `make setup` installs Debian's chromium and chromium-driver")
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module", autouse=True)
def cloud_env(local_cloud, local_cloud_env):
    """The session cloud's variables in os.environ for every module of this folder
    (tests/local_cloud.py), so what the tests open finds that cloud."""
    return local_cloud.env


@pytest.fixture(scope="module")
def page_session(cloud_env):
    from l2c.cloud.session import LOCAL, connect

    return connect(LOCAL)


@pytest.fixture(scope="module")
def deployed(local_cloud, page_session, trained_models):
    """Both models deployed from models/<name> in the cloud's working folder: where the cloud
    (as `l2c up` in a checkout) looks for the card each page is labelled from."""
    from l2c.cloud import stack, teardown
    from l2c.cloud.progress import Reporter

    models = local_cloud.folder / "models"
    deployments = {}
    for name in MODELS:
        shutil.copytree(trained_models[name], models / name, dirs_exist_ok=True)
        deployments[name] = stack.deploy(name, models / name, session=page_session, reporter=Reporter())
    yield deployments
    teardown.destroy(everything=True, session=page_session, reporter=Reporter())


@pytest.fixture(scope="module")
def page_urls(local_cloud, deployed) -> dict[str, str]:
    from l2c.page.served import page_url

    return {name: page_url(local_cloud.env["AWS_ENDPOINT_URL"], name) for name in deployed}
