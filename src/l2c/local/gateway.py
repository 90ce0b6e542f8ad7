"""The execute-api data plane of the local cloud: what ``https://{api}.execute-api...`` does on AWS.

moto stores REST APIs but does not serve Lambda proxy routes, so this gateway does, reading the
API from the control plane on every request (a redeploy shows at once):

1. ``/{stage}/{path}`` (or ``/restapis/{api}/{stage}/_user_request_/{path}``, or a
   ``{api}.execute-api.*`` Host header) -> REST API, stage, resource and method; no route ->
   403 ``Missing Authentication Token``, as AWS answers.
2. A method that requires an API key gets one from ``x-api-key``: unknown, disabled, or not in
   a usage plan of this stage -> 403 ``Forbidden``; over the plan's throttle (token bucket of
   rate and burst) or quota -> 429.
3. Only Lambda proxy integrations (``AWS_PROXY``) are served; the function's resource policy
   must allow API Gateway to invoke it from this method's ARN (else 500, as on AWS).
4. The REST proxy event is built, the deployed function runs in its worker, and its answer is
   checked: not a proxy response -> 502 (``Malformed Lambda proxy response``), handler error or
   crash -> 502, timeout -> 504.

What differs from AWS: routes come from the API's current resources, not from the snapshot the
stage's deployment froze; stage-level throttling, authorizers, request validation, mapping
templates and non-proxy integrations are not served.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from l2c.local.lambdas import MAX_WORKERS_PER_FUNCTION, InvocationCrashed, InvocationTimeout, LambdaHost
from l2c.serving.server import RunningServer, start_in_thread

# API Gateway's limits: 10 MB payload, 29 s integration timeout.
MAX_BODY_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_S = 29.0
# A client that goes quiet (mid-body, or on an idle keep-alive connection) is cut off after
# this long, so slow or stalled senders cannot hold connections open indefinitely.
CLIENT_TIMEOUT_S = 30.0
_PROXY_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
_HOST_API = re.compile(r"^(?P<api>[a-z0-9]+)\.execute-api\.")
_EXPLICIT = re.compile(r"^/restapis/(?P<api>[^/]+)/(?P<stage>[^/]+)/_user_request_(?P<path>/.*)?$")
log = logging.getLogger("l2c.local.gateway")


class GatewayError(Exception):
    """An answer API Gateway itself gives, before or instead of the integration's."""

    def __init__(self, status: int, message: str, error_type: str):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


def _missing_route() -> GatewayError:
    return GatewayError(403, "Missing Authentication Token", "MissingAuthenticationTokenException")


def _forbidden() -> GatewayError:
    return GatewayError(403, "Forbidden", "ForbiddenException")


def _internal_error() -> GatewayError:
    return GatewayError(502, "Internal server error", "InternalServerErrorException")


