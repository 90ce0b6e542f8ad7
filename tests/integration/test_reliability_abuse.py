"""Abuse of the API, against the test session's local cloud: every refusal has the status API
Gateway gives, a JSON message, and a line in the cloud's own log.

A stack of its own (`abuse`, the iris model) keeps these tests apart from the deploy tests'
stacks; it is destroyed at the end and checked gone.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from l2c.cloud import inventory, plan, stack, teardown
from l2c.cloud.apigateway import Limits
from l2c.cloud.progress import Reporter
from l2c.cloud.session import LOCAL, connect

NAME = "abuse"
BODY = {"data": "5.1,3.5,1.4,0.2"}
ROOMY = Limits(rate_limit=100.0, burst_limit=100, quota_limit=100_000)


@pytest.fixture(scope="module")
def cloud_env(local_cloud, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**local_cloud.env, "L2C_STATE_DIR": str(tmp_path_factory.mktemp("state"))}.items():
            patch.setenv(name, value)
        yield local_cloud


@pytest.fixture(scope="module")
def deployed(cloud_env, trained_models):
    def deploy(limits: Limits):
        options = plan.DeployOptions(limits=limits)
        return stack.deploy(NAME, trained_models["iris"], session=connect(LOCAL), options=options, reporter=Reporter())

    deploy.first = deploy(ROOMY)
    yield deploy
    teardown.destroy(NAME, session=connect(LOCAL), reporter=Reporter())
    assert inventory.inventory(connect(LOCAL), NAME) == []


def logged(cloud, text: str) -> int:
    """How many lines of the local cloud's log contain ``text``."""
    return sum(text in line for line in (cloud.folder / "cloud.log").read_text(errors="replace").splitlines())


def wait_until_logged(cloud, text: str, at_least: int) -> int:
    deadline = time.monotonic() + 10  # the log is written by another process
    while logged(cloud, text) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return logged(cloud, text)


def test_no_key_or_a_wrong_key_is_403_forbidden_and_logged(cloud_env, deployed):
    deployment = deployed.first
    line = f"POST {urlsplit(deployment.url).path} -> 403"
    before = logged(cloud_env, line)
    for headers in ({}, {"x-api-key": "not-the-key-but-long-enough-0123456789"}, {"x-api-key": ""}):
        response = httpx.post(deployment.url, json=BODY, headers=headers, timeout=30)
        assert response.status_code == 403 and response.json() == {"message": "Forbidden"}
        assert response.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert (
        httpx.post(deployment.url, json=BODY, headers={"x-api-key": deployment.api_key}, timeout=30).status_code == 200
    )
    assert wait_until_logged(cloud_env, line, before + 3) == before + 3


def test_a_body_over_api_gateways_10_mb_is_refused_before_it_is_read_and_logged(cloud_env, deployed):
    deployment = deployed.first
    address = urlsplit(deployment.url)
    before = logged(cloud_env, "-> 413 Request Too Long")
    with socket.create_connection((address.hostname, address.port), timeout=10) as sender:
        sender.sendall(
            f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nx-api-key: {deployment.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10 * 1024 * 1024 + 1}\r\n\r\n".encode()
        )
        answer = b""
        while len(answer) < 65536:  # no body was sent: the answer cannot have waited for it
            chunk = sender.recv(4096)
            if not chunk:  # the gateway closes after refusing
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and answer.endswith(b'{"message": "Request Too Long"}')
    assert wait_until_logged(cloud_env, "-> 413 Request Too Long", before + 1) == before + 1


def test_a_body_over_the_handlers_limit_is_a_400_with_a_message_and_logged(cloud_env, deployed):
    deployment = deployed.first
    rows = "\\n".join(["5.1,3.5,1.4,0.2"] * 80_000)  # ~1.3 MB: under API Gateway's 10 MB, over the handler's 1 MiB
    response = httpx.post(
        deployment.url,
        content=f'{{"data": "{rows}"}}',
        timeout=60,
        headers={"x-api-key": deployment.api_key, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "body_too_large" and response.json()["message"]
    assert wait_until_logged(cloud_env, f"POST {urlsplit(deployment.url).path} -> 400", 1) >= 1
    events = (
        connect(LOCAL).client("logs").filter_log_events(logGroupName=f"/aws/lambda/{deployment.function}")["events"]
    )
    assert any('"error": "body_too_large"' in event["message"] for event in events)


def test_beyond_the_usage_plans_throttle_is_429_and_logged(cloud_env, deployed):
    deployment = deployed(Limits(rate_limit=0.5, burst_limit=2, quota_limit=100_000))
    line = f"POST {urlsplit(deployment.url).path} -> 429"
    before = logged(cloud_env, line)
    with httpx.Client(timeout=30, headers={"x-api-key": deployment.api_key}) as client:
        answers = [client.post(deployment.url, json=BODY) for _ in range(6)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:2] == [200, 200] and statuses[2:].count(429) >= 3, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert json.loads(refused.content) == {"message": "Too Many Requests"}
    assert wait_until_logged(cloud_env, line, before + statuses.count(429)) == before + statuses.count(429)
    deployed(ROOMY)  # as the other tests found it
