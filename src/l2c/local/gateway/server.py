"""The gateway's HTTP front end: uvicorn, bounding what one client may cost, handing requests to the gateway.

Request line and headers over 10240 bytes together -> 431 before any routing; :data:`GATEWAY_LIMITS`
bounds head sizes, slow and idle connections and the number of connections; a body over 10 MB
is refused (413) without being read further.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from resource import RLIM_INFINITY, RLIMIT_NOFILE, getrlimit

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from l2c.local.gateway.messages import GatewayError, Request, Response
from l2c.local.gateway.quotas import MAX_BODY_BYTES, MAX_HEADER_BYTES
from l2c.local.gateway.service import Gateway
from l2c.serving.http_limits import HEADER_TOO_LARGE, TIMED_OUT, URI_TOO_LARGE, HttpLimits, LimitedHttpProtocol
from l2c.serving.server import RunningServer, start_in_thread

# A client that goes quiet (mid-body, or on an idle keep-alive connection) is cut off after
# this long, so slow or stalled senders cannot hold connections open indefinitely.
CLIENT_TIMEOUT_S = 30.0
log = logging.getLogger("l2c.local.gateway")


async def _refuse(send, scope: dict, status: int, message: str) -> None:
    """Answer before the body was read (too long, too slow), then close."""
    client = (scope.get("client") or ("?",))[0]
    log.warning("%s %s from %s -> %d %s", scope["method"], _target(scope), client, status, message)
    payload = json.dumps({"message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _target(scope: dict) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return (path + b"?" + query if query else path).decode("latin-1")


class _GatewayApp:
    """The gateway as a bare ASGI app: reads the body, then runs ``Gateway.handle`` in a thread."""

    def __init__(self, gateway: Gateway, client_timeout_s: float):
        self.gateway = gateway
        self.client_timeout_s = client_timeout_s
        # Gateway.handle holds its thread while a function runs (up to 29 s), but never waits for
        # one to be free: past its concurrency a function is throttled at once. So the threads
        # busy with functions are at most the executions Lambda lets run, and routing, key checks
        # and refusals (milliseconds each) always find a thread among these (made as needed).
        self.executor = ThreadPoolExecutor(GATEWAY_THREADS, thread_name_prefix="l2c-gateway")

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        names = scope.get(_RAW_NAMES) or [name.decode("latin-1") for name, _ in scope["headers"]]
        headers = [(name, value.decode("latin-1")) for name, (_, value) in zip(names, scope["headers"])]
        too_large = body is _TOO_LARGE
        request = Request(
            scope["method"], _target(scope), headers, b"" if too_large else body, (scope.get("client") or ("",))[0]
        )
        try:
            if too_large:
                # REQUEST_TOO_LARGE is a gateway response like any other ("Gateway response types",
                # 413): the API's DEFAULT_4XX headers apply, so a browser can read the refusal.
                log.warning("%s %s from %s -> 413 Request Too Long", request.method, request.path, request.source_ip)
                refusal = GatewayError(413, "Request Too Long", "RequestTooLongException", "REQUEST_TOO_LARGE")
                work, arguments = self.gateway.refuse, (request, refusal)
            else:
                work, arguments = self.gateway.handle, (request,)
            response = await asyncio.get_running_loop().run_in_executor(self.executor, work, *arguments)
        except Exception:  # into our log rather than uvicorn's traceback on stderr
            log.exception("serving %s %s failed", request.method, request.path)
            response = Response(500, {"Content-Type": "application/json"}, b'{"message": "Internal server error"}')
        # The Lambda's own framing headers would contradict the body as we send it.
        framing = ("content-length", "transfer-encoding") + (("connection",) if too_large else ())
        out = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
            if name.lower() not in framing
        ]
        out.append((b"content-length", str(len(response.body)).encode()))
        if too_large:  # the rest of the body is never read: the connection cannot carry another request
            out.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else response.body})

    async def _read_body(self, scope: dict, receive, send) -> bytes | object | None:
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _TOO_LARGE
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.client_timeout_s)
            except TimeoutError:
                await _refuse(send, scope, 408, "Request Timeout")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:  # chunked bodies declare no length up front
                return _TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


# What _read_body answers for a body over MAX_BODY_BYTES (not read any further).
_TOO_LARGE = object()
# ASGI lower-cases header names, but API Gateway hands the function the names as the client
# sent them (``event["headers"]["X-Caller"]``), so the protocol also keeps them.
_RAW_NAMES = "l2c.raw_header_names"
GATEWAY_THREADS = 256

# What one client may cost the gateway before any routing, as API Gateway's front end bounds it.
# AWS's figures ("Quotas for configuring and running a REST API in API Gateway"): the URL of a
# regional API at most 10240 characters, request line and header values together at most 10240
# bytes (check_header_size, which answers 431), a 10 MB payload (MAX_BODY_BYTES). A head is read
# no further than HEAD_BYTES (twice that: room for the header names and separators the AWS count
# leaves out), so a 64 MB header costs nothing but its refusal, the same 431. AWS publishes no
# header, body or idle timeouts for REST APIs, nor a connection cap: ours are 30 s of silence
# (answered 408, as a load balancer answers), 30 s idle between requests, and 2048 connections
# (fewer when the process may open fewer files: CONNECTION_SHARE of them).
HEAD_BYTES = 2 * MAX_HEADER_BYTES
GATEWAY_LIMITS = HttpLimits(
    request_line_bytes=MAX_HEADER_BYTES,
    header_line_bytes=HEAD_BYTES,
    head_bytes=HEAD_BYTES,
    request_line_status=431,
    header_seconds=CLIENT_TIMEOUT_S,
    body_seconds=CLIENT_TIMEOUT_S,
    keep_alive_seconds=CLIENT_TIMEOUT_S,
    answer_timeouts=True,
    max_connections=2048,
    linger_seconds=30.0,
    linger_idle_seconds=5.0,
)
# Connections may take at most this share of the process's open-file limit: moto, the Lambda
# workers' pipes and the edge need the rest.
CONNECTION_SHARE = 0.25
# The front end's refusals in the gateway's own words and shape (JSON, as its other errors).
_FRONT_END_ANSWERS = {
    HEADER_TOO_LARGE[1]: (431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge"),
    URI_TOO_LARGE[1]: (431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge"),
    TIMED_OUT[1]: (408, "Request Timeout", None),
}


class GatewayHttpProtocol(LimitedHttpProtocol):
    """uvicorn's httptools protocol with the gateway's limits, keeping header names as sent."""

    limits = GATEWAY_LIMITS

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.scope.setdefault(_RAW_NAMES, []).append(name.decode("latin-1"))

    def _write_page(self, status: int, title: str) -> None:
        answer = _FRONT_END_ANSWERS.get(title)
        if answer is None:  # a malformed request: the front end's plain 400
            super()._write_page(status, title)
            return
        status, message, error_type = answer
        self._socket.write(refusal_bytes(status, message, error_type, self.server_state.default_headers))


def refusal_bytes(status: int, message: str, error_type: str | None, default_headers=()) -> bytes:
    body = json.dumps({"message": message}).encode()
    lines = [STATUS_LINE[status]]
    for name, value in default_headers:
        lines.append(name + b": " + value + b"\r\n")
    headers = {"content-type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}
    if error_type:
        headers["x-amzn-ErrorType"] = error_type
    headers |= {"content-length": str(len(body)), "connection": "close"}
    lines += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
    return b"".join(lines) + b"\r\n" + body


def protocol_with(limits: HttpLimits) -> type[GatewayHttpProtocol]:
    """The gateway's protocol with other limits (short timeouts in tests), and a connection cap
    the process's open-file limit can hold."""
    limits = replace(limits, max_connections=min(limits.max_connections, connection_budget()))
    if limits == GatewayHttpProtocol.limits:
        return GatewayHttpProtocol
    return type("GatewayHttpProtocol", (GatewayHttpProtocol,), {"limits": limits})


def connection_budget() -> int:
    soft, _ = getrlimit(RLIMIT_NOFILE)
    return GATEWAY_LIMITS.max_connections if soft == RLIM_INFINITY else max(16, int(soft * CONNECTION_SHARE))


class GatewayServer:
    """The gateway on host:port, served by uvicorn from a background thread."""

    def __init__(self, gateway: Gateway, host: str, port: int, limits: HttpLimits = GATEWAY_LIMITS):
        self.app = _GatewayApp(gateway, limits.body_seconds)
        self.host, self.port = host, port
        self.protocol = protocol_with(limits)
        self.running: RunningServer | None = None

    @property
    def limits(self) -> HttpLimits:
        return self.protocol.limits

    @property
    def client_timeout_s(self) -> float:
        return self.app.client_timeout_s

    @client_timeout_s.setter
    def client_timeout_s(self, seconds: float) -> None:
        self.app.client_timeout_s = seconds

    def start(self) -> GatewayServer:
        self.running = start_in_thread(self.app, self.host, self.port, limits=self.limits, http=self.protocol)
        return self

    @property
    def url(self) -> str:
        return self.running.url if self.running else f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(5)
            self.running = None
        self.app.executor.shutdown(wait=False, cancel_futures=True)
