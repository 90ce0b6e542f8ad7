"""The route table: which REST API, stage, resource and method a request is for, read from the control plane.

``/{stage}/{path}``, ``/restapis/{api}/{stage}/_user_request_/{path}`` or a
``{api}.execute-api.*`` Host header name the API and stage; the most specific resource whose path
template matches wins (literal segments before ``{param}``, ``{proxy+}`` last), its method for the
verb or its ``ANY`` method. No route is 403 ``Missing Authentication Token``, as AWS answers.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from l2c.local.gateway.messages import ApiRoute, GatewayError, Request, missing_route

_HOST_API = re.compile(r"^(?P<api>[a-z0-9]+)\.execute-api\.")
_EXPLICIT = re.compile(r"^/restapis/(?P<api>[^/]+)/(?P<stage>[^/]+)/_user_request_(?P<path>/.*)?$")


class NotFound(Exception):
    """TestInvokeMethod on a resource or method the API does not have (NotFoundException)."""


class RouteTable:
    def __init__(self, apigateway) -> None:
        self._apigateway = apigateway

    def route(self, request: Request) -> ApiRoute:
        api_id, stage_name, path = split_target(request)
        verb = request.method.upper()
        candidates = [api_id] if api_id else [api["id"] for api in self.rest_apis()]
        for candidate in candidates:
            stage = self.stage(candidate, stage_name)
            if stage is None:
                continue
            match = self._match(candidate, path, verb)
            if match is not None:
                resource, method, params = match
                return ApiRoute(candidate, stage, resource, method, verb, path, params)
        raise missing_route()

    def rest_apis(self) -> list[dict]:
        paginator = self._apigateway.get_paginator("get_rest_apis")
        return [api for page in paginator.paginate() for api in page["items"]]

    def stage(self, api_id: str, stage: str) -> dict | None:
        try:
            return self._apigateway.get_stage(restApiId=api_id, stageName=stage)
        except self._apigateway.exceptions.NotFoundException:
            return None

    def _match(self, api_id: str, path: str, verb: str):
        paginator = self._apigateway.get_paginator("get_resources")
        resources = [item for page in paginator.paginate(restApiId=api_id, embed=["methods"]) for item in page["items"]]
        for resource in sorted(resources, key=_specificity, reverse=True):
            params = path_parameters(resource["path"], path)
            methods = resource.get("resourceMethods") or {}
            method = methods.get(verb) or methods.get("ANY")
            if params is not None and method is not None:
                return resource, method, params
        return None

    def api_named_by(self, request: Request) -> str | None:
        """The API an unrouted request was for: named in the URL or Host on AWS; on a short stage
        URL (``/test/...``), the only API, or the only one with that stage."""
        try:
            api_id, stage, _ = split_target(request)
        except GatewayError:
            api_id, stage = None, None
        if api_id:
            return api_id
        apis = [api["id"] for api in self.rest_apis()]
        if len(apis) == 1:
            return apis[0]
        staged = [candidate for candidate in apis if stage and self.stage(candidate, stage) is not None]
        return staged[0] if len(staged) == 1 else None

    def resource_method(self, api_id: str, resource_id: str, verb: str) -> tuple[dict, dict]:
        """A resource and its method by id, as TestInvokeMethod names them."""
        try:
            resource = self._apigateway.get_resource(restApiId=api_id, resourceId=resource_id, embed=["methods"])
        except self._apigateway.exceptions.NotFoundException:
            raise NotFound("Invalid Resource identifier specified") from None
        method = (resource.get("resourceMethods") or {}).get(verb)
        if method is None:
            raise NotFound("Invalid Method identifier specified")
        return resource, method


def split_target(request: Request) -> tuple[str | None, str, str]:
    raw_path = urlsplit(request.path).path
    explicit = _EXPLICIT.match(raw_path)
    if explicit:
        return explicit["api"], explicit["stage"], unquote(explicit["path"] or "/")
    host = _HOST_API.match(request.header("host") or "")
    stage, _, rest = raw_path.lstrip("/").partition("/")
    if not stage:
        raise missing_route()
    return (host["api"] if host else None), stage, "/" + unquote(rest)


def _specificity(resource: dict) -> tuple[int, int]:
    segments = [segment for segment in resource["path"].split("/") if segment]
    literal = sum(1 for segment in segments if not segment.startswith("{"))
    greedy = any(segment.endswith("+}") for segment in segments)
    return (0 if greedy else 1, literal)


def path_parameters(template: str, path: str) -> dict[str, str] | None:
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
