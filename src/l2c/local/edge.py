"""The local cloud's one front door: everything AWS_ENDPOINT_URL reaches goes through here.

A WSGI layer in front of moto, on the control-plane port. For each request it decides:

1. ``/_l2c/...``: the local cloud's own settings (the pace) and pages (``/_l2c/pages/<stack>/``,
   :mod:`l2c.page.served`), never an AWS path;
2. a data-plane path (SageMaker Runtime invocations, Lambda Invoke, execute-api stages, API
   Gateway's TestInvokeMethod): answered by l2c's own data planes, registered with
   :meth:`Edge.route`, never by moto's stubs (which answer any endpoint name with canned data);
3. anything else is a control-plane call: it is named (service and operation, from botocore's
   own service models), the AWS rules registered for it run (:mod:`l2c.local.rules`): before
   moto, to refuse what AWS refuses; after it, to delay, enforce and reshape as AWS does.

The service comes from the request's SigV4 credential scope, as AWS's own front end routes it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

from l2c.cloud.session import CloudError
from l2c.local import pace as pacing
from l2c.local.rules import AwsError, Call, Registry, Reply

log = logging.getLogger("l2c.local.edge")

_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
# SigV4 signing names that differ from botocore's service names.
_SERVICE_OF_SIGNING_NAME = {"servicequotas": "service-quotas", "execute-api": "execute-api"}
ADMIN_PREFIX = "/_l2c/"


@dataclass
class EdgeRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    raw_headers: list[tuple[str, str]]  # as sent
    body: bytes
    client: str
    signing_service: str | None
    region: str | None
    access_key: str | None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


Handler = Callable[[EdgeRequest], Reply]
Matcher = Callable[[EdgeRequest], bool]


class Edge:
    def __init__(self, moto_app, rules: Registry, pace: pacing.Pace = pacing.PACE):
        self.moto_app = moto_app
        self.rules = rules
        self.pace = pace
        self._routes: list[tuple[str, Matcher, Handler]] = []
        self._admin: dict[tuple[str, str], Handler] = {
            ("GET", "pace"): self._get_pace,
            ("POST", "pace"): self._set_pace,
        }
        self._admin_trees: dict[str, Handler] = {}
        self._operations = OperationIndex()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- registration

    def route(self, name: str, matches: Matcher, handler: Handler) -> None:
        """Send requests that ``matches`` to ``handler`` (a data plane) instead of moto."""
        with self._lock:
            self._routes = [item for item in self._routes if item[0] != name] + [(name, matches, handler)]

    def admin(self, method: str, name: str, handler: Handler) -> None:
        self._admin[method, name] = handler

    def admin_tree(self, name: str, handler: Handler) -> None:
        """``handler`` answers every method on ``/_l2c/<name>`` and every path under it (the pages)."""
        self._admin_trees[name] = handler

    # ----------------------------------------------------------------- WSGI

    def __call__(self, environ, start_response):
        request = _request(environ)
        if request.path.startswith(ADMIN_PREFIX):
            _buffer_body(environ, request)
            return _send(start_response, self._admin_call(request))
        for _, matches, handler in self._routes:
            if matches(request):
                _buffer_body(environ, request)
                return _send(start_response, _safely(handler, request))
        service = _SERVICE_OF_SIGNING_NAME.get(request.signing_service or "", request.signing_service)
        if service not in self.rules.services():
            return self.moto_app(environ, start_response)
        protocol = self._operations.protocol(service)
        if protocol == "query":  # the Action may travel in the form body
            _buffer_body(environ, request)
        operation = self._operations.name(service, request)
        if operation is None or not self.rules.has_rules_for(service, operation):
            # Nothing to enforce: moto reads the body itself, so a large S3 upload streams.
            return self.moto_app(environ, start_response)
        if protocol != "query" and self.rules.reads_body(service, operation):
            _buffer_body(environ, request)
        call = _call(service, operation, request, self._operations)
        try:
            if not self.rules.reads_body(service, operation) and not self.rules.for_call(service, operation, "after"):
                # Checks of the headers only: once they pass, moto answers as it would have,
                # streamed, with its own headers (a HEAD's Content-Length included).
                answer = self._before_moto(call)
                return self.moto_app(environ, start_response) if answer is None else _send(start_response, answer)
            return _send(start_response, self._with_rules(call, environ))
        except AwsError as err:
            log.info("%s %s refused by the AWS rules: %s %s", service, operation, err.code, err.message)
            return _send(start_response, err.reply(protocol, service))

    def _with_rules(self, call: Call, environ) -> Reply:
        """moto's answer to the call, with the rules before it (which may refuse or answer
        instead) and after it (which may reshape a successful answer)."""
        answer = self._before_moto(call)
        if answer is not None:
            return answer
        reply = _run_moto(self.moto_app, environ)
        if reply.status >= 300:
            return reply
        for rule in self.rules.for_call(call.service, call.operation, "after"):
            reply = rule.run(call, reply) or reply
        return reply

    def _before_moto(self, call: Call) -> Reply | None:
        """The before-rules' answer instead of moto's, if one gives one (AwsError: a refusal)."""
        for rule in self.rules.for_call(call.service, call.operation, "before"):
            answer = rule.run(call)
            if answer is not None:
                return answer
        return None

    # ----------------------------------------------------------------- admin

    def _admin_call(self, request: EdgeRequest) -> Reply:
        name = request.path[len(ADMIN_PREFIX) :].strip("/")
        handler = self._admin.get((request.method, name)) or self._admin_trees.get(name.split("/", 1)[0])
        if handler is None:
            return json_reply(404, {"message": f"no local-cloud setting {request.method} {name}"})
        return _safely(handler, request)

    def _get_pace(self, request: EdgeRequest) -> Reply:
        return json_reply(200, {"pace": self.pace.factor})

    def _set_pace(self, request: EdgeRequest) -> Reply:
        try:
            self.pace.set(request.json().get("pace"))
        except (CloudError, AttributeError) as err:
            return json_reply(400, {"message": str(err)})
        return json_reply(200, {"pace": self.pace.factor})


# --------------------------------------------------------------------------- naming operations


class OperationIndex:
    """Names a request's operation the way AWS does, from botocore's service models."""

    def __init__(self):
        self._models: dict[str, object] = {}
        self._rest: dict[str, list[tuple[str, re.Pattern, str, int]]] = {}
        self._lock = threading.Lock()

    def model(self, service: str):
        with self._lock:
            if service not in self._models:
                import botocore.session

                self._models[service] = botocore.session.get_session().get_service_model(service)
            return self._models[service]

    def protocol(self, service: str) -> str:
        return self.model(service).metadata["protocol"]

    def name(self, service: str, request: EdgeRequest) -> str | None:
        protocol = self.protocol(service)
        if protocol == "json":
            target = request.header("x-amz-target") or ""
            return target.rpartition(".")[2] or None
        if protocol == "query":
            form = dict(parse_qsl(request.query)) | dict(parse_qsl(request.body.decode("utf-8", "replace")))
            return form.get("Action")
        match = self.match_rest(service, request.method, request.path, request.query)
        return match[0] if match else None

    def match_rest(self, service: str, method: str, path: str, query: str | None = None) -> tuple[str, dict] | None:
        """The operation whose URI fits best; with ``query``, only those whose literal query keys
        it carries (S3's ``PUT /{Bucket}?acl`` is PutBucketAcl, ``PUT /{Bucket}`` CreateBucket)."""
        present = None if query is None else {key for key, _ in parse_qsl(query, keep_blank_values=True)}
        best = None
        for verb, pattern, operation, literal, required in self._rest_patterns(service):
            if verb != method or (present is not None and not required <= present):
                continue
            found = pattern.fullmatch(path)
            rank = (len(required) if present is not None else 0, literal)
            if found and (best is None or rank > best[2]):
                best = (operation, found.groupdict(), rank)
        return (best[0], best[1]) if best else None

    def _rest_patterns(self, service: str):
        with self._lock:
            cached = self._rest.get(service)
        if cached is not None:
            return cached
        model = self.model(service)
        patterns = []
        for name in model.operation_names:
            http = model.operation_model(name).http
            uri, _, literal_query = http["requestUri"].partition("?")
            required = frozenset(key for key, _ in parse_qsl(literal_query, keep_blank_values=True))
            regex, literal = "", 0
            for part in re.split(r"(\{[^}]+\})", uri):
                if part.startswith("{"):
                    label = re.sub(r"\W", "_", part.strip("{}+"))
                    regex += f"(?P<{label}>.+)" if part.endswith("+}") else f"(?P<{label}>[^/]+)"
                else:
                    regex += re.escape(part)
                    literal += len(part)
            patterns.append((http["method"], re.compile(regex.rstrip("/") + "/?"), name, literal, required))
        with self._lock:
            self._rest[service] = patterns
        return patterns


def _call(service: str, operation: str, request: EdgeRequest, index: OperationIndex) -> Call:
    protocol = index.protocol(service)
    params: dict = dict(parse_qsl(request.query))
    if protocol in ("rest-json", "rest-xml"):
        match = index.match_rest(service, request.method, request.path, request.query)
        params.update(match[1] if match else {})
    if protocol == "query":
        params.update(parse_qsl(request.body.decode("utf-8", "replace")))
    elif request.body and protocol in ("json", "rest-json"):
        try:
            body = json.loads(request.body)
        except ValueError:
            body = {}
        if isinstance(body, dict):
            params.update(body)
    access_key = request.access_key or ""
    return Call(
        service=service,
        operation=operation,
        params=params,
        region=request.region or "us-east-1",
        account=account_of(access_key),
        access_key=access_key,
        headers=request.headers,
    )


def account_of(access_key: str) -> str:
    from moto.iam.models import get_account_id_from

    return get_account_id_from(access_key)


# --------------------------------------------------------------------------- WSGI plumbing


def _request(environ) -> EdgeRequest:
    """The request as the edge sees it, without its body (read only where it is needed)."""
    raw_headers = [
        (key[5:].replace("_", "-").title(), value) for key, value in environ.items() if key.startswith("HTTP_")
    ]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            raw_headers.append((key.replace("_", "-").title(), environ[key]))
    headers = {name.lower(): value for name, value in raw_headers}
    scope = _SCOPE.search(headers.get("authorization", "")) or _SCOPE.search(
        "Credential=" + dict(parse_qsl(environ.get("QUERY_STRING", ""))).get("X-Amz-Credential", "")
    )
    return EdgeRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO", ""),
        query=environ.get("QUERY_STRING", ""),
        headers=headers,
        raw_headers=raw_headers,
        body=b"",
        client=environ.get("REMOTE_ADDR", ""),
        signing_service=scope["service"] if scope else None,
        region=scope["region"] if scope else None,
        access_key=scope["key"] if scope else None,
    )


