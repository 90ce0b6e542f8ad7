"""Gateway responses: API Gateway's own errors (403, 429, 413, 5xx...) as put_gateway_response shapes them.

The specific type, else DEFAULT_4XX / DEFAULT_5XX, of the API the request was routed to: status,
static headers and a response template with ``$context.error.messageString``. The 431 for
oversized heads and the 408 for silent clients come from the front end, before any API is known,
and are never reshaped.
"""

from __future__ import annotations

import json

from l2c.local.gateway.messages import GatewayError, Request, Response, gateway_headers
from l2c.local.gateway.templates import parameter_value, render_context


def configured_response(apigateway, api_id: str, err: GatewayError) -> dict | None:
    """The API's gateway response for the error's type, else its DEFAULT_4XX / DEFAULT_5XX, if any."""
    try:
        items = apigateway.get_gateway_responses(restApiId=api_id).get("items", [])
    except Exception:  # an API deleted meanwhile: the defaults apply
        return None
    by_type = {item["responseType"]: item for item in items}
    fallback = "DEFAULT_5XX" if err.status >= 500 else "DEFAULT_4XX"
    return by_type.get(err.response_type) or by_type.get(fallback)


def gateway_error_response(err: GatewayError, configured: dict | None, request: Request, request_id: str) -> Response:
    """The error as the API's gateway response for its type (or DEFAULT_4XX/5XX) shapes it, if any.

    Source: API Gateway developer guide, "Gateway responses for REST APIs" and "Gateway response
    types" (a customised type replaces the default; DEFAULT_4XX/5XX cover the types not customised)."""
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": err.error_type, **gateway_headers(request_id)}
    if configured is None:
        return Response(err.status, headers, json.dumps({"message": err.message}).encode())
    status = int(configured.get("statusCode") or err.status)
    for name, value in (configured.get("responseParameters") or {}).items():
        if name.startswith("gatewayresponse.header."):
            resolved = parameter_value(value, request)
            if resolved is not None:
                headers[name.removeprefix("gatewayresponse.header.")] = resolved
    templates = configured.get("responseTemplates") or {}
    template = templates.get("application/json")
    body = json.dumps({"message": err.message}) if template is None else render_context(template, request_id, None, err)
    return Response(status, headers, body.encode())
