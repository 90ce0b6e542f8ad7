"""`l2c logs` against the session's local cloud: the function's START / REPORT lines of real calls.

A stack is deployed as `l2c deploy` does, its API is called over HTTP with the key, and the
command (typer's runner in this process; a real `l2c logs --follow` process for polling)
reads the log groups where AWS writes them, through CloudWatch Logs' own API.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from l2c.cli import app
from l2c.cloud import stack, teardown
from l2c.cloud.progress import Reporter
from l2c.local.tutorial import TUTORIAL_BODIES

STACK = "logs-iris"
REQUEST_ID = re.compile(r"START RequestId: (\S+)")


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployment = stack.deploy(STACK, trained_models["iris"], session=cloud_session, reporter=Reporter())
    yield deployment
    teardown.destroy(STACK, session=cloud_session, reporter=Reporter())


def call_api(deployment) -> None:
    response = httpx.post(
        deployment.url, json=TUTORIAL_BODIES["iris"], headers={"x-api-key": deployment.api_key}, timeout=60
    )
    assert response.status_code == 200, response.text


def l2c_logs(*args: str):
    return CliRunner().invoke(app, ["logs", *args])


def test_logs_show_each_call_from_start_to_report_in_time_order(deployed):
    call_api(deployed)
    call_api(deployed)
    result = l2c_logs(STACK, "--since", "5m")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    events = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  ", line)]
    starts = [i for i, line in enumerate(events) if "START RequestId:" in line]
    reports = [i for i, line in enumerate(events) if "REPORT RequestId:" in line]
    assert len(starts) >= 2 and len(reports) >= 2
    assert all("  lambda    " in events[i] for i in starts + reports)
    # Each call's START comes before its own END and REPORT.
    for index in starts:
        request_id = REQUEST_ID.search(events[index]).group(1)
        own = [i for i, line in enumerate(events) if request_id in line]
        assert own[0] == index and "REPORT" in events[own[-1]]
    stamps = [line[:23] for line in events]
    assert stamps == sorted(stamps)


def test_a_group_not_written_yet_is_one_line(deployed):
    result = l2c_logs("never-deployed", "--since", "1m")
    assert result.exit_code == 0, result.output
    assert "no log group /aws/lambda/l2c-never-deployed yet" in result.output
    assert "no log group /aws/sagemaker/Endpoints/l2c-never-deployed yet" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [(("iris", "--since", "ten minutes"), "--since takes a duration"), (("Not_A_Stack",), "cannot name a stack")],
)
def test_bad_input_is_one_clear_line(args, message):
    result = l2c_logs(*args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_follow_prints_calls_made_after_it_started(deployed, local_cloud):
    call_api(deployed)  # something to print at once: then the follower is surely polling
    env = {**os.environ, **local_cloud.env, "COLUMNS": "200"}
    follower = subprocess.Popen(
        [sys.executable, "-m", "l2c.cli", "logs", STACK, "--since", "10m", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(follower.stdout), daemon=True)
    reader.start()

    def request_ids() -> set[str]:
        return {match.group(1) for line in list(seen) for match in [REQUEST_ID.search(line)] if match}

    def wait_for(condition, seconds: float = 60) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not condition():
            time.sleep(0.2)
        return condition()

    try:
        assert wait_for(lambda: request_ids()), seen
        before = request_ids()
        call_api(deployed)
        assert wait_for(lambda: request_ids() - before), seen
        new_id = (request_ids() - before).pop()
        assert wait_for(lambda: any(f"REPORT RequestId: {new_id}" in line for line in list(seen))), seen
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(timeout=10)
