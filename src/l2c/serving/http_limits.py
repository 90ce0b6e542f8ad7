"""What one HTTP client may cost the runtime: header sizes, slow and idle connections, the
number of connections, and closing a connection without destroying the answer on it.

uvicorn's httptools protocol has none of these beyond an idle keep-alive timeout, so both faces
run on :class:`LimitedHttpProtocol`, a subclass of it. The values follow what stands in front
of each face on AWS (:data:`CONTAINER_LIMITS`, :data:`RUNTIME_LIMITS`); docs/serving.md
("Limits") lists them.

A request that arrives in one read (the usual single-row call) pays a few attribute checks and
nothing else: the header and body timers are armed only when a read ends inside a request.
The subclass leans on the internals of the uvicorn release pinned in requirements.txt
(``cycle``, ``pipeline``, ``flow``, the parser callbacks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

logger = logging.getLogger("l2c.serving")


@dataclass(frozen=True)
class HttpLimits:
    """Per-connection limits of one face (sizes in bytes, times in seconds)."""

    request_line_bytes: int
    header_line_bytes: int
    head_bytes: int
    # What a request line over its limit gets: nginx answers 414, AWS's load balancers 400.
    request_line_status: int
    header_seconds: float
    body_seconds: float
    keep_alive_seconds: float
    # nginx closes a timed-out request without a word: ngx_http_finalize_request terminates a
    # request finished with NGX_HTTP_REQUEST_TIME_OUT, so the 408 is only logged
    # (src/http/ngx_http_request.c). AWS's load balancers answer 408 first.
    answer_timeouts: bool
    max_connections: int
    linger_seconds: float
    linger_idle_seconds: float


# The SageMaker XGBoost container (3.2-0) takes requests through the nginx of sagemaker-containers
# 2.8.6 (etc/nginx.conf.template): `keepalive_timeout 3`, `worker_connections 2048`, and nginx's
# defaults for the rest (https://nginx.org/en/docs/http/ngx_http_core_module.html):
# `large_client_header_buffers 4 8k` (a request line over one 8k buffer is 414, a header line
# over one is 400 "Request Header Or Cookie Too Large", the whole head fits in the four),
# `client_header_timeout 60s` (for the whole head), `client_body_timeout 60s` (between two
# reads), `lingering_time 30s` and `lingering_timeout 5s`.
CONTAINER_LIMITS = HttpLimits(
    request_line_bytes=8 * 1024,
    header_line_bytes=8 * 1024,
    head_bytes=4 * 8 * 1024,
    request_line_status=414,
    header_seconds=60.0,
    body_seconds=60.0,
    keep_alive_seconds=3.0,
    answer_timeouts=False,
    max_connections=2048,
    linger_seconds=30.0,
    linger_idle_seconds=5.0,
)

# SageMaker publishes no figures for its runtime front end; those of AWS's Application Load
# Balancer stand in: 16K request line, 16K per header, 64K for the whole head, all refused
# with 400 ("Quotas for your Application Load Balancers", "Troubleshoot your Application Load
# Balancers"), a 60 s idle timeout (its default) answered with 408. Timeouts for the head and
# body and the connection cap are ours, the same as the container's.
RUNTIME_LIMITS = HttpLimits(
    request_line_bytes=16 * 1024,
    header_line_bytes=16 * 1024,
    head_bytes=64 * 1024,
    request_line_status=400,
    header_seconds=60.0,
    body_seconds=60.0,
    keep_alive_seconds=60.0,
    answer_timeouts=True,
    max_connections=2048,
    linger_seconds=30.0,
    linger_idle_seconds=5.0,
)

# Where the parser is in the connection's current request.
IDLE, HEAD, BODY = 0, 1, 2

BAD_REQUEST = (400, "Bad Request")
HEADER_TOO_LARGE = (400, "Request Header Or Cookie Too Large")
URI_TOO_LARGE = (414, "Request-URI Too Large")
TIMED_OUT = (408, "Request Time-out")


def error_page(status: int, title: str) -> bytes:
    """The small HTML page a front end answers with before any app sees the request."""
    heading = f"{status} {title}"
    return f"<html>\r\n<head><title>{heading}</title></head>\r\n<body>\r\n<center><h1>{heading}</h1></center>\r\n</body>\r\n</html>\r\n".encode()


class _Refusal(Exception):
    def __init__(self, status: int, title: str):
        super().__init__(status, title)
        self.status = status
        self.title = title


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`HttpLimits` enforced."""

    limits: HttpLimits = CONTAINER_LIMITS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._socket: asyncio.Transport | None = None
        self._phase = IDLE
        # Bytes read since the current head began; exact only when that head began a read.
        self._head_bytes = 0
        self._head_exact = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_body_read = 0.0
        self._keep_alive_after_body = False
        self._pending_refusal: _Refusal | None = None
        self._refused = False
        self._closing = False
        self._hard_close = False
        self._lingering: _Lingering | None = None
        self._turned_away = False
        # No line can be over its limit when the whole head is smaller than the smallest limit.
        self._lines_fit_below = min(self.limits.request_line_bytes, self.limits.header_line_bytes)

    # ----------------------------------------------------------------- connection

    def connection_made(self, transport) -> None:
        if len(self.connections) >= self.limits.max_connections:
            # nginx, out of connections, closes what it accepts; the listen backlog queues the rest.
            self._turned_away = True
            self.transport = transport
            _warn_turned_away(self.limits.max_connections)
            transport.close()
            return
        self._socket = transport
        super().connection_made(_ClosesGracefully(transport, self))
        self._head_timer = self.loop.call_later(self.limits.header_seconds, self._head_timed_out)

    def connection_lost(self, exc) -> None:
        if self._turned_away:
            return
        self._closing = True
        self._cancel_timers()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._hard_close = True
        self._keep_alive_after_body = False
        if self._lingering is not None:
            self._socket.close()
            return
        super().shutdown()

    def close_transport(self) -> None:
        """Every close goes through here (uvicorn calls ``transport.close()``).

        Closing a socket with unread input makes the kernel send a reset, which can destroy the
        answer before the client reads it: a client that writes its whole body before reading
        (urllib, botocore) would see "connection reset" instead of a 413. So when the client
        may still be sending, the answer is followed by a half-close and what arrives is read
        and dropped for a bounded time first (nginx's lingering close).
        """
        if self._closing:
            return
        self._closing = True
        self._cancel_timers()
        if self._hard_close or (self._phase == IDLE and not self._refused):
            self._socket.close()
        else:
            self._linger()

    def _linger(self) -> None:
        socket = self._socket
        if socket.is_closing() or not socket.can_write_eof():
            socket.close()
            return
        socket.write_eof()
        self.pipeline.clear()
        self._disconnect_cycle()
        self._lingering = _Lingering(self, socket)
        socket.set_protocol(self._lingering)
        self.flow.resume_reading()

    def _disconnect_cycle(self) -> None:
        # The app, if it still waits for body, hears that the client is gone.
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # ----------------------------------------------------------------- reading

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        phase = self._phase
        if phase == IDLE:
            self._head_bytes = len(data)
            self._head_exact = True
        elif phase == HEAD:
            self._head_bytes += len(data)
        if phase != BODY and self._head_bytes > self.limits.head_bytes:
            self._feed_up_to_head_limit(data)
        else:
            self._feed(data)
        if self._phase != IDLE and not self._closing:
            self._watch_slow_client()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No upgrades are served (no websockets): the request is answered as plain HTTP.
            pass
        except httptools.HttpParserError as error:
            refusal = error.__context__
            self._refuse(refusal if isinstance(refusal, _Refusal) else _Refusal(*BAD_REQUEST))

    def _feed_up_to_head_limit(self, data: bytes) -> None:
        # Without a bound httptools would gather a header of any size (quadratically: 64 MB took
        # the event loop 8 s), so the parser gets only what the head may still use.
        room = self.limits.head_bytes - (self._head_bytes - len(data))
        if room > 0:
            self._feed(data[:room])
        if self._closing or self._pending_refusal is not None:
            return
        if self._phase == HEAD and self._head_exact:
            return self._refuse(self._head_too_large())
        # The head ended (or an earlier request did, and a new head began) within the room.
        self._feed(data[room:])

    def _head_too_large(self) -> _Refusal:
        if self._request_line_length() > self.limits.request_line_bytes:
            return _Refusal(self.limits.request_line_status, URI_TOO_LARGE[1])
        return _Refusal(*HEADER_TOO_LARGE)

    def _request_line_length(self) -> int:
        # "METHOD URL HTTP/1.1"; the method is known once the parser has passed it.
        return len(self.parser.get_method()) + 1 + len(self.url) + len(" HTTP/1.1")

    def _check_head_lines(self) -> None:
        limits = self.limits
        if self._request_line_length() > limits.request_line_bytes:
            raise _Refusal(limits.request_line_status, URI_TOO_LARGE[1])
        for name, value in self.headers:
            if len(name) + 2 + len(value) > limits.header_line_bytes:
                raise _Refusal(*HEADER_TOO_LARGE)

    # Parser callbacks: where the current request is.

    def on_message_begin(self) -> None:
        self._phase = HEAD
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self._head_exact or self._head_bytes > self._lines_fit_below:
            self._check_head_lines()
        self._phase = BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = IDLE
        self._head_bytes = 0
        self._head_exact = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._keep_alive_after_body:
            self._keep_alive_after_body = False
            if not self.cycle.response_started:
                self.cycle.keep_alive = True
        super().on_message_complete()

    # ----------------------------------------------------------------- slow clients

    def _watch_slow_client(self) -> None:
        if self._phase == HEAD:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_seconds, self._head_timed_out)
            return
        self._last_body_read = self.loop.time()
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_seconds, self._body_timed_out)
            # An answer sent before the body is all in (413) closes the connection, since
            # the rest of the body is not worth reading; keep-alive returns once it is in.
            cycle = self.cycle
            if cycle.keep_alive and not cycle.response_started:
                cycle.keep_alive = False
                self._keep_alive_after_body = True

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._closing:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered: its turn first.
            self._head_timer = self.loop.call_later(self.limits.header_seconds, self._head_timed_out)
            return
        self._time_out()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._closing or self._phase != BODY:
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # We stopped reading (the app has not taken the body so far): not the client's fault.
            self._last_body_read = now
        quiet = now - self._last_body_read
        if quiet < self.limits.body_seconds:
            self._body_timer = self.loop.call_later(self.limits.body_seconds - quiet, self._body_timed_out)
            return
        self._time_out()

    def _time_out(self) -> None:
        cycle = self.cycle
        answerable = cycle is None or cycle.response_complete or not cycle.response_started
        if self.limits.answer_timeouts and self._phase != IDLE and answerable:
            self._write_page(*TIMED_OUT)
        self._disconnect_cycle()
        self._hard_close = True
        self.close_transport()

    # ----------------------------------------------------------------- refusing

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer a malformed or oversized request, after every response still owed before it."""
        if self._pending_refusal is not None or self._closing:
            return
        self._refused = True
        cycle = self.cycle
        owed = self.pipeline or (self._phase != BODY and cycle is not None and not cycle.response_complete)
        if owed:
            self._pending_refusal = refusal
            self.flow.pause_reading()
            return
        self._disconnect_cycle()
        self._answer(refusal)

    def on_response_complete(self) -> None:
        if self._pending_refusal is not None and not self.pipeline:
            self.server_state.total_requests += 1
            refusal, self._pending_refusal = self._pending_refusal, None
            if not self._closing:
                self._answer(refusal)
            return
        super().on_response_complete()

    def _answer(self, refusal: _Refusal) -> None:
        self._write_page(refusal.status, refusal.title)
        self.close_transport()

    def _write_page(self, status: int, title: str) -> None:
        body = error_page(status, title)
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/html\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self._socket.write(b"".join(content))


class _ClosesGracefully:
    """The socket as uvicorn's code sees it: the same but for ``close``, which lingers when needed.

    The methods used on every request are the socket's own, bound, so they cost nothing extra.
    """

    def __init__(self, transport: asyncio.Transport, protocol: LimitedHttpProtocol):
        self._transport = transport
        self.close = protocol.close_transport
        self.write = transport.write
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def __getattr__(self, name):
        return getattr(self._transport, name)


class _Lingering(asyncio.Protocol):
    """After the last answer and a half-close: drop what the client still sends, then close
    when it closes, goes quiet for ``linger_idle_seconds``, or after ``linger_seconds``."""

    def __init__(self, owner: LimitedHttpProtocol, transport: asyncio.Transport):
        self.owner = owner
        self.transport = transport
        self.loop = owner.loop
        limits = owner.limits
        now = self.loop.time()
        self.deadline = now + limits.linger_seconds
        self.idle_seconds = limits.linger_idle_seconds
        self.last_read = now
        self.timer = self.loop.call_later(min(self.idle_seconds, limits.linger_seconds), self._check)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()

    def connection_lost(self, exc) -> None:
        self.timer.cancel()
        self.owner.connection_lost(exc)

    def _check(self) -> None:
        now = self.loop.time()
        if now >= self.deadline or now - self.last_read >= self.idle_seconds:
            self.transport.close()
            return
        self.timer = self.loop.call_later(min(self.deadline, self.last_read + self.idle_seconds) - now, self._check)


_last_turned_away_warning = [0.0]


def _warn_turned_away(limit: int) -> None:
    # Once a minute at most: a flood of connections must not become a flood of log lines.
    now = time.monotonic()
    if now - _last_turned_away_warning[0] >= 60.0:
        _last_turned_away_warning[0] = now
        logger.warning("more than %d connections open: new ones are closed at once", limit)


class ContainerHttpProtocol(LimitedHttpProtocol):
    limits = CONTAINER_LIMITS


class RuntimeHttpProtocol(LimitedHttpProtocol):
    limits = RUNTIME_LIMITS


def protocol_for(limits: HttpLimits) -> type[LimitedHttpProtocol]:
    """The protocol class for uvicorn's ``http=`` setting.

    The two faces' classes live at module level so that uvicorn's worker processes can import
    them; other limits (short timeouts in tests) get a class made here, for in-thread servers.
    """
    for known in (ContainerHttpProtocol, RuntimeHttpProtocol):
        if known.limits == limits:
            return known
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})
