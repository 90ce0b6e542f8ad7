"""MOCK integrations (the console's "Enable CORS" OPTIONS method): the integration response a request picks.

The request template's ``statusCode`` selects the integration response, whose static header
values and response template answer; a Content-Type no template maps is 415 under passthrough NEVER.
"""

from __future__ import annotations

import re

from l2c.local.gateway.messages import ApiRoute, GatewayError, Request, Response, configuration_error, gateway_headers
from l2c.local.gateway.templates import parameter_value, render_context
from l2c.local.gateway.trace import Trace

_STATUS_IN_TEMPLATE = re.compile(r'"?statusCode"?\s*:\s*"?(\d{3})')


def mock_response(route: ApiRoute, request: Request, request_id: str, trace: Trace) -> Response:
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
        trace.add(
            "Execution failed due to configuration error: No match for output mapping and no default output "
            "mapping was specified"
        )
        raise configuration_error()
    headers = {"Content-Type": "application/json"}
    for name, value in (chosen.get("responseParameters") or {}).items():
        if name.startswith("method.response.header."):
            resolved = parameter_value(value, request)
            if resolved is not None:
                headers[name.removeprefix("method.response.header.")] = resolved
    accept = (request.header("accept") or "application/json").split(",")[0].split(";")[0].strip().lower()
    response_templates = chosen.get("responseTemplates") or {}
    body = response_templates.get(accept) or response_templates.get("application/json") or ""
    body = render_context(body, request_id, route)
    headers.update(gateway_headers(request_id))
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
