"""API Gateway's quotas on one REST API request: its payload, its head and its integration's time."""

from __future__ import annotations

from l2c.local.gateway.messages import GatewayError, Request

# API Gateway's limits: 10 MB payload, 29 s integration timeout.
MAX_BODY_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_S = 29.0
# REST APIs: "Total combined size of request line and header values: 10240 bytes" (API Gateway
# quotas page). AWS's exact status for it is not documented; 431 Request Header Fields Too Large
# (RFC 6585) is the status for exactly this refusal, so the stricter, explicit one is used.
MAX_HEADER_BYTES = 10240


def check_body_size(request: Request) -> None:
    if len(request.body) > MAX_BODY_BYTES:
        raise GatewayError(413, "Request Too Long", "RequestTooLongException", "REQUEST_TOO_LARGE")


def check_header_size(request: Request) -> None:
    request_line = f"{request.method} {request.path} HTTP/1.1"
    size = len(request_line.encode("latin-1", "replace")) + sum(
        len(value.encode("latin-1", "replace")) for _, value in request.headers
    )
    if size > MAX_HEADER_BYTES:
        raise GatewayError(431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge", None)