@dataclass
class Request:
    method: str
    path: str  # as received, with the query string
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in reversed(self.headers) if key.lower() == name.lower()), None)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Route:
    api_id: str
    stage: dict
    resource: dict
    method: dict
    verb: str
    path: str  # the request path without the stage
    path_parameters: dict[str, str]


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.capacity = max(rate, 0.0), max(burst, 0)
        self.tokens, self.updated = float(self.capacity), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class Gateway:
    def __init__(self, boto_session, control_plane_url: str, lambdas: LambdaHost):
        self._apigateway = boto_session.client("apigateway", endpoint_url=control_plane_url)
        self._lambdas = lambdas
        self._buckets: dict[tuple, TokenBucket] = {}
        self._quota_used: dict[tuple, int] = {}
        self._limits_lock = threading.Lock()

    # ----------------------------------------------------------------------- one request

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            response = self._serve(request, request_id)
        except GatewayError as err:
            response = _json_response(err.status, {"message": err.message}, request_id, err.error_type)
        log.info("%s %s -> %d (%.0f ms)", request.method, request.path, response.status, (time.monotonic() - started) * 1000)
        return response

    def _serve(self, request: Request, request_id: str) -> Response:
        if len(request.body) > MAX_BODY_BYTES:
            raise GatewayError(413, "Request Too Long", "RequestTooLongException")
        route = self.route(request)
        key = self._check_key(route, request)
        function_arn = _function_arn(route.method)
        config = self._lambdas.configuration(function_arn)
        self._check_permission(route, config)
        event = proxy_event(route, request, request_id, key)
        timeout = min(float(config.get("Timeout", 3)), INTEGRATION_TIMEOUT_S)
        try:
            invocation = self._lambdas.invoke(config, event, timeout)
        except InvocationTimeout:
            raise GatewayError(504, "Endpoint request timed out", "IntegrationTimeout") from None
        except InvocationCrashed as crash:
            log.warning("%s crashed: %s", config["FunctionName"], crash)
            raise _internal_error() from None
        if not invocation.ok:
            log.warning("%s failed: %s", config["FunctionName"], invocation.payload)
            raise _internal_error()
        return proxy_response(invocation.payload, request_id)

    # ----------------------------------------------------------------------- routing

    def route(self, request: Request) -> Route:
        api_id, stage_name, path = _split_target(request)
        verb = request.method.upper()
        candidates = [api_id] if api_id else [api["id"] for api in self._rest_apis()]
        for candidate in candidates:
            stage = self._stage(candidate, stage_name)
            if stage is None:
                continue
            match = self._match(candidate, path, verb)
            if match is not None:
                resource, method, params = match
                return Route(candidate, stage, resource, method, verb, path, params)
        raise _missing_route()

    def _rest_apis(self) -> list[dict]:
        paginator = self._apigateway.get_paginator("get_rest_apis")
        return [api for page in paginator.paginate() for api in page["items"]]

    def _stage(self, api_id: str, stage: str) -> dict | None:
        try:
            return self._apigateway.get_stage(restApiId=api_id, stageName=stage)
        except self._apigateway.exceptions.NotFoundException:
            return None

    def _match(self, api_id: str, path: str, verb: str):
        paginator = self._apigateway.get_paginator("get_resources")
        resources = [item for page in paginator.paginate(restApiId=api_id, embed=["methods"]) for item in page["items"]]
        for resource in sorted(resources, key=_specificity, reverse=True):
            params = _path_parameters(resource["path"], path)
            methods = resource.get("resourceMethods") or {}
            method = methods.get(verb) or methods.get("ANY")
            if params is not None and method is not None:
                return resource, method, params
        return None

    # ----------------------------------------------------------------------- API key and usage plan

    def _check_key(self, route: Route, request: Request) -> dict | None:
        if not route.method.get("apiKeyRequired"):
            return None
        value = request.header("x-api-key")
        if not value:
            raise _forbidden()
        key = self._find_key(value)
        if key is None:
            raise _forbidden()
        plans = [
            plan
            for plan in self._apigateway.get_usage_plans(keyId=key["id"])["items"]
            if any(s["apiId"] == route.api_id and s["stage"] == route.stage["stageName"] for s in plan.get("apiStages", []))
        ]
        if not plans:
            raise _forbidden()
        for plan in plans:
            self._charge(plan, key["id"])
        return key

    def _find_key(self, value: str) -> dict | None:
        paginator = self._apigateway.get_paginator("get_api_keys")
        for page in paginator.paginate(includeValues=True):
            for key in page["items"]:
                if key.get("value") == value and key.get("enabled"):
                    return key
        return None

    def _charge(self, plan: dict, key_id: str) -> None:
        """Count one request against the plan: quota first (429 Limit Exceeded), then the throttle."""
        window = _quota_window(plan, key_id)
        with self._limits_lock:
            if window is not None and self._quota_used.get(window, 0) >= plan["quota"]["limit"]:
                raise GatewayError(429, "Limit Exceeded", "LimitExceededException")
            bucket = self._bucket(plan, key_id)
        if bucket is not None and not bucket.take():
            raise GatewayError(429, "Too Many Requests", "TooManyRequestsException")
        if window is not None:
            with self._limits_lock:
                self._quota_used[window] = self._quota_used.get(window, 0) + 1

    def _bucket(self, plan: dict, key_id: str) -> TokenBucket | None:
        throttle = plan.get("throttle")
        if not throttle:
            return None
        rate, burst = float(throttle.get("rateLimit", 0)), int(throttle.get("burstLimit", 0))
        # Keyed by the limits too: a plan updated with new limits starts a fresh bucket.
        key = (plan["id"], key_id, rate, burst)
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(rate, burst)
        return self._buckets[key]

    # ----------------------------------------------------------------------- Lambda permission

    def _check_permission(self, route: Route, config: dict) -> None:
        arn_parts = config["FunctionArn"].split(":")
        partition, region, account = arn_parts[1], arn_parts[3], arn_parts[4]
        source = (
            f"arn:{partition}:execute-api:{region}:{account}:{route.api_id}/"
            f"{route.stage['stageName']}/{route.verb}{route.resource['path']}"
        )
        for statement in self._lambdas.resource_policy(config["FunctionArn"]):
            if _allows_api_gateway(statement, source):
                return
        log.warning("no permission lets API Gateway invoke %s from %s", config["FunctionName"], source)
        raise GatewayError(500, "Internal server error", "InternalServerErrorException")


# --------------------------------------------------------------------------- pure helpers