def _buffer_body(environ, request: EdgeRequest) -> None:
    """Read the body for the rules, and leave moto a copy to read again."""
    request.body = _read_body(environ)
    environ["wsgi.input"] = io.BytesIO(request.body)


def _read_body(environ) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length.isdigit():
        return stream.read(int(length)) if int(length) else b""
    # werkzeug de-chunks a body sent without a length; it ends where the stream does.
    if environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return stream.read()
    return b""


def _run_moto(app, environ) -> Reply:
    captured: dict = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = int(status.split(" ", 1)[0]), list(headers)
        return lambda data: captured.setdefault("written", []).append(data)

    chunks = app(environ, start_response)
    try:
        body = b"".join(captured.get("written", [])) + b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return Reply(captured["status"], captured["headers"], body)


def _send(start_response, reply: Reply):
    reason = HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else ""
    headers = [(k, v) for k, v in reply.headers if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(reply.body))))
    start_response(f"{reply.status} {reason}", headers)
    return [reply.body]


def _safely(handler: Handler, request: EdgeRequest) -> Reply:
    try:
        return handler(request)
    except AwsError as err:
        return err.reply("rest-json", request.signing_service or "")
    except Exception:  # a data plane's bug must not take the control plane's thread with it
        log.exception("%s %s failed in the local cloud", request.method, request.path)
        return json_reply(500, {"message": "An internal failure occurred."}, error_type="InternalFailure")


def json_reply(status: int, document: dict, error_type: str | None = None, extra_headers=()) -> Reply:
    body = json.dumps(document).encode()
    headers = [("Content-Type", "application/json"), *extra_headers]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return Reply(status, headers, body)
