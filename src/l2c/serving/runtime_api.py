"""The Runtime-API face: ``POST /endpoints/{EndpointName}/invocations`` as boto3's
``sagemaker-runtime`` client speaks it (select it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``),
with the other two paths of botocore's model answered as AWS answers them for this container:
``/invocations-response-stream`` carries the XGBoost container's answer (which it writes in one
piece) as one ``PayloadPart`` event; ``/async-invocations`` on an endpoint config without an
``AsyncInferenceConfig`` is a ValidationError (AWS's wording not found: the refusal, not retried,
is the stricter choice).

Only an endpoint that serves traffic is invocable: ``InService``, or ``Updating`` (and the other
in-update states), which keep serving the OLD config until the update is done. ``Creating``,
``Failed`` or ``Deleting`` endpoints are "not found", the ValidationError AWS gives for an
endpoint it has no runtime for (aws/amazon-sagemaker-examples#293 shows the message; that AWS
gives exactly it for ``Creating`` is the stricter reading). With an ``authorizer``, a caller's
temporary credentials (a Lambda function's role) are held to the role's policies.

An endpoint name is resolved through the SageMaker control plane boto3 is pointed at (moto in
the embedded cloud): endpoint -> endpoint config -> production variants -> model ->
``PrimaryContainer.ModelDataUrl`` -> S3 object. Each variant's artifact is fetched, checked
in a child process (:mod:`l2c.serving.sandbox`: a booster that crashes XGBoost must not crash
the runtime; :mod:`l2c.artifact` refuses pickles) and loaded once, and cached under (endpoint
config, variant, model data URL, ETag, environment): a new config or new model data loads
anew. A refused artifact is remembered under the same key, so it is checked once, not once
per request. The resolution
itself is re-read at most every ``refresh_seconds`` (1 s by default), so a re-deployed
endpoint answers with its new model within that time.

Errors have the service's wire shapes (JSON body, code in ``x-amzn-ErrorType``), and a
container error is a ``ModelError`` (424), never a 5xx: boto3 retries 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from l2c.artifact import MAX_BOOSTER_BYTES
from l2c.config import RUNTIME_REFRESH_ENV
from l2c.serving import asgi, sandbox
from l2c.serving.engine import ContainerSettings, Engine

log = logging.getLogger("l2c.serving")

# A real-time endpoint accepts at most 6 MB per request (InvokeEndpoint's Body limit).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
DEFAULT_REFRESH_SECONDS = 1.0
MAX_CACHED_MODELS = 16
# Refusals are remembered per artifact version, so a bad artifact costs its check once, not
# once per request; transient failures (S3, the check not starting) are not remembered.
MAX_CACHED_FAILURES = 64
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# InvokeEndpoint, InvokeEndpointAsync and InvokeEndpointWithResponseStream, as botocore's
# sagemaker-runtime model names their paths.
_INVOKE_PATH = re.compile(r"^/endpoints/([^/]+)/(invocations|async-invocations|invocations-response-stream)$")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
JSON_TYPE = "application/json"
# The states in which an endpoint answers invocations (an update serves the old config meanwhile).
SERVING_STATES = ("InService", "Updating", "SystemUpdating", "RollingBack")
EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
INVOKE_ACTION = "sagemaker:InvokeEndpoint"  # all three operations are authorized as this action


class RuntimeApiError(Exception):
    """An error response of the Runtime API: status, error code and JSON body."""

    def __init__(self, status: int, code: str, message: str, **members):
        super().__init__(message)
        self.status, self.code, self.message, self.members = status, code, message, members

    def body(self) -> bytes:
        return json.dumps({"message": self.message, **self.members}).encode()


class EndpointNotFound(Exception):
    pass


class ModelLoadError(Exception):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    model_data_url: str
    etag: str
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Route:
    endpoint_name: str
    config_name: str
    variants: tuple[Variant, ...]
    asynchronous: bool = False  # the config has an AsyncInferenceConfig


@dataclass
class _CachedRoute:
    route: Route
    expires_at: float


# --------------------------------------------------------------------------- control plane


class BotoControlPlane:
    """Reads endpoints and artifacts with boto3, wherever ``AWS_ENDPOINT_URL*`` points it."""

    def __init__(self, region: str | None = None, boto_session=None):
        import boto3

        clients = boto_session or boto3
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.sagemaker = clients.client("sagemaker", region_name=self.region)
        self.s3 = clients.client("s3", region_name=self.region)
        self._sts = clients.client("sts", region_name=self.region)
        self._account: str | None = None

    def account_id(self) -> str:
        if self._account is None:
            try:
                self._account = self._sts.get_caller_identity()["Account"]
            except Exception:  # only used in messages: a placeholder beats failing the request
                return "000000000000"
        return self._account

    def resolve(self, endpoint_name: str) -> Route:
        from botocore.exceptions import ClientError

        try:
            endpoint = self.sagemaker.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as err:
            if err.response["Error"].get("Code") in ("ValidationException", "ResourceNotFound"):
                raise EndpointNotFound(endpoint_name) from None
            raise
        if endpoint.get("EndpointStatus") not in SERVING_STATES:
            raise EndpointNotFound(endpoint_name)
        config_name = endpoint["EndpointConfigName"]
        config = self.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        live_weights = {v["VariantName"]: v.get("CurrentWeight") for v in endpoint.get("ProductionVariants", [])}
        variants = tuple(self._variant(spec, live_weights) for spec in config["ProductionVariants"])
        return Route(
            endpoint_name=endpoint_name,
            config_name=config_name,
            variants=variants,
            asynchronous=bool(config.get("AsyncInferenceConfig")),
        )

    def _variant(self, spec: dict, live_weights: dict) -> Variant:
        model = self.sagemaker.describe_model(ModelName=spec["ModelName"])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        url = container.get("ModelDataUrl", "")
        weight = live_weights.get(spec["VariantName"])
        return Variant(
            name=spec["VariantName"],
            weight=float(spec.get("InitialVariantWeight", 1.0) if weight is None else weight),
            model_data_url=url,
            etag=self._etag(url),
            environment=tuple(sorted((container.get("Environment") or {}).items())),
        )

    def _etag(self, url: str) -> str:
        try:
            bucket, key = split_s3_url(url)
            head = self.s3.head_object(Bucket=bucket, Key=key)
        except Exception:  # reported when the model is loaded, with the reason
            return ""
        return head.get("ETag", "")

    def fetch(self, url: str) -> bytes:
        bucket, key = split_s3_url(url)
        obj = self.s3.get_object(Bucket=bucket, Key=key)
        if obj.get("ContentLength", 0) > MAX_BOOSTER_BYTES:
            raise ModelLoadError(f"{url} is {obj['ContentLength']} bytes, over the {MAX_BOOSTER_BYTES}-byte limit")
        return obj["Body"].read()


def split_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ModelLoadError(f"ModelDataUrl {url!r} is not an s3://bucket/key URL")
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


# --------------------------------------------------------------------------- the app


@dataclass
class RuntimeApp:
    """ASGI app of the SageMaker Runtime API's ``InvokeEndpoint``."""

    control_plane: object
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    rng: random.Random = field(default_factory=random.Random)
    # Decides whether a caller's credentials may invoke (see LocalAuthorizer); None: everyone may.
    authorizer: object = None
    # Where a ModelError's log line goes (endpoint, variant, line); None: nowhere.
    container_log: object = None
    _routes: dict = field(default_factory=dict)
    _engines: OrderedDict = field(default_factory=OrderedDict)
    _failures: OrderedDict = field(default_factory=OrderedDict)  # key -> "Unable to load model: ..."
    _loading: dict = field(default_factory=dict)  # key -> the lock of the load under way
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await asgi.lifespan(receive, send)
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4()).encode()
        match = _INVOKE_PATH.match(scope["path"])
        try:
            if scope["path"] == "/ping" and scope["method"] in ("GET", "HEAD"):
                return await asgi.respond(send, 200, b"", "text/plain", [(b"x-amzn-requestid", request_id)])
            if match is None or scope["method"] != "POST":
                raise RuntimeApiError(404, "UnknownOperationException", "Unknown operation")
            await self._invoke(scope, receive, send, match.group(1), match.group(2), request_id)
        except RuntimeApiError as err:
            headers = [(b"x-amzn-requestid", request_id)]
            if err.code:
                headers.append((b"x-amzn-errortype", err.code.encode()))
            await asgi.respond(send, err.status, err.body(), JSON_TYPE, headers)
        except asgi.ClientGone:
            return

    async def _invoke(self, scope, receive, send, endpoint_name: str, kind: str, request_id: bytes) -> None:
        content_type, accept, length, target, authorization, stream_accept = asgi.header_values(
            scope,
            b"content-type",
            b"accept",
            b"content-length",
            b"x-amzn-sagemaker-target-variant",
            b"authorization",
            b"x-amzn-sagemaker-accept",
        )
        check_endpoint_name(endpoint_name)
        await self._authorize(authorization, endpoint_name)
        try:
            body = await asgi.read_body(receive, length, MAX_PAYLOAD_BYTES)
        except asgi.BodyTooLarge:
            # What the service answers: a bare 413, which botocore reports as error code "413".
            raise RuntimeApiError(413, "", f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes.") from None
        route = await self._route(endpoint_name)
        if kind == "async-invocations":
            raise self._not_async(route)
        if route.asynchronous:
            # An async endpoint takes only InvokeEndpointAsync (a ValidationError otherwise, as
            # strands-agents/harness-sdk#1969 reports for InvokeEndpoint).
            raise RuntimeApiError(
                400,
                "ValidationError",
                f"Endpoint {endpoint_name} is an asynchronous inference endpoint: use InvokeEndpointAsync.",
            )
        if kind == "invocations-response-stream":
            accept = stream_accept
        variant = choose_variant(route, target, self.rng)
        engine = await self._engine(route, variant)
        reply = await engine.ainvoke(body, content_type, accept)
        if reply.status >= 400:
            raise self._model_error(endpoint_name, reply.status, reply.body.decode("utf-8", "replace"), variant.name)
        headers = [(b"x-amzn-invoked-production-variant", variant.name.encode()), (b"x-amzn-requestid", request_id)]
        if kind == "invocations-response-stream":
            # The XGBoost container answers in one piece; SageMaker passes on what the container
            # writes as it writes it, so the stream carries that piece as one PayloadPart.
            headers.append((b"x-amzn-sagemaker-content-type", reply.content_type.encode()))
            return await asgi.respond(send, 200, payload_part(reply.body), EVENT_STREAM_TYPE, headers)
        await asgi.respond(send, reply.status, reply.body, reply.content_type, headers)

    async def _authorize(self, authorization: str | None, endpoint_name: str) -> None:
        if self.authorizer is None:
            return
        found = _CREDENTIAL.search(authorization or "")
        access_key = found.group(1) if found else ""
        resource = self._endpoint_arn(endpoint_name)
        decision = self.authorizer.cached(access_key, INVOKE_ACTION, resource)
        if decision is None:
            decision = await asyncio.get_running_loop().run_in_executor(
                None, self.authorizer.decide, access_key, INVOKE_ACTION, resource
            )
        if not decision.get("allowed", True):
            # Source: IAM User Guide, "Troubleshoot access denied error messages" (the message
            # shape); SageMaker Runtime answers it as AccessDeniedException, HTTP 400 (SageMaker
            # API Reference, Common Errors).
            raise RuntimeApiError(
                400,
                "AccessDeniedException",
                f"User: {decision.get('principal')} is not authorized to perform: {INVOKE_ACTION} on resource: "
                f"{resource} because no identity-based policy allows the {INVOKE_ACTION} action",
            )

    def _endpoint_arn(self, endpoint_name: str) -> str:
        region = getattr(self.control_plane, "region", "us-east-1")
        return f"arn:aws:sagemaker:{region}:{self.control_plane.account_id()}:endpoint/{endpoint_name.lower()}"

    def _not_async(self, route: Route) -> RuntimeApiError:
        # AWS's wording for this case was not found; a ValidationError (400, not retried) is the
        # stricter answer. An endpoint with an AsyncInferenceConfig is not served locally either.
        if route.asynchronous:
            return RuntimeApiError(
                400,
                "ValidationError",
                f"Endpoint {route.endpoint_name} is an asynchronous inference endpoint, which the local cloud does not serve.",
            )
        return RuntimeApiError(
            400,
            "ValidationError",
            f"Endpoint {route.endpoint_name} of account {self.control_plane.account_id()} is not an asynchronous "
            "inference endpoint: its endpoint configuration has no AsyncInferenceConfig. Use InvokeEndpoint.",
        )

    # ----------------------------------------------------------------- resolution and cache

    async def _route(self, endpoint_name: str) -> Route:
        cached = self._routes.get(endpoint_name)
        if cached is not None and cached.expires_at > time.monotonic():
            return cached.route
        return await asyncio.get_running_loop().run_in_executor(None, self._resolve, endpoint_name)

    def _resolve(self, endpoint_name: str) -> Route:
        # Not under the lock: concurrent look-ups of one endpoint may repeat the work, but a
        # slow control plane never holds up requests for other endpoints.
        try:
            route = self.control_plane.resolve(endpoint_name)
        except EndpointNotFound:
            self._routes.pop(endpoint_name, None)
            raise RuntimeApiError(
                400,
                "ValidationError",
                f"Endpoint {endpoint_name} of account {self.control_plane.account_id()} not found.",
            ) from None
        except Exception as err:  # the control plane itself failed: not the caller's fault
            log.warning("resolving endpoint %s failed: %s", endpoint_name, err)
            raise RuntimeApiError(500, "InternalFailure", "An internal failure occurred.") from None
        self._routes[endpoint_name] = _CachedRoute(route, time.monotonic() + self.refresh_seconds)
        return route

    async def _engine(self, route: Route, variant: Variant) -> Engine:
        key = (route.config_name, variant.name, variant.model_data_url, variant.etag, variant.environment)
        engine = self._engines.get(key)
        if engine is not None:
            return engine
        failure = self._failures.get(key)
        if failure is not None:
            raise self._model_error(route.endpoint_name, 500, failure, variant.name)
        return await asyncio.get_running_loop().run_in_executor(None, self._load, key, route, variant)

    def _load(self, key, route: Route, variant: Variant) -> Engine:
        # One load per key at a time; loads of other artifacts (a slow check) do not wait for it.
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            engine, failure = self._engines.get(key), self._failures.get(key)
            if engine is None and failure is None:
                try:
                    engine = self._start_engine(key, variant)
                except (ModelLoadError, ValueError) as err:  # the artifact's fault (ArtifactError too): remembered
                    failure = f"Unable to load model: {err}"
                    self._remember(self._failures, key, failure, MAX_CACHED_FAILURES)
                except Exception as err:  # S3 errors, the check not starting: tried again next time
                    failure = f"Unable to load model: {type(err).__name__}: {err}"
                finally:
                    with self._lock:
                        self._loading.pop(key, None)
        if engine is None:
            raise self._model_error(route.endpoint_name, 500, failure, variant.name) from None
        return engine

    def _start_engine(self, key, variant: Variant) -> Engine:
        settings = ContainerSettings.from_env(dict(variant.environment))
        # Checked in a child process first: a booster that crashes XGBoost must not crash the runtime.
        model = sandbox.load_checked(self.control_plane.fetch(variant.model_data_url))
        engine = Engine(model, settings)
        self._remember(self._engines, key, engine, MAX_CACHED_MODELS)
        return engine

    def _remember(self, cache: OrderedDict, key, value, limit: int) -> None:
        with self._lock:
            cache[key] = value
            while len(cache) > limit:
                cache.popitem(last=False)

    def _model_error(
        self, endpoint_name: str, status: int, original: str, variant: str = "AllTraffic"
    ) -> RuntimeApiError:
        if self.container_log is not None:
            self.container_log(endpoint_name, variant, f"Model error ({status}): {original}")
        region = getattr(self.control_plane, "region", "us-east-1")
        account = self.control_plane.account_id()
        side = "client" if status < 500 else "server"
        message = (
            f'Received {side} error ({status}) from primary with message "{original}". '
            f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
            f"group=/aws/sagemaker/Endpoints/{endpoint_name} in account {account} for more information."
        )
        return RuntimeApiError(
            424,
            "ModelError",
            message,
            OriginalStatusCode=status,
            OriginalMessage=original,
            LogStreamArn=f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}",
        )


