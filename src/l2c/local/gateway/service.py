"""The gateway: one request through routing, admission and integration, as API Gateway answers; and TestInvokeMethod."""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import urlsplit

from l2c.local.gateway import lambda_proxy
from l2c.local.gateway.admission import Admission
from l2c.local.gateway.messages import ApiRoute, GatewayError, Request, Response
from l2c.local.gateway.mock import mock_response
from l2c.local.gateway.quotas import check_body_size, check_header_size
from l2c.local.gateway.responses import configured_response, gateway_error_response
from l2c.local.gateway.routing import RouteTable, path_parameters
from l2c.local.gateway.trace import Trace
from l2c.local.lambdas import LambdaHost

log = logging.getLogger("l2c.local.gateway")


class Gateway:
    def __init__(self, boto_session, control_plane_url: str, lambdas: LambdaHost, change_count=None):
        """``change_count() -> int``: moto's count of changes (l2c.local.change_count.changes);
        while it stands still, the index of API keys is not rebuilt."""
        self._apigateway = boto_session.client("apigateway", endpoint_url=control_plane_url)
        self._lambdas = lambdas
        self.routes = RouteTable(self._apigateway)
        self.admission = Admission(self._apigateway, change_count)

    # ----------------------------------------------------------------------- one request

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            response = self._serve(request, request_id)
        except GatewayError as err:
            response = self._error_response(err, request, request_id)
        log.info(
            "%s %s -> %d (%.0f ms)", request.method, request.path, response.status, (time.monotonic() - started) * 1000
        )
        return response

    def _serve(self, request: Request, request_id: str) -> Response:
        check_body_size(request)
        check_header_size(request)
        route = self.routes.route(request)
        try:
            self.admission.throttle_stage(route)
            key = self.admission.check_key(route, request)
            return self.integrate(route, request, request_id, key, Trace(request_id))
        except GatewayError as err:
            err.api_id = route.api_id  # its gateway responses shape the error, whatever the URL named
            raise

    def refuse(self, request: Request, err: GatewayError) -> Response:
        """An error found before the request was read through (a body over 10 MB), as the API's
        gateway responses shape it."""
        return self._error_response(err, request, str(uuid.uuid4()))

    def integrate(self, route: ApiRoute, request: Request, request_id: str, key: dict | None, trace: Trace) -> Response:
        """Run the method's integration (Lambda proxy or MOCK) and answer as API Gateway does."""
        integration = route.method.get("methodIntegration") or {}
        if integration.get("type") == "MOCK":
            return mock_response(route, request, request_id, trace)
        return lambda_proxy.invoke(self._lambdas, route, request, request_id, key, trace)

    def _error_response(self, err: GatewayError, request: Request, request_id: str) -> Response:
        """API Gateway's own error, reshaped by the API's gateway responses (put_gateway_response)."""
        api_id = None
        if err.response_type is not None:
            api_id = err.api_id or self.routes.api_named_by(request)
        configured = configured_response(self._apigateway, api_id, err) if api_id else None
        return gateway_error_response(err, configured, request, request_id)

    # ----------------------------------------------------------------------- TestInvokeMethod

    def test_invoke(self, api_id: str, resource_id: str, verb: str, params: dict) -> dict:
        """TestInvokeMethod: the method's integration, without API key or stage, with API Gateway's log."""
        request_id = str(uuid.uuid4())
        trace = Trace(request_id)
        started = time.monotonic()
        resource, method = self.routes.resource_method(api_id, resource_id, verb)
        target = params.get("pathWithQueryString") or resource["path"]
        headers = list((params.get("headers") or {}).items())
        for name, values in (params.get("multiValueHeaders") or {}).items():
            headers += [(name, value) for value in values]
        request = Request(verb, target, headers, (params.get("body") or "").encode(), "test-invoke-source-ip")
        path = urlsplit(target).path
        stage = {
            "stageName": "test-invoke-stage",
            "variables": params.get("stageVariables") or {},
            "deploymentId": "test-invoke-deployment-id",
        }
        route = ApiRoute(api_id, stage, resource, method, verb, path, path_parameters(resource["path"], path) or {})
        trace.start(route, request)
        try:
            response = self.integrate(route, request, request_id, None, trace)
        except GatewayError as err:
            configured = configured_response(self._apigateway, api_id, err)
            response = gateway_error_response(err, configured, request, request_id)
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
