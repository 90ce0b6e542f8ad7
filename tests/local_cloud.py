"""One embedded local cloud per test session, for the test folders and notebooks that deploy.

The cloud runs in a process of its own (``python -m l2c.local``) on free ports, started the
first time a test that needs it runs, and stopped when the session ends. Who sees it is decided
by folder, never by file name:

- a test folder whose conftest turns on ``local_cloud_env`` for every module (tests/integration,
  tests/clients, tests/browser) runs each module with the cloud's variables (``AWS_ENDPOINT_URL``
  and friends, fake ``testing`` credentials, us-east-1) in ``os.environ``; a module there marked
  ``own_cloud`` (it starts a cloud of its own, or moto) never sees them, and never starts it;
- every notebook under notebooks/ gets them around its run, so the kernel nbval starts inherits
  them (nbval's cells are not pytest functions: fixtures do not reach them, a hook does);
- everything else (tests/unit: moto in-process, botocore's Stubber) never reaches the local
  cloud by accident.

Loaded by the root conftest (``pytest_plugins``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.offline_aws import UNREACHABLE_ENDPOINT

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO / "notebooks"
START_TIMEOUT_S = 60
# The suite's pace (l2c.local.pace): every AWS delay happens, 500 times faster than on AWS.
# A test that must watch a transition raises it with the `paced` fixture.
TEST_PACE = 0.002


@dataclass
class LocalCloudProcess:
    process: subprocess.Popen
    folder: Path
    env: dict[str, str]

    @property
    def api_url(self) -> str:
        return self.env["L2C_EXECUTE_API_URL"]

    def log_tail(self, lines: int = 40) -> str:
        text = (self.folder / "cloud.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_local_cloud() -> LocalCloudProcess:
    from l2c.local.cloud import Ports

    folder = Path(tempfile.mkdtemp(prefix="l2c-test-cloud-"))
    ports = Ports.free()
    state_file = folder / "local-cloud.json"
    command = [
        sys.executable,
        "-m",
        "l2c.local",
        "--control-plane-port",
        str(ports.control_plane),
        "--runtime-port",
        str(ports.runtime),
        "--api-port",
        str(ports.api),
        "--state-file",
        str(state_file),
        "--pace",
        str(TEST_PACE),
    ]
    log = (folder / "cloud.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not state_file.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            text = (folder / "cloud.log").read_text(errors="replace")
            raise RuntimeError(f"the local cloud did not start:\n{text[-3000:]}")
        time.sleep(0.1)
    env = json.loads(state_file.read_text())["env"]
    env["L2C_STATE_DIR"] = str(folder / "state")  # filled Postman environments land here, not in the repo
    return LocalCloudProcess(process, folder, env)


def _cloud(config: pytest.Config) -> LocalCloudProcess:
    if config._l2c_cloud_error is not None:
        raise RuntimeError(config._l2c_cloud_error)
    if config._l2c_cloud is None:
        try:
            config._l2c_cloud = start_local_cloud()
        except RuntimeError as err:
            config._l2c_cloud_error = str(err)
            raise
    return config._l2c_cloud


@contextmanager
def cloud_variables(config: pytest.Config) -> Iterator[dict[str, str]]:
    """The session cloud's variables in os.environ inside, put back as they were afterwards."""
    try:
        env = _cloud(config).env
    except RuntimeError:
        # The `local_cloud` fixture reports the failure; a notebook fails on its first cloud call.
        env = {"AWS_ENDPOINT_URL": UNREACHABLE_ENDPOINT}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_notebook(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().is_relative_to(NOTEBOOKS_DIR)


def pytest_configure(config: pytest.Config) -> None:
    config._l2c_cloud = None
    config._l2c_cloud_error = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses_the_cloud = (
            "local_cloud_env" in getattr(item, "fixturenames", ()) and item.get_closest_marker("own_cloud") is None
        )
        if uses_the_cloud or is_notebook(item):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    if not is_notebook(item):
        yield
        return
    with cloud_variables(item.config):
        yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    cloud = getattr(session.config, "_l2c_cloud", None)
    if cloud is not None:
        cloud.stop()


@pytest.fixture(scope="module")
def local_cloud_env(request) -> Iterator[dict[str, str] | None]:
    """The session cloud's variables in os.environ for the whole module, its module fixtures
    included (a folder's conftest turns this on for every module with an autouse fixture, so it
    is set up before them); None, and no cloud started, in a module marked ``own_cloud``."""
    if request.node.get_closest_marker("own_cloud") is not None:
        yield None
        return
    with cloud_variables(request.config) as env:
        yield env


@pytest.fixture(scope="session")
def local_cloud(request) -> LocalCloudProcess:
    """The session's local cloud (its variables are in os.environ in the folders that use it)."""
    try:
        return _cloud(request.config)
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture
def paced(local_cloud, cloud_session):
    """``paced(factor)`` sets the local cloud's pace for this test, and the test session's
    polling and retrying with it (as a session opened on `l2c up --pace` would); both are put
    back afterwards."""
    import httpx

    url = local_cloud.env["AWS_ENDPOINT_URL"] + "/_l2c/pace"
    before = cloud_session.pace

    def set_pace(factor: float) -> None:
        httpx.post(url, json={"pace": factor}).raise_for_status()
        cloud_session.pace = factor

    yield set_pace
    set_pace(TEST_PACE)
    cloud_session.pace = before


@pytest.fixture(scope="session")
def cloud_session(local_cloud, request):
    """A boto3 session on the local cloud, with its account and region from STS. Opened with the
    cloud's variables set: a session fixture is set up before any module's ``local_cloud_env``."""
    from l2c.cloud.session import LOCAL, connect

    with cloud_variables(request.config):
        return connect(LOCAL)
