"""The local execute-api gateway under hostile or heavy use, as API Gateway and Lambda behave.

A slow function holds up only its own callers (past its concurrency Lambda throttles, and API
Gateway answers 500 at once); oversized, slow, idle and pipelined clients meet the front end's
limits; many connections and many API keys cost the others nothing; memory stays flat; and a
cloud killed with SIGKILL leaves nothing that the next start does not clean.

The gateway tests run on a cloud of their own in this process (so timeouts can be shortened on
a second server sharing its gateway); the SIGKILL test starts `python -m l2c.local` twice. Every
wait is bounded; each test takes a few seconds.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import boto3
import httpx
import psutil
import pytest
from aws_helpers import LAMBDA_TRUST, own_local_cloud, zipped
from botocore.config import Config
from botocore.exceptions import ClientError

from l2c.config import LOCAL_CREDENTIALS
from l2c.local import lambdas
from l2c.local.cloud import HOST, Ports
from l2c.local.gateway.quotas import MAX_HEADER_BYTES
from l2c.local.gateway.server import CLIENT_TIMEOUT_S, GATEWAY_LIMITS, GatewayServer

STAGE = "dev"
REGION = "us-east-1"
SLEEPER = """
    import json, time
    def handler(event, context):
        query = event.get("queryStringParameters") or {}
        seconds = float(query.get("s") or event.get("s") or 0)
        time.sleep(seconds)
        return {"statusCode": 200, "body": json.dumps({"slept": seconds})}
"""
FAST = """
    import json
    def handler(event, context):
        # one log line per request, about the size of the tutorial handler's
        print(json.dumps({"requestId": context.aws_request_id, "headers": event["headers"], "pad": "x" * 600}))
        return {"statusCode": 201, "body": "fast"}
