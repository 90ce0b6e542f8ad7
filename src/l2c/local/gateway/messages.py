"""What the gateway's parts hand each other: the request, its route, the response, and API Gateway's own errors."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass


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
class ApiRoute:
    """The REST API, stage, resource and method a request was routed to."""

    api_id: str
    stage: dict
    resource: dict
    method: dict
    verb: str
    path: str  # the request path without the stage
    path_parameters: dict[str, str]


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


def missing_route() -> GatewayError:
    return GatewayError(
        403, "Missing Authentication Token", "MissingAuthenticationTokenException", "MISSING_AUTHENTICATION_TOKEN"
    )


def forbidden() -> GatewayError:
    return GatewayError(403, "Forbidden", "ForbiddenException", "INVALID_API_KEY")


def internal_error() -> GatewayError:
    return GatewayError(502, "Internal server error", "InternalServerErrorException")


def configuration_error() -> GatewayError:
    # "Execution failed due to configuration error": the API_CONFIGURATION_ERROR gateway response
    # ("Gateway response types": an invalid API configuration, 500).
    return GatewayError(500, "Internal server error", "InternalServerErrorException", "API_CONFIGURATION_ERROR")


def gateway_headers(request_id: str) -> dict[str, str]:
    """The headers API Gateway adds to every answer it gives."""
    return {
        "x-amzn-RequestId": request_id,
        "x-amz-apigw-id": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
    }
