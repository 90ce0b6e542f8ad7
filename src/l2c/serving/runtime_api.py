"""The Runtime-API face: ``POST /endpoints/{EndpointName}/invocations`` as boto3's
``sagemaker-runtime`` client speaks it (select it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``).

An endpoint name is resolved through the SageMaker control plane boto3 is pointed at (moto in
the embedded cloud): endpoint -> endpoint config -> production variants -> model ->
``PrimaryContainer.ModelDataUrl`` -> S3 object. Each variant's artifact is fetched, checked
(:mod:`l2c.artifact` refuses pickles) and loaded once, and cached under (endpoint config,
variant, model data URL, ETag): a new config or new model data loads anew. The resolution
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

from l2c.artifact import ArtifactError, MAX_BOOSTER_BYTES, load_artifact_bytes
from l2c.serving import asgi
from l2c.serving.engine import ContainerSettings, Engine

log = logging.getLogger("l2c.serving")

# A real-time endpoint accepts at most 6 MB per request (InvokeEndpoint's Body limit).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
DEFAULT_REFRESH_SECONDS = 1.0
MAX_CACHED_MODELS = 16
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_INVOKE_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
JSON_TYPE = "application/json"


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
        if endpoint.get("EndpointStatus") not in ("InService", "Updating", "SystemUpdating"):
            raise EndpointNotFound(endpoint_name)
        config_name = endpoint["EndpointConfigName"]
        config = self.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        live_weights = {v["VariantName"]: v.get("CurrentWeight") for v in endpoint.get("ProductionVariants", [])}
        variants = tuple(self._variant(spec, live_weights) for spec in config["ProductionVariants"])
        return Route(endpoint_name=endpoint_name, config_name=config_name, variants=variants)

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
    _routes: dict = field(default_factory=dict)
    _engines: OrderedDict = field(default_factory=OrderedDict)
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
            await self._invoke(scope, receive, send, match.group(1), request_id)
        except RuntimeApiError as err:
            headers = [(b"x-amzn-requestid", request_id)]
            if err.code:
                headers.append((b"x-amzn-errortype", err.code.encode()))
            await asgi.respond(send, err.status, err.body(), JSON_TYPE, headers)
        except asgi.ClientGone:
            return

    async def _invoke(self, scope, receive, send, endpoint_name: str, request_id: bytes) -> None:
        content_type, accept, length, target = asgi.header_values(
            scope, b"content-type", b"accept", b"content-length", b"x-amzn-sagemaker-target-variant"
        )
        check_endpoint_name(endpoint_name)
        try:
            body = await asgi.read_body(receive, length, MAX_PAYLOAD_BYTES)
        except asgi.BodyTooLarge:
            # What the service answers: a bare 413, which botocore reports as error code "413".
            raise RuntimeApiError(413, "", f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes.") from None
        route = await self._route(endpoint_name)
        variant = choose_variant(route, target, self.rng)
        engine = await self._engine(route, variant)
        reply = await engine.ainvoke(body, content_type, accept)
        if reply.status >= 400:
            raise self._model_error(endpoint_name, reply.status, reply.body.decode("utf-8", "replace"))
        headers = [(b"x-amzn-invoked-production-variant", variant.name.encode()), (b"x-amzn-requestid", request_id)]
        await asgi.respond(send, reply.status, reply.body, reply.content_type, headers)

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
                400, "ValidationError",
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
        return await asyncio.get_running_loop().run_in_executor(None, self._load, key, route, variant)

    def _load(self, key, route: Route, variant: Variant) -> Engine:
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                return engine
            try:
                settings = ContainerSettings.from_env(dict(variant.environment))
                model = load_artifact_bytes(self.control_plane.fetch(variant.model_data_url))
            except (ArtifactError, ModelLoadError, ValueError) as err:
                raise self._model_error(route.endpoint_name, 500, f"Unable to load model: {err}") from None
            except Exception as err:  # S3 errors and the like: still the container failing to start
                raise self._model_error(route.endpoint_name, 500, f"Unable to load model: {type(err).__name__}: {err}") from None
            engine = Engine(model, settings)
            self._engines[key] = engine
            while len(self._engines) > MAX_CACHED_MODELS:
                self._engines.popitem(last=False)
            return engine

    def _model_error(self, endpoint_name: str, status: int, original: str) -> RuntimeApiError:
        region = getattr(self.control_plane, "region", "us-east-1")
        account = self.control_plane.account_id()
        side = "client" if status < 500 else "server"
        message = (
            f'Received {side} error ({status}) from primary with message "{original}". '
            f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
            f"group=/aws/sagemaker/Endpoints/{endpoint_name} in account {account} for more information."
        )
        return RuntimeApiError(
            424, "ModelError", message,
            OriginalStatusCode=status, OriginalMessage=original,
            LogStreamArn=f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}",
        )


def check_endpoint_name(name: str) -> None:
    if not _ENDPOINT_NAME.match(name):
        raise RuntimeApiError(
            400, "ValidationError",
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
            400, "ValidationError",
            f"Variant {target} is not a production variant of endpoint {route.endpoint_name}.",
        )
    weights = [max(variant.weight, 0.0) for variant in route.variants]
    if sum(weights) <= 0:  # all weights zero: share evenly rather than refuse
        weights = [1.0] * len(weights)
    return rng.choices(route.variants, weights=weights)[0]


def runtime_app(refresh_seconds: float | None = None, control_plane=None) -> RuntimeApp:
    """The Runtime-API face; boto3 (``AWS_ENDPOINT_URL``, region, credentials) unless a control plane is given."""
    if refresh_seconds is None:
        refresh_seconds = float(os.environ.get("L2C_RUNTIME_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS))
    return RuntimeApp(control_plane=control_plane or BotoControlPlane(), refresh_seconds=refresh_seconds)
