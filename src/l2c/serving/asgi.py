"""The little HTTP plumbing both faces share, on bare ASGI (no framework: every microsecond
of a single-row request is spent here or in XGBoost)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

# Larger bodies are parsed and predicted in a worker thread so that the event loop keeps
# answering small requests meanwhile; smaller ones cost less inline than a thread hop.
INLINE_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def header_values(scope: Scope, *names: bytes) -> list[str | None]:
    """The first value of each named header (lower-case names), decoded as latin-1."""
    found: list[str | None] = [None] * len(names)
    for key, value in scope["headers"]:
        if key in names:
            index = names.index(key)
            if found[index] is None:
                found[index] = value.decode("latin-1")
    return found


async def read_body(receive: Receive, declared_length: str | None, limit: int) -> bytes:
    """The whole request body, refusing early when it is or becomes larger than ``limit``."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise BodyTooLarge
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, content_type: str, extra_headers=()) -> None:
    headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
