"""The data planes the edge serves itself: what AWS answers from other hosts than the control plane.

On AWS, ``runtime.sagemaker``, ``lambda`` (Invoke) and ``{api}.execute-api`` are separate
front ends; through ``AWS_ENDPOINT_URL`` alone every one of them reaches the edge, which hands
them here instead of to moto (whose stubs answer any endpoint name with canned data):

- SageMaker Runtime: ``/endpoints/{name}/invocations`` (and the async and response-stream
  forms), forwarded to the inference runtime's process; how that process fares (its crashes
  and restarts) is at ``GET /_l2c/runtime``;
- execute-api: ``/restapis/{api}/{stage}/_user_request_/{path}``, or any path with a
  ``{api}.execute-api.*`` Host header, served by the local gateway;
- Lambda Invoke: ``POST /2015-03-31/functions/{name}/invocations`` signed for ``lambda``, run
  in the Lambda host's workers (:mod:`l2c.local.lambda_api`);
- API Gateway's TestInvokeMethod: ``POST /restapis/{api}/resources/{id}/methods/{verb}`` signed
  for ``apigateway``: the method's integration run by the local gateway, without key or stage
  (moto has no such operation).
"""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlsplit

from l2c.local.edge import Edge, EdgeRequest, json_reply
from l2c.local.rules import Reply

RUNTIME_PATH = re.compile(r"^/endpoints/[^/]+/(invocations|async-invocations|invocations-response-stream)$")
EXECUTE_API_PATH = re.compile(r"^/restapis/[^/]+/[^/]+/_user_request_(/.*)?$")
EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.")
TEST_INVOKE_PATH = re.compile(r"^/restapis/(?P<api>[^/]+)/resources/(?P<resource>[^/]+)/methods/(?P<verb>[^/]+)/?$")
RUNTIME_TIMEOUT_S = 70.0  # InvokeEndpoint's own limit is 60 s; a little more for the hop
# Hop-by-hop headers (RFC 9110 section 7.6.1) are the connection's, not the message's.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def is_runtime_call(request: EdgeRequest) -> bool:
    return request.signing_service == "sagemaker" and RUNTIME_PATH.match(request.path) is not None


def is_execute_api_call(request: EdgeRequest) -> bool:
    return (
        EXECUTE_API_PATH.match(request.path) is not None
        or EXECUTE_API_HOST.match(request.header("host") or "") is not None
    )


def is_test_invoke_call(request: EdgeRequest) -> bool:
    return (
        request.method == "POST"
        and request.signing_service == "apigateway"
        and TEST_INVOKE_PATH.match(request.path) is not None
    )


def add_lambda_invoke(edge: Edge, lambdas) -> None:
    from l2c.local.lambda_api import LambdaInvoke, is_invoke_call

    edge.route("lambda-invoke", is_invoke_call, LambdaInvoke(lambdas))


def add_test_invoke(edge: Edge, gateway) -> None:
    edge.route("apigateway-test-invoke", is_test_invoke_call, TestInvokeAdapter(gateway))


def add_runtime(edge: Edge, runtime_url: str, record=None) -> None:
    edge.route("sagemaker-runtime", is_runtime_call, RuntimeForwarder(runtime_url))
    if record is not None:  # a RuntimeRecord (l2c.local.runtime_supervisor)
        edge.admin("GET", "runtime", lambda request: json_reply(200, record.as_dict()))


def add_execute_api(edge: Edge, gateway) -> None:
    edge.route("execute-api", is_execute_api_call, GatewayAdapter(gateway))


class RuntimeForwarder:
    """Passes an invocation to the runtime's process and its answer back, unchanged."""

    def __init__(self, runtime_url: str):
        parts = urlsplit(runtime_url)
        self.host, self.port = parts.hostname, parts.port

    def __call__(self, request: EdgeRequest) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=RUNTIME_TIMEOUT_S)
        try:
            target = request.path + (f"?{request.query}" if request.query else "")
            headers = {name: value for name, value in request.raw_headers if name.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(request.body))
            connection.request(request.method, target, body=request.body, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
            return Reply(answer.status, headers, body)
        except OSError:
            # The runtime is down or restarting: what the service says when it cannot answer.
            return json_reply(
                503,
                {"message": "Service Unavailable"},
                error_type="ServiceUnavailable",
                extra_headers=[("Retry-After", "1")],
            )
        finally:
            connection.close()


class GatewayAdapter:
    """An edge request as the local gateway takes it, and its answer back."""

    def __init__(self, gateway):
        self.gateway = gateway

    def __call__(self, request: EdgeRequest) -> Reply:
        from l2c.local.gateway.messages import Request
        from l2c.local.gateway.quotas import MAX_BODY_BYTES

        if len(request.body) > MAX_BODY_BYTES:
            return json_reply(413, {"message": "Request Too Long"})
        target = request.path + (f"?{request.query}" if request.query else "")
        answer = self.gateway.handle(Request(request.method, target, request.raw_headers, request.body, request.client))
        headers = [
            (k, v) for k, v in answer.headers.items() if k.lower() not in ("content-length", "transfer-encoding")
        ]
        return Reply(answer.status, headers, b"" if request.method == "HEAD" else answer.body)


class TestInvokeAdapter:
    """TestInvokeMethod's request to the local gateway, and its TestInvokeMethodResponse back."""

    __test__ = False  # not a pytest class, whatever its name says

    def __init__(self, gateway):
        self.gateway = gateway

    def __call__(self, request: EdgeRequest) -> Reply:
        from l2c.local.gateway.routing import NotFound
        from l2c.local.rules import AwsError

        target = TEST_INVOKE_PATH.match(request.path)
        try:
            params = request.json()
        except ValueError:
            raise AwsError("BadRequestException", "Invalid JSON in the request body", 400) from None
        if not isinstance(params, dict):
            raise AwsError("BadRequestException", "Invalid JSON in the request body", 400)
        try:
            answer = self.gateway.test_invoke(target["api"], target["resource"], target["verb"].upper(), params)
        except NotFound as missing:
            raise AwsError("NotFoundException", str(missing), 404) from None
        return json_reply(200, answer)
