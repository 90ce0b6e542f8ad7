"""Faults injected into a running local cloud: what the caller sees, what is logged, and that
the cloud recovers and `l2c destroy` still leaves nothing.

Each test breaks one part of its own local cloud (started in this process on free ports, so
parts can be stopped and restarted), with the iris stack freshly deployed by `l2c deploy`'s
code; the fixture destroys the stack after each test and checks by listing every service that
nothing of it is left. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import psutil
import pytest
from aws_helpers import own_local_cloud

from l2c.cloud import inventory, plan, stack, teardown
from l2c.cloud.apigateway import Limits
from l2c.cloud.progress import Reporter
from l2c.cloud.session import LOCAL, connect
from l2c.local.cloud import HOST

# A cloud of its own (own_local_cloud), never the session's (tests/integration/conftest.py).
pytestmark = pytest.mark.own_cloud

BODY = {"data": "5.1,3.5,1.4,0.2"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with own_local_cloud(tmp_path_factory.mktemp("state")) as local:
        try:
            yield local
        finally:
            resume_stopped_workers()


@pytest.fixture
def session(cloud):
    return connect(LOCAL)


@pytest.fixture
def deployed(cloud, session, trained_models):
    # A plan wide enough that the load loops below are never throttled (throttling: test_reliability_abuse).
    options = plan.DeployOptions(limits=Limits(rate_limit=1000.0, burst_limit=1000, quota_limit=1_000_000))
    deployment = stack.deploy("iris", trained_models["iris"], session=session, options=options, reporter=Reporter())
    # A fresh key is refused for a few (paced) seconds, as on AWS: faults are injected only once it works.
    wait_for(lambda: post(deployment).status_code == 200, 30, "the fresh deploy answers")
    yield deployment
    resume_stopped_workers()
    teardown.destroy(everything=True, session=connect(LOCAL), reporter=Reporter())
    assert inventory.inventory(connect(LOCAL)) == []


def post(deployment, client: httpx.Client | None = None) -> httpx.Response:
    sender = client or httpx
    return sender.post(deployment.url, json=BODY, headers={"x-api-key": deployment.api_key}, timeout=60)


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def function_log(session, function: str) -> str:
    events = session.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{function}")["events"]
    return "\n".join(event["message"] for event in events)


# --------------------------------------------------------------------------- Lambda workers


def lambda_workers() -> list[psutil.Process]:
    """The worker processes of the Lambda host (children of this process running lambda_runner.py)."""
    return [child for child in psutil.Process().children(recursive=True) if runs_lambda_runner(child)]


def runs_lambda_runner(process: psutil.Process) -> bool:
    try:
        return any(part.endswith("lambda_runner.py") for part in process.cmdline())
    except psutil.Error:  # gone, or a zombie some other test left unreaped
        return False


def resume_stopped_workers() -> None:
    for worker in lambda_workers():
        try:
            worker.send_signal(signal.SIGCONT)
        except psutil.Error:
            pass


@contextmanager
def in_background(call):
    """Run ``call`` in a thread; yields a dict that gets its result or error."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = call()
        except Exception as err:  # reported by the test through the dict
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(60)


# --------------------------------------------------------------------------- the runtime


class Load:
    """One client posting the tutorial body in a loop (at most 2,000 requests or 40 s)."""

    def __init__(self, deployment):
        self.deployment = deployment
        self.answers: list[tuple[int, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 40
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set() and time.monotonic() < deadline and len(self.answers) < 2000:
                response = post(self.deployment, client)
                self.answers.append((response.status_code, response.json()))

    def count(self, status: int) -> int:
        return sum(1 for code, _ in self.answers if code == status)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)


def test_the_api_answers_503_json_while_the_runtime_is_down_and_recovers_when_it_is_back(cloud, deployed, session):
    with Load(deployed) as load:
        wait_for(lambda: load.count(200) >= 5, 30, "answers before the fault")
        cloud.stop_runtime()
        wait_for(lambda: load.count(503) >= 2, 30, "503s while the runtime is down")
        cloud.start_runtime()
        recovered_from = len(load.answers)
        wait_for(lambda: sum(1 for code, _ in load.answers[recovered_from:] if code == 200) >= 5, 30, "recovery")
    statuses = {code for code, _ in load.answers}
    assert statuses <= {200, 503}, statuses
    for code, body in load.answers:
        if code == 503:
            assert body["error"] == "endpoint_unreachable" and "retry" in body["message"] and body["requestId"]
    # Once back, it stays back: nothing but answers after the first one.
    after = [code for code, _ in load.answers[recovered_from:]]
    assert after[after.index(200) :] == [200] * len(after[after.index(200) :])
    assert '"error": "endpoint_unreachable"' in function_log(session, deployed.function)


def test_a_worker_that_dies_mid_request_is_a_502_and_the_next_request_succeeds(cloud, deployed, session):
    assert post(deployed).status_code == 200
    workers = lambda_workers()
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)  # the next invocation is then in flight for sure
    with in_background(lambda: post(deployed)) as outcome:
        time.sleep(0.5)
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
    response = outcome["result"]
    assert response.status_code == 502 and response.json() == {"message": "Internal server error"}
    assert post(deployed).status_code == 200
    assert "Runtime exited" in function_log(session, deployed.function)