"""
SLOW_RESERVED = 2  # the slow function's reserved concurrency
INTERNAL_ERROR = {"message": "Internal server error"}
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=30)


# --------------------------------------------------------------------------- the cloud and its API


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with own_local_cloud(tmp_path_factory.mktemp("state"), pace=0.002) as local:
        yield local


def client(cloud, service: str, config: Config | None = None):
    """A client of this module's cloud (the session's cloud owns os.environ during each test)."""
    session = boto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    return session.client(service, endpoint_url=cloud.control_plane_url, config=config)


def create_function(cloud, name: str, source: str, role: str) -> str:
    lam = client(cloud, "lambda")
    for _ in range(100):  # a role is assumable a few (paced) moments after it is made
        try:
            arn = lam.create_function(
                FunctionName=name,
                Runtime="python3.13",
                Role=role,
                Handler="app.handler",
                Code={"ZipFile": zipped(source)},
                Timeout=10,
            )["FunctionArn"]
            break
        except ClientError as err:
            if err.response["Error"]["Code"] != "InvalidParameterValueException":
                raise
            time.sleep(0.05)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05})
    return arn


@pytest.fixture(scope="module")
def api(cloud):
    """POST /slow (reserved concurrency 2), /fast, /keyed (API key required, runs the fast one);
    and a function outside any API, `pool`, that sleeps on the unreserved pool."""
    gateway, lam, iam = (client(cloud, name) for name in ("apigateway", "lambda", "iam"))
    account = client(cloud, "sts").get_caller_identity()["Account"]
    role = iam.create_role(RoleName="limits-role", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    functions = {
        name: create_function(cloud, f"limits-{name}", source, role)
        for name, source in (("slow", SLEEPER), ("fast", FAST), ("pool", SLEEPER))
    }
    lam.put_function_concurrency(FunctionName="limits-slow", ReservedConcurrentExecutions=SLOW_RESERVED)
    api_id = gateway.create_rest_api(name="limits")["id"]
    root = gateway.get_resources(restApiId=api_id)["items"][0]["id"]
    for path, function in (("slow", "slow"), ("fast", "fast"), ("keyed", "fast")):
        resource_id = gateway.create_resource(restApiId=api_id, parentId=root, pathPart=path)["id"]
        gateway.put_method(
            restApiId=api_id,
            resourceId=resource_id,
            httpMethod="POST",
            authorizationType="NONE",
            apiKeyRequired=path == "keyed",
        )
        uri = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{functions[function]}/invocations"
        gateway.put_integration(
            restApiId=api_id,
            resourceId=resource_id,
            httpMethod="POST",
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=uri,
        )
        lam.add_permission(
            FunctionName=f"limits-{function}",
            StatementId=f"api-{path}",
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=f"arn:aws:execute-api:{REGION}:{account}:{api_id}/{STAGE}/POST/{path}",
        )
    gateway.create_deployment(restApiId=api_id, stageName=STAGE)
    key = gateway.create_api_key(name="limits-key", enabled=True)
    plan = gateway.create_usage_plan(
        name="limits-plan",
        apiStages=[{"apiId": api_id, "stage": STAGE}],
        throttle={"rateLimit": 100000.0, "burstLimit": 100000},
    )
    gateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    info = {"id": api_id, "url": f"{cloud.api_url}/{STAGE}", "key": key["value"], "plan": plan["id"]}
    deadline = time.monotonic() + 10
    while (answer := post(info, "keyed", key=info["key"])).status_code != 201:  # a new key works in a few paced s
        assert time.monotonic() < deadline, f"the new API key never worked: {answer.status_code} {answer.text}"
        time.sleep(0.05)
    assert post(info, "slow", params={"s": "0"}).status_code == 200  # its worker is warm
    return info


def post(api, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.post(f"{api['url']}/{path}", json={}, headers=headers, timeout=30, **kwargs)


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def request_bytes(api, path: str, body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return (
        b"POST /%s/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
        % (STAGE.encode(), path.encode(), HOST.encode(), len(body), extra)
    ) + body


# --------------------------------------------------------------------------- one slow function


def test_a_slow_function_holds_up_neither_other_routes_nor_403s_and_its_excess_is_throttled_at_once(api):
    with ThreadPoolExecutor(40) as pool:
        running = [pool.submit(timed, lambda: post(api, "slow", params={"s": "4"})) for _ in range(SLOW_RESERVED)]
        time.sleep(0.5)  # both executions have started
        excess = [pool.submit(timed, lambda: post(api, "slow", params={"s": "4"})) for _ in range(36)]
        others = {
            "fast": timed(lambda: post(api, "fast")),
            "keyed": timed(lambda: post(api, "keyed", key=api["key"])),
            "wrong key": timed(lambda: post(api, "keyed", key="not-a-key-of-this-api-at-all")),
            "no route": timed(lambda: post(api, "nowhere")),
        }
        throttled = [future.result() for future in excess]
        finished = [future.result() for future in running]
    statuses = {name: answer.status_code for name, (_, answer) in others.items()}
    assert statuses == {"fast": 201, "keyed": 201, "wrong key": 403, "no route": 403}
    assert max(seconds for seconds, _ in others.values()) < 2.0, others
    assert all(answer.status_code == 500 and answer.json() == INTERNAL_ERROR for _, answer in throttled)
    assert max(seconds for seconds, _ in throttled) < 3.0  # not after the 4 s the running ones take
    assert all(answer.status_code == 200 for _, answer in finished)
    assert min(seconds for seconds, _ in finished) >= 4.0


def test_lambda_invoke_past_a_reservation_is_429_rate_exceeded_and_zero_reserved_is_always_throttled(cloud, api):
    lam = client(cloud, "lambda", NO_RETRIES)
    with ThreadPoolExecutor(SLOW_RESERVED) as pool:
        busy = [pool.submit(lam.invoke, FunctionName="limits-slow", Payload=b'{"s": 2}') for _ in range(SLOW_RESERVED)]
        time.sleep(0.5)
        with pytest.raises(ClientError) as refused:
            lam.invoke(FunctionName="limits-slow", Payload=b"{}")
        assert all(
            json.loads(future.result()["Payload"].read()) == {"statusCode": 200, "body": '{"slept": 2.0}'}
            for future in busy
        )
    error = refused.value.response
    assert error["Error"] == {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert (error["Reason"], error["Type"]) == ("ReservedFunctionConcurrentInvocationLimitExceeded", "User")
    lam.put_function_concurrency(FunctionName="limits-pool", ReservedConcurrentExecutions=0)
    try:
        with pytest.raises(ClientError, match="Rate Exceeded"):
            lam.invoke(FunctionName="limits-pool", Payload=b"{}")
    finally:
        lam.delete_function_concurrency(FunctionName="limits-pool")
    assert lam.invoke(FunctionName="limits-pool", Payload=b"{}")["StatusCode"] == 200


def test_functions_without_a_reservation_share_the_local_accounts_pool(cloud, api):
    lam = client(cloud, "lambda", NO_RETRIES)
    host = cloud._lambdas
    with ThreadPoolExecutor(lambdas.UNRESERVED_CONCURRENCY) as pool:
        busy = [
            pool.submit(lam.invoke, FunctionName="limits-pool", Payload=b'{"s": 3}')
            for _ in range(lambdas.UNRESERVED_CONCURRENCY)
        ]
        deadline = time.monotonic() + 10
        while host.concurrency.running() < lambdas.UNRESERVED_CONCURRENCY:  # cold starts take a moment
            assert time.monotonic() < deadline, "the pool never filled"
            time.sleep(0.02)
        with pytest.raises(ClientError) as refused:
            lam.invoke(FunctionName="limits-pool", Payload=b"{}")
        elapsed, through_api = timed(lambda: post(api, "fast"))  # fast draws from the same pool
        assert post(api, "slow", params={"s": "0"}).status_code == 200  # slow has its own reservation
        assert all(future.result()["StatusCode"] == 200 for future in busy)
    assert refused.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert through_api.status_code == 500 and through_api.json() == INTERNAL_ERROR and elapsed < 2.0
    assert post(api, "fast").status_code == 201


# --------------------------------------------------------------------------- heads, slow and idle clients


def test_the_gateway_limits_are_api_gateways_and_ours_where_aws_publishes_none(cloud):
    assert MAX_HEADER_BYTES == 10240 and GATEWAY_LIMITS.request_line_bytes == 10240
    assert GATEWAY_LIMITS.head_bytes == GATEWAY_LIMITS.header_line_bytes == 2 * 10240
    assert GATEWAY_LIMITS.request_line_status == 431
    assert (GATEWAY_LIMITS.header_seconds, GATEWAY_LIMITS.body_seconds, GATEWAY_LIMITS.keep_alive_seconds) == (
        30.0,
    ) * 3
    assert CLIENT_TIMEOUT_S == 30.0 and GATEWAY_LIMITS.answer_timeouts
    assert GATEWAY_LIMITS.max_connections == 2048
    served = cloud._gateway
    assert served.limits == replace(GATEWAY_LIMITS, max_connections=min(2048, served.limits.max_connections))
    assert served.running.server.config.timeout_keep_alive == 30.0
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert served.limits.max_connections <= soft / 4  # the rest of the cloud keeps its files


def test_a_64_mb_header_is_refused_at_once_while_others_are_served(cloud, api):
    huge = b"X-Huge: " + b"a" * (64 * 1024 * 1024) + b"\r\n"
    outcome: dict = {}

    def send_huge() -> None:
        with connect(cloud.ports.api) as sock:
            started = time.monotonic()
            try:
                sock.sendall(b"POST /%s/fast HTTP/1.1\r\nHost: x\r\n" % STAGE.encode() + huge + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before all of it was read: the answer is still waiting
            outcome["answer"], _ = read_until_closed(sock, 15)
            outcome["seconds"] = time.monotonic() - started

    sender = threading.Thread(target=send_huge)
    sender.start()
    served = [timed(lambda: post(api, "fast")) for _ in range(5)]
    sender.join(30)
    assert all(answer.status_code == 201 and seconds < 2.0 for seconds, answer in served)
    head, _, body = outcome["answer"].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and json.loads(body) == {"message": "Request Header Fields Too Large"}
    assert outcome["seconds"] < 6.0  # AWS's 10240-byte limit applies long before the 64 MB are in


def test_a_request_line_over_10240_bytes_is_431_and_the_existing_header_limit_holds(cloud, api):
    long_path = "/" + STAGE + "/fast?" + "q" * 10300
    answer = httpx.post(cloud.api_url + long_path, json={}, timeout=10)
    assert answer.status_code == 431 and answer.json() == {"message": "Request Header Fields Too Large"}
    assert httpx.post(f"{api['url']}/fast", json={}, headers={"X-Big": "a" * 10300}).status_code == 431
    assert httpx.post(f"{api['url']}/fast", json={}, headers={"X-Big": "a" * 9000}).status_code == 201


@pytest.fixture
def short(cloud):
    """A second server on the same gateway, with 1 s for a head, a body and an idle connection."""
    limits = replace(GATEWAY_LIMITS, header_seconds=1.0, body_seconds=1.0, keep_alive_seconds=1.0)
    server = GatewayServer(cloud._gateway.app.gateway, HOST, 0, limits).start()
    yield server
    server.stop()


def test_idle_connections_and_partial_heads_are_closed_at_the_limit(short, api):
    never_sends, idle, partial = (connect(short.running.port) for _ in range(3))
    partial.sendall(b"POST /%s/fast HTTP/1.1\r\nHost: x\r\nX-Half" % STAGE.encode())
    idle.sendall(request_bytes(api, "fast"))
    answered, _ = read_until_closed_or_response(idle)
    assert answered.startswith(b"HTTP/1.1 201 ")
    silent, silent_after = read_until_closed(never_sends, 5)
    half, half_after = read_until_closed(partial, 5)
    rest, idle_after = read_until_closed(idle, 5)
    assert silent == b"" and 0.8 < silent_after < 2.5
    assert half.startswith(b"HTTP/1.1 408 ") and half.endswith(b'{"message": "Request Timeout"}') and half_after < 2.5
    assert rest == b"" and idle_after < 2.5
    for sock in (never_sends, idle, partial):
        sock.close()


def read_until_closed_or_response(sock: socket.socket) -> tuple[bytes, float]:
    started, received = time.monotonic(), b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in received or not received.endswith(b"fast"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def test_a_body_that_stalls_is_answered_408_at_the_limit(short):
    with connect(short.running.port) as sock:
        sock.sendall(b"POST /%s/fast HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{" % STAGE.encode())
        answer, seconds = read_until_closed(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b'{"message": "Request Timeout"}')
    assert seconds < 3.0


def test_a_good_request_pipelined_before_garbage_keeps_its_answer(cloud, api):
    with connect(cloud.ports.api) as sock:
        sock.sendall(request_bytes(api, "fast") + b"\x00\x01 not http at all\r\n\r\n")
        answer, seconds = read_until_closed(sock, 10)
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 201 ") and rest.startswith(b"fast")
    assert b"HTTP/1.1 400 " in rest and seconds < 5


# --------------------------------------------------------------------------- many connections, many keys


def test_a_connection_flood_past_the_cap_is_turned_away_and_others_are_served_once_it_ends(cloud, api):
    cap = cloud._gateway.limits.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    flood_size = cap + 1000
    assert soft > 2 * flood_size + 500, "the test needs room for both ends of every connection"
    flood = []
    try:
        for _ in range(flood_size):
            flood.append(socket.create_connection((HOST, cloud.ports.api), timeout=10))
        # The gateway keeps `cap` of them (until their header timeout) and closes the rest at once.
        turned_away = 0
        deadline = time.monotonic() + 10
        for sock in flood[cap + 10 :]:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                turned_away += sock.recv(1) == b""
            except ConnectionResetError:
                turned_away += 1
            except TimeoutError:
                pass
        assert turned_away == len(flood) - cap - 10
        # The edge (another server of the same process) still answers meanwhile.
        assert httpx.get(f"{cloud.control_plane_url}/_l2c/runtime", timeout=10).status_code == 200
    finally:
        for sock in flood:
            sock.close()
    elapsed, answer = timed(lambda: retry_until_served(api))
    assert answer.status_code == 201 and elapsed < 5.0


def retry_until_served(api) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:
        try:
            return post(api, "fast")
        except httpx.TransportError:  # closed while the server was still at its cap
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_right_key_is_found_among_many_and_near_misses_are_forbidden(cloud, api):
    gateway = client(cloud, "apigateway")
    made = [gateway.create_api_key(name=f"many-{number}", enabled=True) for number in range(300)]
    disabled = gateway.create_api_key(name="many-disabled", enabled=False)
    chosen = made[123]
    gateway.create_usage_plan_key(usagePlanId=api["plan"], keyId=chosen["id"], keyType="API_KEY")
    try:
        find = cloud._gateway.app.gateway.admission.find_key
        assert all(find(key["value"])["id"] == key["id"] for key in made)
        assert find(disabled["value"]) is None
        assert find(chosen["value"][:-1] + ("A" if chosen["value"][-1] != "A" else "B")) is None
        deadline = time.monotonic() + 10
        while post(api, "keyed", key=chosen["value"]).status_code != 201:  # paced: a new key works soon
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert post(api, "keyed", key=made[124]["value"]).status_code == 403  # in no plan of this stage
        assert post(api, "keyed", key=chosen["value"] + "x").status_code == 403
        assert post(api, "keyed", key=api["key"]).status_code == 201
    finally:
        gateway.delete_usage_plan_key(usagePlanId=api["plan"], keyId=chosen["id"])
        for key in [*made, disabled]:
            gateway.delete_api_key(apiKey=key["id"])
    assert post(api, "keyed", key=chosen["value"]).status_code == 403  # a deleted key is gone at once


# --------------------------------------------------------------------------- memory


def test_memory_per_request_stays_flat_and_function_logs_are_capped(cloud, api, monkeypatch):
    monkeypatch.setattr(lambdas, "LOG_EVENTS_PER_STREAM", 200)
    me = psutil.Process()
    with httpx.Client(timeout=30) as session:

        def burst(count: int) -> None:
            for _ in range(count):
                assert session.post(f"{api['url']}/fast", json={}).status_code == 201

        burst(500)  # warm: caches, the worker, the allocator's pools
        before = me.memory_info().rss
        burst(3000)
        grown = me.memory_info().rss - before
    assert grown < 3000 * 512, f"{grown / 3000:.0f} bytes per request"  # each kept its ~1.9 KB of logs before
    logs = client(cloud, "logs")
    streams = logs.describe_log_streams(logGroupName="/aws/lambda/limits-fast")["logStreams"]
    events = [
        len(
            logs.get_log_events(
                logGroupName="/aws/lambda/limits-fast", logStreamName=stream["logStreamName"], limit=10000
            )["events"]
        )
        for stream in streams
    ]
    assert max(events) <= 200 + 4  # the newest only (plus one invocation's lines written past the cap)


# --------------------------------------------------------------------------- kill -9, then start again


def start_cloud_process(folder: Path, ports: Ports) -> tuple[subprocess.Popen, dict]:
    state = folder / "local-cloud.json"
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
        str(state),
        "--pace",
        "0.002",
    ]
    log = (folder / "cloud.log").open("a")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    deadline = time.monotonic() + 30
    while True:
        try:
            written = json.loads(state.read_text())
            if written["pid"] == process.pid:
                return process, written["env"]
        except (FileNotFoundError, ValueError):
            pass
        assert process.poll() is None and time.monotonic() < deadline, (folder / "cloud.log").read_text()[-3000:]
        time.sleep(0.1)


def wait_for_workers(pid: int, count: int) -> list[psutil.Process]:
    """The cloud's child processes, once ``count`` of them are Lambda workers."""
    deadline = time.monotonic() + 10
    while True:
        children = psutil.Process(pid).children(recursive=True)
        if sum(any(part.endswith("lambda_runner.py") for part in child.cmdline()) for child in children) >= count:
            return children
        assert time.monotonic() < deadline, f"fewer than {count} workers started"
        time.sleep(0.05)


