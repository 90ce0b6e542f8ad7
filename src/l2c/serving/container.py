"""The container face: ``GET /ping`` and ``POST /invocations`` as SageMaker's XGBoost container.

Routes, statuses, bodies and content types follow the container's Flask app (image 3.2-0,
algorithm mode); docs/serving.md lists the few deliberate differences.
"""

from __future__ import annotations

import json
import os
import re

from l2c.serving import asgi
from l2c.serving.engine import ContainerSettings, Engine, Reply

HTML = "text/html; charset=utf-8"
# Werkzeug's own error pages, which the container's Flask app sends.
TOO_LARGE_PAGE = (
    b"<!doctype html>\n<html lang=en>\n<title>413 Request Entity Too Large</title>\n"
    b"<h1>Request Entity Too Large</h1>\n<p>The data value transmitted exceeds the capacity limit.</p>\n"
)
NOT_FOUND_PAGE = (
    b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    b"<p>The requested URL was not found on the server. If you entered the URL manually please check "
    b"your spelling and try again.</p>\n"
)
NOT_ALLOWED_PAGE = (
    b"<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n"
    b"<p>The method is not allowed for the requested URL.</p>\n"
)
# Flask's routes in the container's app (serve.py); Flask adds HEAD to GET routes and answers
# OPTIONS itself on every route.
_ROUTES = {"/ping": ("GET", "HEAD"), "/execution-parameters": ("GET", "HEAD"), "/invocations": ("POST",)}
# The container's nginx passes only paths matching this (unanchored) location on to gunicorn
# and answers every other one itself: `location / { return 404 "{}"; }` under
# `default_type application/octet-stream` (sagemaker-containers, etc/nginx.conf.template).
_PROXIED = re.compile(r"^/(ping|invocations|execution-parameters)")
NGINX_NOT_FOUND = b"{}"
OCTET_STREAM = "application/octet-stream"


class ContainerApp:
    """ASGI app for one model, answering like the SageMaker XGBoost container."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.settings = engine.settings

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] == "lifespan":
            return await asgi.lifespan(receive, send)
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/invocations" and method == "POST":
            return await self._invocations(scope, receive, send)
        if not _PROXIED.match(path):
            return await asgi.respond(send, 404, NGINX_NOT_FOUND, OCTET_STREAM)
        allowed = _ROUTES.get(path)
        if allowed is None:
            return await asgi.respond(send, 404, NOT_FOUND_PAGE, HTML)
        allow = [(b"allow", ", ".join(sorted({*allowed, "OPTIONS"})).encode())]
        if method == "OPTIONS":
            return await asgi.respond(send, 200, b"", HTML, allow)
        if method not in allowed:
            return await asgi.respond(send, 405, NOT_ALLOWED_PAGE, HTML, allow)
        if path == "/ping":
            return await asgi.respond(send, 200, b"", HTML)
        return await asgi.respond(send, 200, self._execution_parameters(), "application/json")

    async def _invocations(self, scope, receive, send) -> None:
        content_type, accept, length = asgi.header_values(scope, b"content-type", b"accept", b"content-length")
        try:
            body = await asgi.read_body(receive, length, self.settings.max_content_length)
        except asgi.BodyTooLarge:
            return await asgi.respond(send, 413, TOO_LARGE_PAGE, HTML)
        except asgi.ClientGone:
            return
        reply: Reply = await self.engine.ainvoke(body, content_type, accept)
        await asgi.respond(send, reply.status, reply.body, reply.content_type)

    def _execution_parameters(self) -> bytes:
        # What Batch Transform asks the container before sending work.
        return json.dumps(
            {
                "MaxConcurrentTransforms": os.cpu_count() or 1,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": self.settings.max_content_length // (1024 * 1024),
            }
        ).encode()


def container_app(model, settings: ContainerSettings | None = None) -> ContainerApp:
    """The container face for a :class:`~l2c.artifact.LoadedModel`; settings default to the environment."""
    return ContainerApp(Engine(model, settings or ContainerSettings.from_env()))
