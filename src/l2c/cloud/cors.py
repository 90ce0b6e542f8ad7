"""Which web pages may call a stack's API from a browser (CORS): the origin a deploy allows,
the route's preflight and the API's error headers for it, and the plan's line about it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from l2c.cloud import apigateway
from l2c.cloud.session import CloudSession

if TYPE_CHECKING:
    from l2c.cloud.plan import DeployOptions
    from l2c.cloud.stack import Stack


def cors_origin_for(session: CloudSession, options: DeployOptions) -> str | None:
    """The origin browsers may call the API from, None for no CORS at all.

    Given (``--cors-origin``), it is used on either target. Otherwise the local cloud allows the
    origin of the pages it serves itself, its edge (``http://127.0.0.1:4566`` for `l2c up`), and
    AWS allows none: which site may call an API that bills you is yours to name, never ``*`` by
    default."""
    chosen = options.cors_origin
    if chosen == apigateway.NO_CORS:
        return None
    if chosen:
        return chosen
    if session.is_local:
        import os

        edge = session.endpoints.get("*") or os.environ.get("AWS_ENDPOINT_URL")
        return apigateway.origin_of(edge) if edge else None
    return None


def ensure_cors(stack: Stack, api_id: str, resource_id: str, path: str) -> None:
    """The route's preflight and the API's error responses for the stack's origin (or none)."""
    session, origin = stack.session, stack.cors_origin
    before = apigateway.gateway_cors_origin(session, api_id)
    others = [route for route in apigateway.routed_paths(session, api_id) if route != f"/{path}"]
    if others and before != origin and (before is not None or origin is not None):
        # The gateway responses are the API's, shared by every route: the last deploy's origin wins.
        stack.reporter.warn(
            f"the API's errors now carry CORS for {origin or 'no origin'} instead of {before or 'none'}; deploy "
            f"the stacks of {', '.join(others)} again with the same --cors-origin so their pages agree"
        )
    if origin is None:
        stack.changed(f"OPTIONS /{path} removed (no CORS)", apigateway.remove_cors_method(session, api_id, resource_id))
        stack.changed(
            "CORS headers removed from the API's errors",
            apigateway.ensure_cors_gateway_responses(session, api_id, None),
        )
        stack.reporter.step(
            f"no CORS on /{path}: browsers on other origins cannot call it (--cors-origin ORIGIN allows one)"
        )
        return
    if origin == apigateway.ANY_ORIGIN:
        stack.reporter.warn(f"--cors-origin '*': a page on ANY website may call /{path} from a browser")
    stack.changed(
        f"OPTIONS /{path} (CORS preflight for {origin})",
        apigateway.ensure_cors_method(session, api_id, resource_id, origin),
    )
    stack.changed(
        f"CORS headers for {origin} on the API's errors",
        apigateway.ensure_cors_gateway_responses(session, api_id, origin),
    )
    stack.reporter.step(
        f"CORS: browsers on {origin} may call /{path} (preflight without key; errors carry the headers)"
    )


def cors_plan_line(origin: str | None) -> str:
    if origin is None:
        return (
            "no CORS: pages on other origins cannot call the API from a browser "
            "(--cors-origin https://your.site allows one: an OPTIONS preflight per route, CORS headers on errors)"
        )
    if origin == apigateway.ANY_ORIGIN:
        return "CORS for ANY origin ('*'): a page on any website may call the API from a browser  <- you asked for '*'"
    return f"CORS for {origin}: an OPTIONS preflight (no key) per route, CORS headers on the API's errors: free"