def lambda_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{lambdas.ROOT_PREFIX}{pid}-*"))


def test_after_kill_9_nothing_is_left_running_and_the_next_start_is_clean(tmp_path):
    ports = Ports.free()
    first, env = start_cloud_process(tmp_path, ports)
    cloud = type("Cloud", (), {"control_plane_url": env["AWS_ENDPOINT_URL"]})()
    iam, lam = client(cloud, "iam"), client(cloud, "lambda", NO_RETRIES)
    role = iam.create_role(RoleName="killed-role", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    create_function(cloud, "killed-sleeper", SLEEPER, role)
    lam.invoke(FunctionName="killed-sleeper", InvocationType="Event", Payload=b'{"s": 60}')  # a busy worker
    wait_for_workers(first.pid, 1)
    assert lam.invoke(FunctionName="killed-sleeper", Payload=b"{}")["StatusCode"] == 200  # and an idle one
    children = wait_for_workers(first.pid, 2)
    assert lambda_folders(first.pid)

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], [process.cmdline() for process in alive]  # workers and the runtime exited with it
    state = tmp_path / "local-cloud.json"
    assert json.loads(state.read_text())["pid"] == first.pid  # what SIGKILL leaves behind
    assert lambda_folders(first.pid)

    second, _ = start_cloud_process(tmp_path, ports)
    try:
        log = (tmp_path / "cloud.log").read_text()
        assert f"left by a local cloud that did not stop (pid {first.pid})" in log
        assert lambda_folders(first.pid) == []
        assert json.loads(state.read_text())["pid"] == second.pid
        assert [
            process
            for process in psutil.process_iter(["status"])
            if process.info["status"] == psutil.STATUS_ZOMBIE and process.ppid() in (os.getpid(), second.pid)
        ] == []
    finally:
        second.terminate()
        second.wait(20)
    assert not state.exists() and lambda_folders(second.pid) == []
