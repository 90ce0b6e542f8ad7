"""Hostile and careless HTTP clients against both faces over loopback: oversized heads, slow
heads and bodies, idle connections, too many connections, bodies written before the answer
is read, and good requests pipelined before garbage. Timeouts are shortened per server (the
defaults are asserted separately); every wait is bounded."""

import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

import boto3
import httpx
import numpy as np
import pytest
import xgboost as xgb
from botocore.config import Config
from botocore.exceptions import ClientError

from l2c.artifact import load_artifact, write_tarball
from l2c.serving.container import TOO_LARGE_PAGE, container_app
from l2c.serving.engine import ContainerSettings
from l2c.serving.http_limits import CONTAINER_LIMITS, RUNTIME_LIMITS, ContainerHttpProtocol, RuntimeHttpProtocol
from l2c.serving.runtime_api import MAX_PAYLOAD_BYTES, RuntimeApp
from l2c.serving.server import _config, _run_options, start_container_in_thread, start_in_thread

ROW = b"0.5,1.0,-1.0"
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(5)
    features = rng.normal(size=(100, 3))
    booster = xgb.train({"nthread": 1, "max_depth": 2}, xgb.DMatrix(features, label=features[:, 0]), 3)
    return write_tarball(booster, tmp_path_factory.mktemp("limits") / "model.tar.gz")


def container(model, **limits):
    return start_container_in_thread(model, settings=ContainerSettings(), limits=replace(CONTAINER_LIMITS, **limits))


class NoControlPlane:
    """The Runtime-API face's answers tested here (ping, 413, front-end refusals) need no endpoint."""

    region = "us-east-1"

    def account_id(self) -> str:
        return "123456789012"


def runtime(**limits):
    app = RuntimeApp(control_plane=NoControlPlane(), refresh_seconds=60.0, rng=random.Random(0))
    return start_in_thread(app, limits=replace(RUNTIME_LIMITS, **limits))


# --------------------------------------------------------------------------- raw-socket helpers


def connect(server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def invocation(body: bytes = ROW, path: str = "/invocations", extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n%s\r\n"
        % (path.encode(), len(body), extra)
    ) + body


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict, bytes]:
    """One response off the socket (content-length framed); what follows stays in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response head: {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        rest += chunk
    buffer[:] = rest[length:]
    return int(status_line.split()[1]), headers, rest[:length]


def wait_for_close(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (a reset counts as closing), and when."""
    sock.settimeout(timeout)
    start = time.monotonic()
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {timeout} s") from None
    return received, time.monotonic() - start


def ping(client: httpx.Client) -> int:
    return client.get("/ping").status_code


# --------------------------------------------------------------------------- defaults


def test_the_container_face_defaults_are_its_nginx():
    assert (CONTAINER_LIMITS.request_line_bytes, CONTAINER_LIMITS.header_line_bytes) == (8192, 8192)
    assert CONTAINER_LIMITS.head_bytes == 4 * 8192
    assert CONTAINER_LIMITS.request_line_status == 414
    assert (CONTAINER_LIMITS.header_seconds, CONTAINER_LIMITS.body_seconds) == (60, 60)
    assert CONTAINER_LIMITS.keep_alive_seconds == 3
    assert CONTAINER_LIMITS.answer_timeouts is False
    assert CONTAINER_LIMITS.max_connections == 2048
    assert (CONTAINER_LIMITS.linger_seconds, CONTAINER_LIMITS.linger_idle_seconds) == (30, 5)


def test_the_runtime_face_defaults_are_an_aws_load_balancers():
    assert (RUNTIME_LIMITS.request_line_bytes, RUNTIME_LIMITS.header_line_bytes) == (16384, 16384)
    assert RUNTIME_LIMITS.head_bytes == 65536
    assert RUNTIME_LIMITS.request_line_status == 400
    assert RUNTIME_LIMITS.keep_alive_seconds == 60
    assert RUNTIME_LIMITS.answer_timeouts is True
    assert (RUNTIME_LIMITS.header_seconds, RUNTIME_LIMITS.body_seconds) == (60, 60)


def test_each_face_is_served_with_its_own_limits(model):
    container_config = _config(container_app(load_artifact(model), ContainerSettings()), "127.0.0.1", 0)
    runtime_config = _config(RuntimeApp(control_plane=NoControlPlane()), "127.0.0.1", 0)
    assert (container_config.http, container_config.timeout_keep_alive) == (ContainerHttpProtocol, 3)
    assert (runtime_config.http, runtime_config.timeout_keep_alive) == (RuntimeHttpProtocol, 60)
    assert container_config.ws == runtime_config.ws == "none"
    # `l2c serve` (uvicorn.run, worker processes) gets the same.
    assert _run_options("127.0.0.1", 8080)["http"] is ContainerHttpProtocol
    assert _run_options("127.0.0.1", 8081, RUNTIME_LIMITS)["timeout_keep_alive"] == 60