def payload_part(data: bytes) -> bytes:
    """One ``PayloadPart`` event in AWS's event-stream framing (what botocore's EventStream reads)."""
    import struct
    import zlib

    headers = b"".join(
        bytes([len(name)]) + name + b"\x07" + struct.pack(">H", len(value)) + value
        for name, value in (
            (b":event-type", b"PayloadPart"),
            (b":content-type", b"application/octet-stream"),
            (b":message-type", b"event"),
        )
    )
    prelude = struct.pack(">II", 16 + len(headers) + len(data), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + data
    return message + struct.pack(">I", zlib.crc32(message))


class LocalAuthorizer:
    """Asks the local cloud whether an access key may invoke (``POST /_l2c/authorize``), remembering
    each answer until moto's change count moves (a policy changed, a role was assumed).

    Only temporary keys (``ASIA...``, an assumed role's, e.g. a Lambda function's) are asked about:
    any other key is the account's own, which the local cloud lets do everything.
    """

    def __init__(self, control_plane_url: str, changes):
        self.url = control_plane_url.rstrip("/") + "/_l2c/authorize"
        self._changes = changes
        self._answers: dict = {}
        self._seen = -1

    def cached(self, access_key: str, action: str, resource: str) -> dict | None:
        if not access_key.startswith("ASIA"):
            return _ALLOWED
        if self._changes.value != self._seen:
            return None
        return self._answers.get((access_key, action, resource))

    def decide(self, access_key: str, action: str, resource: str) -> dict:
        import urllib.request

        seen = self._changes.value
        request = urllib.request.Request(
            self.url,
            method="POST",
            headers={"Content-Type": JSON_TYPE},
            data=json.dumps({"access_key": access_key, "action": action, "resource": resource}).encode(),
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                decision = json.loads(answer.read())
        except (OSError, ValueError) as err:  # the control plane cannot say: not the caller's fault
            log.warning("asking %s whether %s may %s failed: %s", self.url, access_key, action, err)
            raise RuntimeApiError(500, "InternalFailure", "An internal failure occurred.") from None
        if seen != self._seen:
            self._answers, self._seen = {}, seen
        self._answers[access_key, action, resource] = decision
        return decision


_ALLOWED = {"allowed": True, "principal": None}


class ContainerLog:
    """Writes the endpoint's container lines (one per ModelError) to /aws/sagemaker/Endpoints/<name>,
    stream ``<variant>/i-<id>`` as an instance's, in the background: best effort, never failing
    or slowing an invocation."""

    def __init__(self, boto_session, region: str):
        from concurrent.futures import ThreadPoolExecutor

        self._logs = boto_session.client("logs", region_name=region)
        self._instance = f"i-{uuid.uuid4().hex[:17]}"
        self._ready: set = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l2c-container-log")

    def __call__(self, endpoint: str, variant: str, line: str) -> None:
        self._pool.submit(self._write, endpoint, variant, line, int(time.time() * 1000))

    def _write(self, endpoint: str, variant: str, line: str, timestamp: int) -> None:
        group, stream = f"/aws/sagemaker/Endpoints/{endpoint}", f"{variant}/{self._instance}"
        try:
            if (group, stream) not in self._ready:
                for create, kwargs in (
                    (self._logs.create_log_group, {"logGroupName": group}),
                    (self._logs.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
                ):
                    try:
                        create(**kwargs)
                    except self._logs.exceptions.ResourceAlreadyExistsException:
                        pass
                self._ready.add((group, stream))
            self._logs.put_log_events(
                logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": timestamp, "message": line}]
            )
        except Exception as err:  # logging is best effort
            log.debug("writing to %s failed: %s", group, err)


def check_endpoint_name(name: str) -> None:
    if not _ENDPOINT_NAME.match(name):
        raise RuntimeApiError(
            400,
            "ValidationError",
            f"1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*",
        )


def choose_variant(route: Route, target: str | None, rng: random.Random) -> Variant:
    """The targeted variant, else one drawn with probability proportional to its weight."""
    if target:
        for variant in route.variants:
            if variant.name == target:
                return variant
        raise RuntimeApiError(
            400,
            "ValidationError",
            f"Variant {target} is not a production variant of endpoint {route.endpoint_name}.",
        )
    weights = [max(variant.weight, 0.0) for variant in route.variants]
    if sum(weights) <= 0:  # all weights zero: share evenly rather than refuse
        weights = [1.0] * len(weights)
    return rng.choices(route.variants, weights=weights)[0]


def runtime_app(refresh_seconds: float | None = None, control_plane=None) -> RuntimeApp:
    """The Runtime-API face; boto3 (``AWS_ENDPOINT_URL``, region, credentials) unless a control plane is given."""
    if refresh_seconds is None:
        refresh_seconds = float(os.environ.get(RUNTIME_REFRESH_ENV, DEFAULT_REFRESH_SECONDS))
    sandbox.warm_up_in_background()  # the model check's fork server imports XGBoost: seconds, once
    return RuntimeApp(control_plane=control_plane or BotoControlPlane(), refresh_seconds=refresh_seconds)
