"""The embedded AWS control plane: moto in server mode, in this process, with three fixes.

boto3 reaches it through ``AWS_ENDPOINT_URL`` and speaks each service's real wire protocol, so
every call's parameters are validated by botocore exactly as against AWS. It runs in the same
process as the execute-api gateway because the gateway needs the code of a deployed Lambda
function, which moto keeps but does not serve (its ``Code.Location`` is a made-up S3 URL).

The fixes, all confined to this process:
- moto's S3 evaluates a bucket policy without any request context: a statement's ``Condition``
  is either taken as met or its failure taken as a denial, so the bucket's standard
  deny-unless-TLS statement denies every request. IAM's rule is that a condition on a key the
  request does not carry is not met (bar the ``...IfExists`` and ``Null`` operators); since
  moto's S3 supplies no keys, such statements are left out of its evaluation here, which is
  what AWS does with that statement for any request over TLS.
- moto's UpdateUsagePlan takes ``int()`` of a throttle rate, so "20.0" or "0.5" (AWS takes
  doubles) is a 500, and keeps a patched quota limit as a string; numbers are kept as numbers here.
- werkzeug's request log is silenced; the gateway and the runtime log what matters.

Every request that may change moto's state is counted (:data:`changes`, in shared memory so
that the runtime's process reads the same count). The gateway, the Lambda host and the runtime
read the same few things (API, stage, key, plan, function, endpoint) on every request;
:func:`cache_reads` lets their boto3 sessions answer a repeated read from memory until the
count moves, so a redeploy still shows at once while steady traffic costs no control-plane
round trips (each is ~6 ms of this process's GIL).
"""

from __future__ import annotations

import ctypes
import json
import logging
import mmap
import os
import socket
import tempfile
import threading

from l2c.cloud.session import CloudError


def start(port: int, host: str = "127.0.0.1"):
    """Start moto on host:port in a background thread; returns the server (call ``.stop()``)."""
    ensure_port_free(host, port, "the control plane (moto)")
    from moto.server import ThreadedMotoServer

    _fix_condition_evaluation()
    _fix_usage_plan_numbers()
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    from l2c.local.edge import Edge
    from l2c.local.rules import load_all

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    # werkzeug's handler reads server.app per request, so the edge and the counting are in
    # front of the very first one. The data planes are routed later, once they run.
    server.edge = Edge(_CountChanges(server._server.app), load_all())
    server._server.app = server.edge
    return server


class ChangeCount:
    """How many requests that may have changed moto's state it has answered.

    The count sits in a shared page (an unlinked file, mapped) rather than in this process's
    memory: the runtime's own process maps the same page from the descriptor it inherits
    (``ChangeCount(fd)``), so it sees a change the moment it is counted, with no round trip.
    """

    def __init__(self, fd: int | None = None):
        if fd is None:
            # /dev/shm keeps the page out of disk write-back; any directory would do.
            self._file = tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
            self._file.truncate(8)
            fd = self._file.fileno()
        self._fd = fd
        self._map = mmap.mmap(fd, 8)
        self._cell = ctypes.c_uint64.from_buffer(self._map)
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._cell.value

    def fileno(self) -> int:
        return self._fd

    def bump(self) -> None:
        # Only moto's process writes; the lock keeps its server threads from losing a count.
        with self._lock:
            self._cell.value += 1


changes = ChangeCount()
# Operations that only read; anything else counts as a change (a wrong guess only costs a re-read).
_READ_PREFIXES = ("Describe", "List", "Get", "Head", "Search", "Filter")
# Log writes happen on every invocation; nothing cached depends on them.
_UNCOUNTED_TARGETS = ("Logs_",)