# --------------------------------------------------------------------------- oversized heads


def test_a_request_line_over_8k_is_414_and_one_under_is_served(model):
    with container(model) as server:
        sock = connect(server)
        sock.sendall(b"GET /ping?" + b"a" * 8000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, _ = read_response(sock, bytearray())
        assert status == 200
        sock = connect(server)
        sock.sendall(b"GET /ping?" + b"a" * 8200 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        buffer = bytearray()
        status, headers, body = read_response(sock, buffer)
        assert status == 414
        assert headers["content-type"] == "text/html" and headers["connection"] == "close"
        assert b"<title>414 Request-URI Too Large</title>" in body
        assert wait_for_close(sock, 5)[0] == b""


def test_a_header_line_over_8k_is_400_request_header_or_cookie_too_large(model):
    with container(model) as server:
        sock = connect(server)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 8200 + b"\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
        assert status == 400
        assert b"<title>400 Request Header Or Cookie Too Large</title>" in body
        # Lines under 8k each, but more than the four 8k buffers together.
        sock = connect(server)
        many = b"".join(b"X-Part-%d: %s\r\n" % (i, b"c" * 7000) for i in range(5))
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n")
        status, _, body = read_response(sock, bytearray())
        assert status == 400 and b"Request Header Or Cookie Too Large" in body
        # Four of them fit.
        sock = connect(server)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n" + many[: 4 * len(many) // 5] + b"\r\n")
        assert read_response(sock, bytearray())[0] == 200


def test_a_64_mb_header_is_refused_at_once_while_others_are_served(model):
    with container(model) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        sock = connect(server)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Flood: ")
        start = time.monotonic()

        def flood():
            chunk = b"f" * 65536
            try:
                for _ in range(1024):  # 64 MB
                    sock.sendall(chunk)
            except OSError:
                pass

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        status, _, body = read_response(sock, bytearray())
        assert status == 400 and b"Request Header Or Cookie Too Large" in body
        assert time.monotonic() - start < 2.0
        # What the client still sends is dropped unparsed: the others are answered meanwhile.
        answered = [ping(client) for _ in range(20)]
        flooder.join(15)
        assert answered == [200] * 20
        assert not flooder.is_alive()


def test_the_runtime_face_refuses_heads_over_an_aws_load_balancers_limits():
    with runtime() as server:
        sock = connect(server)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 16000 + b"\r\n\r\n")
        assert read_response(sock, bytearray())[0] == 200
        sock = connect(server)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 16400 + b"\r\n\r\n")
        assert read_response(sock, bytearray())[0] == 400
        sock = connect(server)
        sock.sendall(b"GET /ping?" + b"a" * 16400 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
        assert status == 400 and b"<title>400 " in body


# --------------------------------------------------------------------------- slow and idle clients


def drip(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(every):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def test_a_slowloris_is_cut_off_at_the_header_timeout_while_others_are_served(model):
    with container(model, header_seconds=2.0) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        sock = connect(server)
        stop = threading.Event()
        started = time.monotonic()
        threading.Thread(
            target=drip, args=(sock, b"GET /ping HTTP/1.1\r\nHost: localhost\r\n" * 10, 1.0, stop), daemon=True
        ).start()
        answered = 0
        while time.monotonic() - started < 1.5:
            answered += ping(client) == 200
        received, _ = wait_for_close(sock, 6)
        stop.set()
        cut_after = time.monotonic() - started
        assert received == b""  # nginx closes a timed-out head without an answer
        assert 1.9 < cut_after < 4.0
        assert answered > 20


def test_fifty_slow_heads_after_a_first_request_are_all_cut_off_and_cost_the_others_nothing(model):
    with container(model, header_seconds=1.5) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        slow = []
        for _ in range(50):
            sock = connect(server)
            sock.sendall(invocation())
            assert read_response(sock, bytearray())[0] == 200
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: loc")  # the next head never ends
            slow.append(sock)
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < 1.0:
            answered += ping(client) == 200
        for sock in slow:
            assert wait_for_close(sock, 4)[0] == b""
        assert time.monotonic() - started < 3.5
        assert answered > 20


def test_the_runtime_face_answers_a_slow_head_with_408():
    with runtime(header_seconds=1.0) as server:
        sock = connect(server)
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: loc")
        received, waited = wait_for_close(sock, 5)
        assert received.startswith(b"HTTP/1.1 408 ")
        assert b"<title>408 Request Time-out</title>" in received
        assert 0.9 < waited < 3.0


def test_a_connection_that_never_sends_is_closed_at_the_header_timeout(model):
    with container(model, header_seconds=1.0) as server:
        received, waited = wait_for_close(connect(server), 5)
        assert received == b"" and 0.9 < waited < 3.0


def test_a_stalled_body_is_cut_off_after_the_body_timeout_between_reads(model):
    with container(model, body_seconds=1.0) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        sock = connect(server)
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n\r\n"
        )
        started = time.monotonic()
        # A byte every 0.5 s keeps it alive past the timeout: the timeout is between two reads.
        stop = threading.Event()
        drip(sock, b"0.5,1.0,", 0.5, stop)
        assert ping(client) == 200
        received, _ = wait_for_close(sock, 5)
        cut_after = time.monotonic() - started
        assert received == b""
        assert 4.5 < cut_after < 7.0


def test_the_runtime_face_answers_a_stalled_body_with_408():
    with runtime(body_seconds=1.0) as server:
        sock = connect(server)
        sock.sendall(invocation(b"0.5,1.0,-1.0", "/endpoints/demo/invocations")[:-4])
        received, waited = wait_for_close(sock, 5)
        assert received.startswith(b"HTTP/1.1 408 ")
        assert 0.9 < waited < 3.0


def test_an_idle_keep_alive_connection_is_closed_after_the_containers_3_seconds(model):
    with start_container_in_thread(model, settings=ContainerSettings()) as server:
        sock = connect(server)
        sock.sendall(invocation())
        assert read_response(sock, bytearray())[0] == 200
        received, waited = wait_for_close(sock, 8)
        assert received == b"" and 2.8 < waited < 5.0


def test_keep_alive_survives_a_body_that_arrives_in_several_reads(model):
    with container(model) as server:
        sock = connect(server)
        request = invocation()
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(request[:-5])
            time.sleep(0.2)
            sock.sendall(request[-5:])
            status, headers, _ = read_response(sock, buffer)
            assert status == 200 and headers.get("connection") != "close"


# --------------------------------------------------------------------------- connection cap


def test_connections_beyond_the_cap_are_closed_at_once_and_a_freed_place_is_reused(model):
    with container(model, max_connections=3) as server:
        held = [connect(server) for _ in range(3)]
        time.sleep(0.2)
        received, waited = wait_for_close(connect(server), 5)
        assert received == b"" and waited < 1.0
        held[0].sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(held[0], bytearray())[0] == 200
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            sock = connect(server)
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                assert read_response(sock, bytearray())[0] == 200
                break
            except (ConnectionError, OSError):
                assert time.monotonic() < deadline, "the freed place was never reused"
                time.sleep(0.05)


# --------------------------------------------------------------------------- 413 seen by clients that write first


def test_413_reaches_urllib_after_it_writes_a_10_mb_body(model):
    with start_container_in_thread(model, settings=ContainerSettings()) as server:
        request = urllib.request.Request(
            server.url + "/invocations", data=b"1" * TEN_MB, headers={"Content-Type": "text/csv"}
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 413
        assert caught.value.read() == TOO_LARGE_PAGE


def test_413_reaches_httpx_and_its_next_request_is_served(model):
    with (
        start_container_in_thread(model, settings=ContainerSettings()) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        response = client.post("/invocations", content=b"1" * TEN_MB, headers={"content-type": "text/csv"})
        assert response.status_code == 413 and response.content == TOO_LARGE_PAGE
        assert response.headers["connection"] == "close"
        assert client.post("/invocations", content=ROW, headers={"content-type": "text/csv"}).status_code == 200


def test_413_reaches_urllib_and_boto3_on_the_runtime_face():
    message = f'{{"message": "HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."}}'.encode()
    with runtime() as server:
        request = urllib.request.Request(
            server.url + "/endpoints/demo/invocations", data=b"1" * TEN_MB, headers={"Content-Type": "text/csv"}
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 413 and caught.value.read() == message
        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        with pytest.raises(ClientError) as raised:
            client.invoke_endpoint(EndpointName="demo", ContentType="text/csv", Body=b"1" * (MAX_PAYLOAD_BYTES + 1))
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert raised.value.response["Error"]["Code"] == "413"


# --------------------------------------------------------------------------- pipelining


def test_a_good_request_pipelined_before_garbage_is_answered_before_the_400(model):
    with container(model) as server:
        sock = connect(server)
        sock.sendall(invocation() + invocation(b"1.0,2.0,3.0") + b"GARBAGE \x00\x01 not http\r\n\r\n")
        buffer = bytearray()
        first = read_response(sock, buffer)
        second = read_response(sock, buffer)
        refusal = read_response(sock, buffer)
        assert (first[0], second[0]) == (200, 200)
        assert first[2] != second[2]  # each answers its own rows
        assert refusal[0] == 400 and b"<title>400 Bad Request</title>" in refusal[2]
        assert wait_for_close(sock, 5)[0] == bytes(buffer) == b""


def test_a_malformed_request_alone_is_400_and_the_connection_closes(model):
    with container(model) as server:
        sock = connect(server)
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, _ = read_response(sock, bytearray())
        assert status == 400 and headers["connection"] == "close"
        assert wait_for_close(sock, 5)[0] == b""
