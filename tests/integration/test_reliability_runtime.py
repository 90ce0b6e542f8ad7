"""The local cloud's inference runtime dies (killed, or crashing as XGBoost can on a crafted
booster): it is started again on the same port, callers meanwhile get the API's JSON 503, and
afterwards every deployed stack answers as it did before; the crash is logged, reported at
``GET /_l2c/runtime`` and by `l2c status`. A crash loop is slowed down, not spun; a runtime
stopped on purpose stays stopped.

One local cloud for the module (started in this process on free ports), with both tutorial
stacks deployed once by `l2c deploy`'s code and destroyed at the end. The runtime is killed
with real signals through os.kill on its process id. Every loop is bounded in count and time.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from aws_helpers import own_local_cloud

from l2c.cloud import inventory, plan, stack, teardown
from l2c.cloud.apigateway import Limits
from l2c.cloud.progress import Reporter
from l2c.cloud.session import LOCAL, connect
from l2c.local.cloud import HOST
from l2c.local.runtime_supervisor import FIRST_DELAY_S, MAX_DELAY_S
from l2c.local.tutorial import TUTORIAL_BODIES

# A cloud of its own (own_local_cloud), never the session's (tests/integration/conftest.py).
pytestmark = pytest.mark.own_cloud

BACK_WITHIN_S = 20.0  # the longest backoff (5 s) plus a runtime's start (~2 s here), with room


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with own_local_cloud(tmp_path_factory.mktemp("state")) as local:
        yield local


@pytest.fixture(scope="module")
def deployed(cloud, trained_models):
    session = connect(LOCAL)
    options = plan.DeployOptions(limits=Limits(rate_limit=1000.0, burst_limit=1000, quota_limit=1_000_000))
    deployments = {
        name: stack.deploy(name, trained_models[name], session=session, options=options, reporter=Reporter())
        for name in ("iris", "house-price")
    }
    # A fresh key is refused for a few (paced) seconds, as on AWS: faults come once both answer.
    for name, deployment in deployments.items():
        wait_for(lambda: post(name, deployment).status_code == 200, 30, f"the fresh {name} deploy answers")
    yield deployments
    teardown.destroy(everything=True, session=connect(LOCAL), reporter=Reporter())
    assert inventory.inventory(connect(LOCAL)) == []


@pytest.fixture(scope="module")
def predictions(deployed):
    """What each stack answers while nothing has gone wrong."""
    return {name: answer_of(name, deployment) for name, deployment in deployed.items()}


def post(name: str, deployment, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        deployment.url, json=TUTORIAL_BODIES[name], headers={"x-api-key": deployment.api_key}, timeout=timeout
    )


def answer_of(name: str, deployment) -> dict:
    response = post(name, deployment)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition, seconds: float, what: str) -> float:
    """Polls until ``condition()``; returns how long that took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def report(cloud) -> dict:
    answer = httpx.get(f"{cloud.control_plane_url}/_l2c/runtime", timeout=10)
    assert answer.status_code == 200
    return answer.json()


def running(cloud) -> dict:
    wait_for(lambda: report(cloud)["state"] == "running", BACK_WITHIN_S, "the runtime runs")
    return report(cloud)


def kill(pid: int, sig: signal.Signals) -> None:
    if sig == signal.SIGSEGV:
        # A real segfault's default action may write a core file where the runtime runs (the
        # repository) on a machine that allows them; this one is ours, so it is not kept.
        psutil.Process(pid).rlimit(psutil.RLIMIT_CORE, (0, 0))
    os.kill(pid, sig)


def runtime_processes() -> list[psutil.Process]:
    # This module's cloud runs in this process, so its runtime is a direct child; the session's
    # cloud (another process) has a runtime of its own further down.
    found = []
    for child in psutil.Process().children(recursive=False):
        try:
            if "l2c.local.runtime_process" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:  # gone meanwhile
            pass
    return found


def l2c_status() -> str:
    command = [sys.executable, "-c", "from l2c.cli import main; main()", "status"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def back_up(now: dict, before: dict) -> bool:
    return now["state"] == "running" and now["pid"] != before["pid"]


def is_the_503_that_says_retry(response: httpx.Response) -> bool:
    if response.status_code != 503:
        return False
    body = response.json()
    return body["error"] == "endpoint_unreachable" and "retry" in body["message"] and bool(body["requestId"])


# --------------------------------------------------------------------------- one crash


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_a_killed_runtime_is_back_soon_and_every_stack_answers_as_before(cloud, deployed, predictions, sig, caplog):
    caplog.set_level(logging.INFO, logger="l2c.local")
    before = running(cloud)
    assert runtime_processes()[0].pid == before["pid"]
    kill(before["pid"], sig)
    killed = time.monotonic()

    # Meanwhile: the API's JSON 503 that says retry, each answered quickly, not a hang.
    gap: list[tuple[httpx.Response, float]] = []
    # Until a NEW runtime runs: on a loaded machine the supervisor may not have seen the death
    # yet, and still reports the killed one as running.
    while not back_up(report(cloud), before) and time.monotonic() - killed < BACK_WITHIN_S:
        sent = time.monotonic()
        gap.append((post("iris", deployed["iris"]), time.monotonic() - sent))
    back_after = time.monotonic() - killed
    assert back_after < BACK_WITHIN_S
    during = [(response, took) for response, took in gap if response.status_code != 200]
    assert during, "no request fell in the gap"
    assert all(is_the_503_that_says_retry(response) and took < 10 for response, took in during), [
        (response.status_code, response.text, took) for response, took in during
    ]

    after = report(cloud)
    reason = f"signal {sig.value} ({sig.name})"
    assert after["pid"] != before["pid"] and after["url"] == cloud.runtime_url  # the same port
    assert after["crashes"] == before["crashes"] + 1 and after["restarts"] == before["restarts"] + 1
    assert after["last_exit"]["reason"] == reason and after["last_exit"]["code"] == -sig.value
    assert [process.pid for process in runtime_processes()] == [after["pid"]]
    for name, deployment in deployed.items():
        assert answer_of(name, deployment) == predictions[name]
    crashes = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "inference runtime" in r.getMessage()
    ]
    assert len(crashes) == 1 and reason in crashes[0] and str(before["pid"]) in crashes[0], crashes
    assert any("inference runtime is back" in r.getMessage() for r in caplog.records)
    shown = l2c_status()
    assert f"local runtime restarted {after['restarts']} time" in shown and reason in shown, shown
    assert "l2c-iris" in shown and "l2c-house-price" in shown


