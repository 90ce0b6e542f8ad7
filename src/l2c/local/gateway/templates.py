"""The little of API Gateway's mapping language static responses use: 'literals', method.request values, $context."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from l2c.local.gateway.messages import ApiRoute, GatewayError, Request


def parameter_value(expression: str, request: Request) -> str | None:
    """A mapping's value: a static 'literal', or a method request header/query parameter."""
    if len(expression) >= 2 and expression.startswith("'") and expression.endswith("'"):
        return expression[1:-1]
    if expression.startswith("method.request.header."):
        return request.header(expression.removeprefix("method.request.header."))
    if expression.startswith("method.request.querystring."):
        query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        return query.get(expression.removeprefix("method.request.querystring."))
    return None


def render_context(template: str, request_id: str, route: ApiRoute | None, error: GatewayError | None = None) -> str:
    """The few ``$context`` variables a static template uses (request id, error message and type)."""
    values = {"$context.requestId": request_id, "$context.extendedRequestId": request_id}
    if route is not None:
        values |= {
            "$context.resourcePath": route.resource["path"],
            "$context.httpMethod": route.verb,
            "$context.stage": route.stage["stageName"],
            "$context.apiId": route.api_id,
        }
    if error is not None:
        values |= {
            "$context.error.messageString": json.dumps(error.message),
            "$context.error.message": error.message,
            "$context.error.responseType": error.shown_type,
        }
    for name in sorted(values, key=len, reverse=True):  # $context.error.messageString before .message
        template = template.replace(name, values[name]).replace("$" + "{" + name[1:] + "}", values[name])
    return template