def _split_target(request: Request) -> tuple[str | None, str, str]:
    raw_path = urlsplit(request.path).path
    explicit = _EXPLICIT.match(raw_path)
    if explicit:
        return explicit["api"], explicit["stage"], unquote(explicit["path"] or "/")
    host = _HOST_API.match(request.header("host") or "")
    stage, _, rest = raw_path.lstrip("/").partition("/")
    if not stage:
        raise _missing_route()
    return (host["api"] if host else None), stage, "/" + unquote(rest)


def _specificity(resource: dict) -> tuple[int, int]:
    segments = [segment for segment in resource["path"].split("/") if segment]
    literal = sum(1 for segment in segments if not segment.startswith("{"))
    greedy = any(segment.endswith("+}") for segment in segments)
    return (0 if greedy else 1, literal)


def _path_parameters(template: str, path: str) -> dict[str, str] | None:
    pattern = ""
    for segment in [segment for segment in template.split("/") if segment]:
        if segment.startswith("{") and segment.endswith("+}"):
            pattern += f"/(?P<{segment[1:-2]}>.+)"
        elif segment.startswith("{") and segment.endswith("}"):
            pattern += f"/(?P<{segment[1:-1]}>[^/]+)"
        else:
            pattern += "/" + re.escape(segment)
    match = re.fullmatch(pattern or "/", path.rstrip("/") or "/")
    return match.groupdict() if match else None


def _function_arn(method: dict) -> str:
    integration = method.get("methodIntegration") or {}
    uri = integration.get("uri", "")
    if integration.get("type") != "AWS_PROXY" or "/functions/" not in uri:
        log.warning("integration %s %s is not a Lambda proxy integration", integration.get("type"), uri)
        raise GatewayError(500, "Internal server error", "InternalServerErrorException")
    return uri.split("/functions/", 1)[1].rsplit("/invocations", 1)[0]


def _allows_api_gateway(statement: dict, source_arn: str) -> bool:
    principal = statement.get("Principal")
    service = principal.get("Service") if isinstance(principal, dict) else principal
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else actions or []
    if statement.get("Effect") != "Allow" or service not in ("apigateway.amazonaws.com", "*"):
        return False
    if not {"lambda:InvokeFunction", "lambda:*", "*"} & set(actions):
        return False
    conditions = statement.get("Condition", {}).get("ArnLike", {})
    allowed = conditions.get("AWS:SourceArn") or conditions.get("aws:SourceArn")
    return allowed is None or _arn_like(allowed, source_arn)


def _arn_like(pattern: str, arn: str) -> bool:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, arn) is not None


def _quota_window(plan: dict, key_id: str) -> tuple | None:
    quota = plan.get("quota")
    if not quota:
        return None
    return plan["id"], key_id, quota["period"], _period_start(quota["period"]), quota["limit"]


def _period_start(period: str) -> str:
    now = time.gmtime()
    if period == "DAY":
        return time.strftime("%Y-%m-%d", now)
    if period == "WEEK":
        return time.strftime("%Y-W%W", now)
    return time.strftime("%Y-%m", now)


def proxy_event(route: Route, request: Request, request_id: str, key: dict | None) -> dict:
    """The REST API (v1) Lambda proxy event, field for field as API Gateway sends it."""
    query = parse_qsl(urlsplit(request.path).query, keep_blank_values=True)
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        multi_query.setdefault(name, []).append(value)
    body, is_base64 = _event_body(request.body)
    now = time.time()
    host = request.header("host") or ""
    stage = route.stage["stageName"]
    return {
        "resource": route.resource["path"],
        "path": route.path,
        "httpMethod": route.verb,
        "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": route.path_parameters or None,
        "stageVariables": route.stage.get("variables") or None,
        "requestContext": {
            "resourceId": route.resource["id"],
            "resourcePath": route.resource["path"],
            "httpMethod": route.verb,
            "extendedRequestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{route.path}",
            "accountId": _account_of(route.method),
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "cognitoIdentityId": None,
                "apiKey": key["value"] if key else None,
                "apiKeyId": key["id"] if key else None,
                "principalOrgId": None,
                "cognitoAuthenticationType": None,
                "userArn": None,
                "userAgent": request.header("user-agent"),
                "accountId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "accessKey": None,
                "cognitoAuthenticationProvider": None,
                "user": None,
            },
            "domainName": host,
            "deploymentId": route.stage.get("deploymentId"),
            "apiId": route.api_id,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _event_body(raw: bytes) -> tuple[str | None, bool]:
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), True


def _account_of(method: dict) -> str:
    return _function_arn(method).split(":")[4]