def test_a_restart_that_finds_the_port_taken_tries_again_until_it_is_free(cloud, deployed, predictions, caplog):
    caplog.set_level(logging.INFO, logger="l2c.local")
    before = running(cloud)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the dead one's TIME_WAITs
    try:
        kill(before["pid"], signal.SIGKILL)
        wait_for(lambda: report(cloud)["crashes"] == before["crashes"] + 1, 10, "the crash is noticed")
        squatter.bind((HOST, cloud.ports.runtime))  # before the new process gets there (its imports take seconds)
        squatter.listen()
        wait_for(
            lambda: report(cloud)["crashes"] >= before["crashes"] + 2,
            BACK_WITHIN_S,
            "a start that finds the port taken",
        )
    finally:
        squatter.close()
    after = running(cloud)
    assert after["url"] == cloud.runtime_url and after["restarts"] == before["restarts"] + 1
    assert after["last_exit"]["reason"] == "exit code 3"  # uvicorn's: it could not bind
    assert any("did not come back (exit code 3" in r.getMessage() for r in caplog.records)
    for name, deployment in deployed.items():
        assert answer_of(name, deployment) == predictions[name]


# --------------------------------------------------------------------------- stopped on purpose


def test_a_runtime_stopped_on_purpose_stays_stopped_even_mid_restart(cloud, deployed, predictions):
    before = running(cloud)
    kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: report(cloud)["state"] == "restarting", 10, "the crash is noticed")
    cloud.stop_runtime()  # while the supervisor waits to restart it, or is starting it
    assert report(cloud)["state"] == "stopped"
    time.sleep(3.0)  # longer than the restart that was pending (the backoff so far, here ~0.1-1 s)
    assert runtime_processes() == [] and report(cloud)["state"] == "stopped"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{cloud.runtime_url}/ping", timeout=5)
    assert is_the_503_that_says_retry(post("iris", deployed["iris"]))
    assert "local runtime stopped" in l2c_status()
    cloud.start_runtime()
    assert [process.pid for process in runtime_processes()] == [running(cloud)["pid"]]
    for name, deployment in deployed.items():
        assert answer_of(name, deployment) == predictions[name]


# --------------------------------------------------------------------------- a crash loop


def test_a_crash_loop_backs_off_with_growing_gaps_up_to_a_bound(cloud, deployed, predictions):
    """Each new runtime is killed as soon as it exists (before it listens, as a model that crashes
    it on its first request would): the supervisor waits twice as long each time, up to 5 s."""
    pid = running(cloud)["pid"]
    delays, gaps = [], []
    for _ in range(10):  # 0.1 s doubling reaches the 5 s cap in 7 exits; 10 bounds the loop
        crashes = report(cloud)["crashes"]
        kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        def restarted() -> bool:
            now = report(cloud)
            return now["crashes"] > crashes and now["pid"] not in (None, pid)

        wait_for(restarted, BACK_WITHIN_S, "a new runtime process")
        gaps.append(time.monotonic() - killed)
        now = report(cloud)
        delays.append(now["last_exit"]["restart_delay_s"])
        pid = now["pid"]
        if delays[-1] == MAX_DELAY_S:
            break
    assert delays[-1] == MAX_DELAY_S and all(FIRST_DELAY_S <= delay <= MAX_DELAY_S for delay in delays)
    assert all(later == min(2 * earlier, MAX_DELAY_S) for earlier, later in zip(delays, delays[1:])), delays
    # What a caller sees: each pause longer than the one before, none much past its delay.
    growing = [gap for gap, delay in zip(gaps, delays) if delay < MAX_DELAY_S]
    assert growing == sorted(growing) and len(set(growing)) == len(growing), gaps
    assert all(delay <= gap < delay + 1.5 for gap, delay in zip(gaps, delays)), list(zip(gaps, delays))
    # And it ends: the last one is let be, and serves.
    wait_for(lambda: report(cloud)["state"] == "running", BACK_WITHIN_S, "the runtime runs after the loop")
    assert [process.pid for process in runtime_processes()] == [pid]
    for name, deployment in deployed.items():
        assert answer_of(name, deployment) == predictions[name]
