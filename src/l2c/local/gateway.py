"""The execute-api data plane of the local cloud: what ``https://{api}.execute-api...`` does on AWS.

moto stores REST APIs but does not serve Lambda proxy routes, so this gateway does, reading the
API from the control plane on every request (a redeploy shows at once):

1. ``/{stage}/{path}`` (or ``/restapis/{api}/{stage}/_user_request_/{path}``, or a
   ``{api}.execute-api.*`` Host header) -> REST API, stage, resource and method; no route ->
   403 ``Missing Authentication Token``, as AWS answers.
   Request line and headers over 10240 bytes together -> 431 before any routing; the HTTP front
   end (:data:`GATEWAY_LIMITS`) bounds what a client may cost before that: head sizes, slow and
   idle connections, the number of connections.
2. The stage's method throttling (method settings ``*/*`` or the method's own: rate and
   burst for every caller together) -> 429 past it. A method that requires an API key gets one
   from ``x-api-key``: unknown, disabled, not in
   a usage plan of this stage, or created a few (paced) seconds ago -> 403 ``Forbidden``; over
   the plan's throttle (token bucket of rate and burst) or quota -> 429.
3. Lambda proxy integrations (``AWS_PROXY``): the function's resource policy must allow API
   Gateway to invoke it from this method's ARN (else 500, as on AWS); the REST proxy event is
   built, the deployed function runs in its worker, and its answer is checked: not a proxy
   response -> 502 (``Malformed Lambda proxy response``), handler error or crash -> 502,
   timeout -> 504. A function already at its concurrency (Lambda throttles the call) -> 500 at
   once: nothing waits for a function's executions, so a slow one holds up only its own callers.
4. MOCK integrations (what the console's "Enable CORS" makes for OPTIONS): the request
   template's ``statusCode`` selects the integration response, whose static header values and
   response template answer; a Content-Type no template maps is 415 under passthrough NEVER.
5. The gateway's own errors (403, 429, 413, 5xx...) are shaped by the API's gateway responses
   (``put_gateway_response``: the specific type, else DEFAULT_4XX / DEFAULT_5XX) of the API the
   request was routed to: status, static headers and a response template with
   ``$context.error.messageString``. The 431 for oversized heads and the 408 for silent clients
   come from the front end, before any API is known, and are never reshaped.

TestInvokeMethod (:meth:`Gateway.test_invoke`) runs step 3 or 4 without key or stage and
returns API Gateway's execution log.

What differs from AWS: routes come from the API's current resources, not from the snapshot the
stage's deployment froze; authorizers, request validation, VTL beyond
static templates and HTTP/AWS (non-proxy) integrations are not served.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from resource import RLIM_INFINITY, RLIMIT_NOFILE, getrlimit
from urllib.parse import parse_qsl, unquote, urlsplit

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from l2c.local.lambdas import InvocationCrashed, InvocationThrottled, InvocationTimeout, LambdaHost
from l2c.local.rules import apigateway as apigateway_rules
from l2c.serving.http_limits import HEADER_TOO_LARGE, TIMED_OUT, URI_TOO_LARGE, HttpLimits, LimitedHttpProtocol
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
    """An answer API Gateway itself gives, before or instead of the integration's.

    ``response_type`` is the gateway response (API Gateway developer guide, "Gateway response
    types") an API's ``put_gateway_response`` can reshape; None for what the front end refuses
    before any API is known."""

    def __init__(self, status: int, message: str, error_type: str, response_type: str | None = "DEFAULT"):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.response_type = response_type
        self.api_id: str | None = None  # the API the request was routed to, once known

    @property
    def shown_type(self) -> str:
        """``$context.error.responseType``: the specific type, else the default one it falls back to."""
        if self.response_type and self.response_type != "DEFAULT":
            return self.response_type
        return "DEFAULT_5XX" if self.status >= 500 else "DEFAULT_4XX"


def _missing_route() -> GatewayError:
    return GatewayError(403, "Missing Authentication Token", "MissingAuthenticationTokenException",
                        "MISSING_AUTHENTICATION_TOKEN")


def _forbidden() -> GatewayError:
    return GatewayError(403, "Forbidden", "ForbiddenException", "INVALID_API_KEY")


def _internal_error() -> GatewayError:
    return GatewayError(502, "Internal server error", "InternalServerErrorException")


def _configuration_error() -> GatewayError:
    # "Execution failed due to configuration error": the API_CONFIGURATION_ERROR gateway response
    # ("Gateway response types": an invalid API configuration, 500).
    return GatewayError(500, "Internal server error", "InternalServerErrorException", "API_CONFIGURATION_ERROR")


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
    def __init__(self, boto_session, control_plane_url: str, lambdas: LambdaHost, change_count=None):
        """``change_count() -> int``: moto's count of changes (l2c.local.control_plane.changes);
        while it stands still, the index of API keys is not rebuilt."""
        self._apigateway = boto_session.client("apigateway", endpoint_url=control_plane_url)
        self._lambdas = lambdas
        self._buckets: dict[tuple, TokenBucket] = {}
        self._quota_used: dict[tuple, int] = {}
        self._limits_lock = threading.Lock()
        self._change_count = change_count
        self._keys: tuple[int | None, dict[bytes, dict]] = (None, {})

    # ----------------------------------------------------------------------- one request

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            response = self._serve(request, request_id)
        except GatewayError as err:
            response = self._error_response(err, request, request_id)
        log.info("%s %s -> %d (%.0f ms)", request.method, request.path, response.status, (time.monotonic() - started) * 1000)
        return response

    def _serve(self, request: Request, request_id: str) -> Response:
        if len(request.body) > MAX_BODY_BYTES:
            raise GatewayError(413, "Request Too Long", "RequestTooLongException", "REQUEST_TOO_LARGE")
        check_header_size(request)
        route = self.route(request)
        try:
            self._throttle_stage(route)
            key = self._check_key(route, request)
            return self.integrate(route, request, request_id, key, Trace(request_id))
        except GatewayError as err:
            err.api_id = route.api_id  # its gateway responses shape the error, whatever the URL named
            raise

    def refuse(self, request: Request, err: GatewayError) -> Response:
        """An error found before the request was read through (a body over 10 MB), as the API's
        gateway responses shape it."""
        return self._error_response(err, request, str(uuid.uuid4()))

    def integrate(self, route: Route, request: Request, request_id: str, key: dict | None, trace: "Trace") -> Response:
        """Run the method's integration (Lambda proxy or MOCK) and answer as API Gateway does."""
        integration = route.method.get("methodIntegration") or {}
        if integration.get("type") == "MOCK":
            return mock_response(route, request, request_id, trace)
        function_arn = _function_arn(route.method)
        config = self._lambdas.configuration(function_arn)
        self._check_permission(route, config, trace)
        if config.get("State") == "Pending":
            # Lambda refuses Invoke (ResourceConflictException) until the function is Active; the
            # gateway cannot reach the function and answers the caller with its own 500.
            trace.add("Execution failed due to configuration error: the function is currently in the following "
                      "state: Pending")
            raise _configuration_error()
        event = proxy_event(route, request, request_id, key)
        timeout = min(float(config.get("Timeout", 3)), INTEGRATION_TIMEOUT_S)
        endpoint = _lambda_endpoint(integration.get("uri", ""))
        trace.add(f"Endpoint request URI: {endpoint}")
        trace.add(f"Endpoint request body after transformations: {json.dumps(event)[:1000]}")
        trace.add(f"Sending request to {endpoint}")
        started = time.monotonic()
        try:
            invocation = self._lambdas.invoke(config, event, timeout)
        except InvocationThrottled:
            # What API Gateway answers when Lambda throttles the call (429 TooManyRequestsException
            # "Rate Exceeded."): 500 Internal server error (AWS knowledge center, "How do I
            # troubleshoot issues for API Gateway endpoints that integrate with Lambda?",
            # "Throttling occurs").
            log.warning("%s throttled: its concurrency is in use", config["FunctionName"])
            trace.add("Lambda invocation failed with status: 429")
            trace.add("Execution failed due to configuration error: Rate Exceeded.")
            raise _configuration_error() from None
        except InvocationTimeout:
            trace.add("Execution failed due to a timeout error")
            raise GatewayError(504, "Endpoint request timed out", "IntegrationTimeout", "INTEGRATION_TIMEOUT") from None
        except InvocationCrashed as crash:
            log.warning("%s crashed: %s", config["FunctionName"], crash)
            trace.add(f"Lambda execution failed with status 200 due to customer function error: {crash}")
            raise _internal_error() from None
        trace.add(f"Received response. Status: 200, Integration latency: {(time.monotonic() - started) * 1000:.0f} ms")
        trace.add(f"Endpoint response body before transformations: {json.dumps(invocation.payload)[:1000]}")
        if not invocation.ok:
            log.warning("%s failed: %s", config["FunctionName"], invocation.payload)
            trace.add(f"Lambda execution failed with status 200 due to customer function error: "
                      f"{invocation.payload.get('errorMessage')}")
            raise _internal_error()
        try:
            return proxy_response(invocation.payload, request_id)
        except GatewayError:
            trace.add("Execution failed due to configuration error: Malformed Lambda proxy response")
            raise

    # ----------------------------------------------------------------------- gateway responses

    def _error_response(self, err: GatewayError, request: Request, request_id: str) -> Response:
        """API Gateway's own error, reshaped by the API's gateway responses (put_gateway_response)."""
        api_id = None
        if err.response_type is not None:
            api_id = err.api_id or self._api_named_by(request)
        configured = self._gateway_response(api_id, err) if api_id else None
        return gateway_error_response(err, configured, request, request_id)

    def _api_named_by(self, request: Request) -> str | None:
        """The API an unrouted request was for: named in the URL or Host on AWS; on a short stage
        URL (``/test/...``), the only API, or the only one with that stage."""
        try:
            api_id, stage, _ = _split_target(request)
        except GatewayError:
            api_id, stage = None, None
        if api_id:
            return api_id
        apis = [api["id"] for api in self._rest_apis()]
        if len(apis) == 1:
            return apis[0]
        staged = [candidate for candidate in apis if stage and self._stage(candidate, stage) is not None]
        return staged[0] if len(staged) == 1 else None

    def _gateway_response(self, api_id: str, err: GatewayError) -> dict | None:
        try:
            items = self._apigateway.get_gateway_responses(restApiId=api_id).get("items", [])
        except Exception:  # an API deleted meanwhile: the defaults apply
            return None
        by_type = {item["responseType"]: item for item in items}
        fallback = "DEFAULT_5XX" if err.status >= 500 else "DEFAULT_4XX"
        return by_type.get(err.response_type) or by_type.get(fallback)

    # ----------------------------------------------------------------------- TestInvokeMethod

    def test_invoke(self, api_id: str, resource_id: str, verb: str, params: dict) -> dict:
        """TestInvokeMethod: the method's integration, without API key or stage, with API Gateway's log."""
        request_id = str(uuid.uuid4())
        trace = Trace(request_id)
        started = time.monotonic()
        resource, method = self._resource_method(api_id, resource_id, verb)
        target = params.get("pathWithQueryString") or resource["path"]
        headers = list((params.get("headers") or {}).items())
        for name, values in (params.get("multiValueHeaders") or {}).items():
            headers += [(name, value) for value in values]
        request = Request(verb, target, headers, (params.get("body") or "").encode(), "test-invoke-source-ip")
        path = urlsplit(target).path
        path_parameters = _path_parameters(resource["path"], path) or {}
        stage = {"stageName": "test-invoke-stage", "variables": params.get("stageVariables") or {},
                 "deploymentId": "test-invoke-deployment-id"}
        route = Route(api_id, stage, resource, method, verb, path, path_parameters)
        trace.start(route, request)
        try:
            response = self.integrate(route, request, request_id, None, trace)
        except GatewayError as err:
            response = gateway_error_response(err, self._gateway_response(api_id, err), request, request_id)
        trace.finish(response)
        multi = {name: [value] for name, value in response.headers.items()}
        return {
            "status": response.status,
            "body": response.body.decode("utf-8", "replace"),
            "headers": dict(response.headers),
            "multiValueHeaders": multi,
            "log": trace.text(),
            "latency": int((time.monotonic() - started) * 1000),
        }

    def _resource_method(self, api_id: str, resource_id: str, verb: str) -> tuple[dict, dict]:
        try:
            resource = self._apigateway.get_resource(restApiId=api_id, resourceId=resource_id, embed=["methods"])
        except self._apigateway.exceptions.NotFoundException:
            raise NotFound("Invalid Resource identifier specified") from None
        method = (resource.get("resourceMethods") or {}).get(verb)
        if method is None:
            raise NotFound("Invalid Method identifier specified")
        return resource, method

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
        if key is None or not apigateway_rules.key_is_usable(key["id"]):
            raise _forbidden()
        plans = [
            plan
            for plan in self._apigateway.get_usage_plans(keyId=key["id"])["items"]
            if any(s["apiId"] == route.api_id and s["stage"] == route.stage["stageName"] for s in plan.get("apiStages", []))
        ]
        if not plans or not apigateway_rules.key_is_usable(key["id"]):
            raise _forbidden()
        for plan in plans:
            self._charge(plan, key["id"])
        return key

    def _find_key(self, value: str) -> dict | None:
        """The enabled key with this value: one look-up by the value's digest, then a constant-time
        comparison, so the time taken tells a caller neither how many keys exist nor how much of
        a guess was right."""
        key = self._key_index().get(_digest(value))
        if key is None or not hmac.compare_digest(key["value"].encode(), value.encode()):
            return None
        return key

    def _key_index(self) -> dict[bytes, dict]:
        seen = self._change_count() if self._change_count is not None else None
        kept_at, index = self._keys
        if seen is not None and kept_at == seen:
            return index
        index = {}
        for page in self._apigateway.get_paginator("get_api_keys").paginate(includeValues=True):
            for key in page["items"]:
                if key.get("enabled") and key.get("value"):
                    index.setdefault(_digest(key["value"]), key)  # the first listed wins, as AWS's scan
        self._keys = (seen, index)
        return index

    def _charge(self, plan: dict, key_id: str) -> None:
        """Count one request against the plan: quota first (429 Limit Exceeded), then the throttle."""
        window = _quota_window(plan, key_id)
        with self._limits_lock:
            if window is not None and self._quota_used.get(window, 0) >= plan["quota"]["limit"]:
                raise GatewayError(429, "Limit Exceeded", "LimitExceededException", "QUOTA_EXCEEDED")
            bucket = self._bucket(plan, key_id)
        if bucket is not None and not bucket.take():
            raise GatewayError(429, "Too Many Requests", "TooManyRequestsException", "THROTTLED")
        if window is not None:
            with self._limits_lock:
                self._quota_used[window] = self._quota_used.get(window, 0) + 1

    def _throttle_stage(self, route: Route) -> None:
        """The stage's method throttling (its ``*/*`` method settings, or the method's own), for
        every caller together, key or not; over it -> 429, as API Gateway answers."""
        settings = route.stage.get("methodSettings") or {}
        own = settings.get(route.resource.get("path", "").replace("/", "~1") + "/" + route.verb)
        found = own or settings.get("*/*") or {}
        rate, burst = found.get("throttlingRateLimit"), found.get("throttlingBurstLimit")
        if rate is None or burst is None or float(rate) < 0:
            return
        key = ("stage", route.api_id, route.stage.get("stageName"), float(rate), int(burst))
        with self._limits_lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(float(rate), int(burst))
        if not bucket.take():
            raise GatewayError(429, "Too Many Requests", "TooManyRequestsException", "THROTTLED")

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

    def _check_permission(self, route: Route, config: dict, trace: "Trace") -> None:
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
        trace.add("Execution failed due to configuration error: Invalid permissions on Lambda function")
        raise _configuration_error()


class NotFound(Exception):
    """TestInvokeMethod on a resource or method the API does not have (NotFoundException)."""


# --------------------------------------------------------------------------- request headers

# REST APIs: "Total combined size of request line and header values: 10240 bytes" (API Gateway
# quotas page). AWS's exact status for it is not documented; 431 Request Header Fields Too Large
# (RFC 6585) is the status for exactly this refusal, so the stricter, explicit one is used.
MAX_HEADER_BYTES = 10240


def check_header_size(request: Request) -> None:
    request_line = f"{request.method} {request.path} HTTP/1.1"
    size = len(request_line.encode("latin-1", "replace")) + sum(
        len(value.encode("latin-1", "replace")) for _, value in request.headers
    )
    if size > MAX_HEADER_BYTES:
        raise GatewayError(431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge", None)


# --------------------------------------------------------------------------- execution log


class Trace:
    """The execution log TestInvokeMethod returns, in API Gateway's own text form.

    Source: API Gateway developer guide, "Use the API Gateway console to test a REST API method"
    (the log's lines), and botocore's apigateway model, TestInvokeMethodResponse (its fields)."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.lines: list[str] = []

    def add(self, message: str) -> None:
        stamp = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
        self.lines.append(f"{stamp} : {message}")

    def start(self, route: Route, request: Request) -> None:
        query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        self.add(f"Starting execution for request: {self.request_id}")
        self.add(f"HTTP Method: {route.verb}, Resource Path: {route.path}")
        self.add(f"Method request path: {java_map(route.path_parameters)}")
        self.add(f"Method request query string: {java_map(query)}")
        self.add(f"Method request headers: {java_map(dict(request.headers))}")
        self.add(f"Method request body before transformations: {request.body.decode('utf-8', 'replace')[:1000]}")

    def finish(self, response: Response) -> None:
        self.add(f"Method response body after transformations: {response.body.decode('utf-8', 'replace')[:1000]}")
        self.add(f"Method response headers: {java_map(response.headers)}")
        if response.status < 500:
            self.add("Successfully completed execution")
        self.add(f"Method completed with status: {response.status}")

    def text(self) -> str:
        return f"Execution log for request {self.request_id}\n" + "\n".join(self.lines) + "\n"


def java_map(values: dict) -> str:
    """A map as API Gateway's execution log prints one: ``{name=value, other=value}``."""
    return "{" + ", ".join(f"{key}={value}" for key, value in values.items()) + "}"


def _lambda_endpoint(uri: str) -> str:
    """``arn:aws:apigateway:{region}:lambda:path/{path}`` as the HTTPS URL API Gateway calls."""
    parts = uri.split(":", 5)
    if len(parts) < 6 or not parts[5].startswith("path/"):
        return uri
    return f"https://lambda.{parts[3]}.amazonaws.com/{parts[5].removeprefix('path/')}"


# --------------------------------------------------------------------------- MOCK integrations

_STATUS_IN_TEMPLATE = re.compile(r'"?statusCode"?\s*:\s*"?(\d{3})')


def mock_response(route: Route, request: Request, request_id: str, trace: Trace) -> Response:
    """A MOCK integration: the request template picks a status code, the integration response answers.

    As API Gateway does (developer guide, "Set up mock integrations"): the request mapping
    template's ``statusCode`` selects the integration response whose ``selectionPattern``
    matches it (or the default one, without a pattern); its ``responseParameters`` give the
    static header values (``'...'``) and its ``responseTemplates`` the body."""
    integration = route.method.get("methodIntegration") or {}
    templates = integration.get("requestTemplates") or {}
    content_type = (request.header("content-type") or "application/json").split(";")[0].strip().lower()
    template = templates.get(content_type)
    if template is None:
        # No Content-Type counts as application/json; an unmapped one is refused 415 under NEVER,
        # and under WHEN_NO_TEMPLATES once any template exists (developer guide, "Method request
        # behavior for payloads without mapping templates", integration-passthrough-behaviors.html).
        passthrough = integration.get("passthroughBehavior") or "WHEN_NO_MATCH"
        if passthrough == "NEVER" or (passthrough == "WHEN_NO_TEMPLATES" and templates):
            trace.add(f"Execution failed: no mapping template for {content_type} and passthrough {passthrough}")
            raise GatewayError(415, "Unsupported Media Type", "UnsupportedMediaTypeException", "UNSUPPORTED_MEDIA_TYPE")
        template = templates.get("application/json") or ""
    found = _STATUS_IN_TEMPLATE.search(template)
    status = found.group(1) if found else "200"
    trace.add(f"Endpoint request body after transformations: {template}")
    trace.add(f"Received response. Status: {status}, Integration latency: 0 ms")
    chosen = _integration_response(integration.get("integrationResponses") or {}, status)
    if chosen is None:
        trace.add("Execution failed due to configuration error: No match for output mapping and no default output "
                  "mapping was specified")
        raise _configuration_error()
    headers = {"Content-Type": "application/json"}
    for name, value in (chosen.get("responseParameters") or {}).items():
        if name.startswith("method.response.header."):
            resolved = _parameter_value(value, request)
            if resolved is not None:
                headers[name.removeprefix("method.response.header.")] = resolved
    accept = (request.header("accept") or "application/json").split(",")[0].split(";")[0].strip().lower()
    response_templates = chosen.get("responseTemplates") or {}
    body = response_templates.get(accept) or response_templates.get("application/json") or ""
    body = _render_context(body, request_id, route)
    headers.update(_gateway_headers(request_id))
    return Response(int(chosen.get("statusCode", status)), headers, body.encode())


def _integration_response(responses: dict, status: str) -> dict | None:
    default = None
    for item in responses.values():
        pattern = item.get("selectionPattern")
        if not pattern:
            default = default or item
            continue
        try:
            if re.fullmatch(pattern, status):
                return item
        except re.error:  # API Gateway refuses such a pattern when it is put; here it simply never matches
            continue
    return default


def _parameter_value(expression: str, request: Request) -> str | None:
    """A mapping's value: a static 'literal', or a method request header/query parameter."""
    if len(expression) >= 2 and expression.startswith("'") and expression.endswith("'"):
        return expression[1:-1]
    if expression.startswith("method.request.header."):
        return request.header(expression.removeprefix("method.request.header."))
    if expression.startswith("method.request.querystring."):
        query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        return query.get(expression.removeprefix("method.request.querystring."))
    return None


def _render_context(template: str, request_id: str, route: Route | None, error: GatewayError | None = None) -> str:
    """The few ``$context`` variables a static template uses (request id, error message and type)."""
    values = {"$context.requestId": request_id, "$context.extendedRequestId": request_id}
    if route is not None:
        values |= {"$context.resourcePath": route.resource["path"], "$context.httpMethod": route.verb,
                   "$context.stage": route.stage["stageName"], "$context.apiId": route.api_id}
    if error is not None:
        values |= {"$context.error.messageString": json.dumps(error.message),
                   "$context.error.message": error.message,
                   "$context.error.responseType": error.shown_type}
    for name in sorted(values, key=len, reverse=True):  # $context.error.messageString before .message
        template = template.replace(name, values[name]).replace("$" + "{" + name[1:] + "}", values[name])
    return template


# --------------------------------------------------------------------------- gateway responses


def gateway_error_response(err: GatewayError, configured: dict | None, request: Request, request_id: str) -> Response:
    """The error as the API's gateway response for its type (or DEFAULT_4XX/5XX) shapes it, if any.

    Source: API Gateway developer guide, "Gateway responses for REST APIs" and "Gateway response
    types" (a customised type replaces the default; DEFAULT_4XX/5XX cover the types not customised)."""
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": err.error_type, **_gateway_headers(request_id)}
    if configured is None:
        return Response(err.status, headers, json.dumps({"message": err.message}).encode())
    status = int(configured.get("statusCode") or err.status)
    for name, value in (configured.get("responseParameters") or {}).items():
        if name.startswith("gatewayresponse.header."):
            resolved = _parameter_value(value, request)
            if resolved is not None:
                headers[name.removeprefix("gatewayresponse.header.")] = resolved
    templates = configured.get("responseTemplates") or {}
    template = templates.get("application/json")
    body = json.dumps({"message": err.message}) if template is None else _render_context(template, request_id, None, err)
    return Response(status, headers, body.encode())


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


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


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
        raise _configuration_error()
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
        request = Request(scope["method"], _target(scope), headers, b"" if too_large else body,
                          (scope.get("client") or ("",))[0])
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
        out = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()
               if name.lower() not in framing]
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
            except asyncio.TimeoutError:
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

    def start(self) -> "GatewayServer":
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