def proxy_response(result, request_id: str) -> Response:
    """Check a Lambda proxy answer as API Gateway does and turn it into the HTTP response."""
    if not isinstance(result, dict) or not set(result) <= _PROXY_KEYS:
        log.warning("Malformed Lambda proxy response: %.200r", result)
        raise _internal_error()
    status = result.get("statusCode")
    body = result.get("body")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or not 100 <= status <= 599 or not isinstance(body, (str, type(None))):
        log.warning("Malformed Lambda proxy response: %.200r", result)
        raise _internal_error()
    headers = {"Content-Type": "application/json"}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ",".join(str(value) for value in values)
    headers.update({name: str(value) for name, value in (result.get("headers") or {}).items()})
    headers.update(_gateway_headers(request_id))
    payload = (body or "").encode()
    if result.get("isBase64Encoded"):
        payload = base64.b64decode(payload)
    return Response(status, headers, payload)


def _gateway_headers(request_id: str) -> dict[str, str]:
    return {
        "x-amzn-RequestId": request_id,
        "x-amz-apigw-id": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
    }


def _json_response(status: int, body: dict, request_id: str, error_type: str) -> Response:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type, **_gateway_headers(request_id)}
    return Response(status, headers, json.dumps(body).encode())


# --------------------------------------------------------------------------- HTTP


async def _refuse(send, scope: dict, status: int, message: str) -> None:
    """Answer before the body was read (too long, too slow), then close."""
    client = (scope.get("client") or ("?",))[0]
    log.warning("%s %s from %s -> %d %s", scope["method"], _target(scope), client, status, message)
    payload = json.dumps({"message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"connection", b"close")]
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
        # Gateway.handle blocks until a Lambda worker answers (up to 29 s); each function has
        # at most MAX_WORKERS_PER_FUNCTION workers, so this many threads keep several functions
        # busy at once while a hung one cannot starve the event loop of threads.
        self.executor = ThreadPoolExecutor(8 * MAX_WORKERS_PER_FUNCTION, thread_name_prefix="l2c-gateway")

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        names = scope.get(_RAW_NAMES) or [name.decode("latin-1") for name, _ in scope["headers"]]
        headers = [(name, value.decode("latin-1")) for name, (_, value) in zip(names, scope["headers"])]
        request = Request(scope["method"], _target(scope), headers, body, (scope.get("client") or ("",))[0])
        try:
            response = await asyncio.get_running_loop().run_in_executor(self.executor, self.gateway.handle, request)
        except Exception:  # into our log rather than uvicorn's traceback on stderr
            log.exception("serving %s %s failed", request.method, request.path)
            response = Response(500, {"Content-Type": "application/json"}, b'{"message": "Internal server error"}')
        # The Lambda's own framing headers would contradict the body as we send it.
        out = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()
               if name.lower() not in ("content-length", "transfer-encoding")]
        out.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else response.body})

    async def _read_body(self, scope: dict, receive, send) -> bytes | None:
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _refuse(send, scope, 413, "Request Too Long")
            return None
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.client_timeout_s)
            except asyncio.TimeoutError:
                await _refuse(send, scope, 408, "Request Timeout")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:  # chunked bodies declare no length up front
                await _refuse(send, scope, 413, "Request Too Long")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


# ASGI lower-cases header names, but API Gateway hands the function the names as the client
# sent them (``event["headers"]["X-Caller"]``), so the httptools protocol also keeps them.
_RAW_NAMES = "l2c.raw_header_names"


def _protocol_options() -> dict:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # h11 fallback: names arrive lower-cased
        return {}

    class CasePreservingProtocol(HttpToolsProtocol):
        def on_header(self, name: bytes, value: bytes) -> None:
            super().on_header(name, value)
            self.scope.setdefault(_RAW_NAMES, []).append(name.decode("latin-1"))

    return {"http": CasePreservingProtocol}


class GatewayServer:
    """The gateway on host:port, served by uvicorn from a background thread."""

    def __init__(self, gateway: Gateway, host: str, port: int):
        self.app = _GatewayApp(gateway, CLIENT_TIMEOUT_S)
        self.host, self.port = host, port
        self.running: RunningServer | None = None

    @property
    def client_timeout_s(self) -> float:
        return self.app.client_timeout_s

    @client_timeout_s.setter
    def client_timeout_s(self, seconds: float) -> None:
        self.app.client_timeout_s = seconds

    def start(self) -> "GatewayServer":
        self.running = start_in_thread(self.app, self.host, self.port, timeout_keep_alive=CLIENT_TIMEOUT_S,
                                       **_protocol_options())
        return self

    @property
    def url(self) -> str:
        return self.running.url if self.running else f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(5)
            self.running = None
        self.app.executor.shutdown(wait=False, cancel_futures=True)