class _CountChanges:
    """WSGI middleware around moto: counts each request that may change state, after it ran."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if _may_change(environ):
            try:
                return self.app(environ, start_response)
            finally:
                changes.bump()
        return self.app(environ, start_response)


def _may_change(environ) -> bool:
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
        return False
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith(_UNCOUNTED_TARGETS):
        return False
    operation = target.rpartition(".")[2]
    return not (operation and operation.startswith(_READ_PREFIXES))


def cache_reads(boto_session) -> None:
    """Make every client later created from ``boto_session`` answer repeated reads from memory.

    A read (Describe/List/Get/Head, not streamed, not CloudWatch Logs) with the same
    parameters is answered with what it returned before, for as long as moto has counted no
    change since that call was sent. Errors are not kept. The cache sits in front of botocore's
    serialising and signing, which cost more than the answer once it is known. Answers are
    shared between callers (copying them cost a tenth of the gateway's time): read them only.
    """
    store: dict = {}
    lock = threading.Lock()

    class CachedReads:
        def _make_api_call(self, operation_name, api_params):
            key = _read_key(self, operation_name, api_params)
            if key is None:
                return super()._make_api_call(operation_name, api_params)
            seen = changes.value
            with lock:
                kept = store.get(key)
            if kept is not None and kept[0] == seen:
                return kept[1]
            answer = super()._make_api_call(operation_name, api_params)
            with lock:
                if len(store) > 1024:
                    store.clear()
                store[key] = (seen, answer)
            return answer

        def get_paginator(self, operation_name):
            # botocore re-reads its paginator models from disk on every call; a paginator is reusable.
            made = self.__dict__.setdefault("_l2c_paginators", {})
            if operation_name not in made:
                made[operation_name] = super().get_paginator(operation_name)
            return made[operation_name]

    def add_cache(base_classes, **_):
        base_classes.insert(0, CachedReads)

    boto_session.events.register("creating-client-class", add_cache)


def _read_key(client, operation_name: str, api_params: dict) -> tuple | None:
    service = client.meta.service_model.service_name
    if not operation_name.startswith(_READ_PREFIXES) or service == "logs":
        return None
    if client.meta.service_model.operation_model(operation_name).has_streaming_output:
        return None
    params = json.dumps(api_params, sort_keys=True, default=repr)
    return client.meta.endpoint_url, client.meta.region_name, service, operation_name, params


def ensure_port_free(host: str, port: int, what: str) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the servers themselves do: connections of a previous run lingering in TIME_WAIT do not
    # make the port busy, a listening socket does.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError:
        raise CloudError(
            f"port {port} on {host} is in use, so {what} cannot listen there "
            "(another `l2c up`?); stop it or choose other ports (see `l2c up --help`)"
        ) from None
    finally:
        probe.close()


def _fix_condition_evaluation() -> None:
    from moto.s3.models import FakeBucket

    if getattr(FakeBucket, "_l2c_fixed", False):
        return
    def get_permission(bucket, action, resource):
        from moto.iam.access_control import IAMPolicy, PermissionResult

        if bucket.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(bucket.policy)
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        applicable = [statement for statement in statements if not _needs_request_keys(statement)]
        return IAMPolicy(json.dumps({**policy, "Statement": applicable})).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission
    FakeBucket._l2c_fixed = True


_PLAN_NUMBERS = {"/throttle/rateLimit": float, "/throttle/burstLimit": int, "/quota/limit": int, "/quota/offset": int}


def _fix_usage_plan_numbers() -> None:
    from moto.apigateway.models import UsagePlan

    if getattr(UsagePlan, "_l2c_fixed", False):
        return
    original = UsagePlan.apply_patch_operations

    def apply_patch_operations(plan, patch_operations):
        others = []
        for operation in patch_operations:
            number = _PLAN_NUMBERS.get(operation["path"])
            if number is None or operation["op"] not in ("add", "replace"):
                others.append(operation)
                continue
            section, key = operation["path"].strip("/").split("/")
            values = getattr(plan, section) or {}
            values[key] = number(float(operation["value"]))
            setattr(plan, section, values)
        original(plan, others)

    UsagePlan.apply_patch_operations = apply_patch_operations
    UsagePlan._l2c_fixed = True


def _needs_request_keys(statement: dict) -> bool:
    operators = (statement.get("Condition") or {}).keys()
    return any(not (op.endswith("IfExists") or op == "Null") for op in operators)


def deployed_code(function_arn: str) -> bytes:
    """The zip a Lambda function was deployed with, read from moto's store."""
    from moto.awslambda.models import lambda_backends

    parts = function_arn.split(":")
    region, account = parts[3], parts[4]
    function = lambda_backends[account][region].get_function(function_arn)
    code = getattr(function, "code_bytes", b"")
    if not code:
        raise CloudError(f"{function_arn} has no zip package (only zip functions run locally)")
    return code


def write_logs(function_arn: str, group: str, stream: str, events: list[dict], keep: int | None = None) -> None:
    """Put a Lambda invocation's log events straight into moto's CloudWatch Logs store.

    What PutLogEvents would do, creating the group and stream on first use as Lambda does,
    without its HTTP round trip through this process (~6 ms per invocation). ``keep``: how many
    of the stream's newest events stay (as a retention period drops old ones on AWS), so a
    long-running cloud's memory does not grow with every request.
    """
    from moto.logs.models import LogEvent, logs_backends

    parts = function_arn.split(":")
    backend = logs_backends[parts[4]][parts[3]]
    if group not in backend.groups:
        backend.create_log_group(group, tags={})
    if stream not in backend.groups[group].streams:
        backend.create_log_stream(group, stream)
    backend.put_log_events(group, stream, events)
    kept = backend.groups[group].streams[stream]
    if keep is not None and len(kept.events) > keep:
        del kept.events[: len(kept.events) - keep]
    # moto also lists every model object it ever made, for its dashboard (BaseModel.__new__):
    # those would keep every event alive, dropped from its stream or not.
    if keep is not None and len(LogEvent.instances_tracked) > keep:
        LogEvent.instances_tracked.clear()
