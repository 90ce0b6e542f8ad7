"""The embedded AWS control plane: moto in server mode, in this process, behind the edge, with three fixes.

boto3 reaches it through ``AWS_ENDPOINT_URL`` and speaks each service's real wire protocol, so
every call's parameters are validated by botocore exactly as against AWS. It runs in the same
process as the execute-api gateway because the gateway needs the code of a deployed Lambda
function, which moto keeps but does not serve (:mod:`l2c.local.moto_stores`).

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

Every request that may change moto's state is counted (:mod:`l2c.local.change_count`), so the
servers' repeated reads can be answered from memory until it moves (:mod:`l2c.local.read_cache`).
"""

from __future__ import annotations

import json
import logging

from l2c.local.change_count import CountChanges
from l2c.local.ports import ensure_port_free


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
    server.edge = Edge(CountChanges(server._server.app), load_all())
    server._server.app = server.edge
    return server


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