def test_a_worker_past_the_functions_timeout_is_a_504_and_the_next_request_succeeds(cloud, deployed, session):
    lam = session.client("lambda")
    lam.update_function_configuration(FunctionName=deployed.function, Timeout=2)
    assert post(deployed).status_code == 200  # one warm worker with the new setting
    for worker in lambda_workers():
        worker.send_signal(signal.SIGSTOP)  # stalls as a hung handler would
    started = time.monotonic()
    response = post(deployed)
    assert response.status_code == 504 and response.json() == {"message": "Endpoint request timed out"}
    assert 1.5 < time.monotonic() - started < 10
    resume_stopped_workers()
    assert post(deployed).status_code == 200
    assert "Task timed out after 2.00 seconds" in function_log(session, deployed.function)


# --------------------------------------------------------------------------- the artifact in S3


def test_a_corrupted_then_deleted_artifact_is_a_clear_model_error_and_nothing_crashes(cloud, deployed, session):
    s3, runtime = session.client("s3"), session.client("sagemaker-runtime")
    bucket, key = deployed.model_data_url.removeprefix("s3://").split("/", 1)
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def model_error() -> dict:
        with pytest.raises(runtime.exceptions.ModelError) as raised:
            runtime.invoke_endpoint(EndpointName=deployed.endpoint, ContentType="text/csv", Body="5.1,3.5,1.4,0.2")
        return raised.value.response

    for break_it in (
        lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"not a tarball"),
        lambda: s3.delete_object(Bucket=bucket, Key=key),
    ):
        break_it()
        error = model_error()
        assert error["OriginalStatusCode"] == 500 and error["OriginalMessage"].startswith("Unable to load model: ")
        answer = post(deployed)
        assert answer.status_code == 502
        # the caller gets a generic message and the request id; the container's words stay in the log
        assert answer.json()["error"] == "model_error" and answer.json()["requestId"]
        assert answer.json()["message"] == "the model could not answer this request"
        assert "Unable to load model" not in answer.text
        assert httpx.get(f"{cloud.runtime_url}/ping", timeout=10).status_code == 200
    s3.put_object(Bucket=bucket, Key=key, Body=original)
    assert post(deployed).json()["prediction"] == "setosa"
    log = function_log(session, deployed.function)
    assert '"error": "model_error"' in log and '"originalMessage": "Unable to load model: ' in log
    assert '"originalStatusCode": 500' in log


# --------------------------------------------------------------------------- slow clients


def test_a_client_that_stalls_mid_body_is_cut_off_with_a_408_and_others_are_served_meanwhile(
    cloud, deployed, monkeypatch, caplog
):
    monkeypatch.setattr(cloud._gateway, "client_timeout_s", 1.0)
    path = deployed.url.removeprefix(cloud.api_url)
    caplog.set_level("WARNING", logger="l2c.local.gateway")
    with socket.create_connection((HOST, cloud.ports.api), timeout=10) as stalled:
        stalled.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f'x-api-key: {deployed.api_key}\r\nContent-Length: 1000\r\n\r\n{{"data": '.encode()
        )
        started = time.monotonic()
        assert post(deployed).status_code == 200  # the stalled client holds up no one
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = stalled.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408") and b'{"message": "Request Timeout"}' in answer
    assert any("408 Request Timeout" in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------- the control plane


def l2c(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from l2c.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_after_the_control_plane_restarts_status_says_what_is_gone_and_destroy_is_clean(cloud, deployed):
    assert "l2c-iris" in l2c("status").stdout
    cloud._moto.stop()
    down = l2c("status")
    assert down.returncode != 0 and "l2c up" in down.stdout + down.stderr and "Traceback" not in down.stderr
    # A new moto knows nothing of what the old one held, exactly like a restarted `l2c up`.
    from l2c.local import control_plane

    cloud._moto = control_plane.start(cloud.ports.control_plane, HOST)
    httpx.post(f"{cloud.control_plane_url}/moto-api/reset", timeout=30).raise_for_status()
    after = l2c("status")
    assert after.returncode == 0 and "nothing deployed" in after.stdout, after.stdout + after.stderr
    gone = post(deployed)
    assert gone.status_code == 403 and gone.json() == {"message": "Missing Authentication Token"}
    runtime = connect(LOCAL).client("sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ValidationError, match="not found"):
        runtime.invoke_endpoint(EndpointName=deployed.endpoint, ContentType="text/csv", Body="5.1,3.5,1.4,0.2")
    destroyed = l2c("destroy", "--all")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert json.dumps(inventory.inventory(connect(LOCAL)), default=str) == "[]"
