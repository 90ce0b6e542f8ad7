"""TestInvokeMethod's execution log, in API Gateway's own text form."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

from l2c.local.gateway.messages import ApiRoute, Request, Response


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

    def start(self, route: ApiRoute, request: Request) -> None:
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
