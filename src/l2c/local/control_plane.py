"""The embedded AWS control plane: moto in server mode, in this process, with two fixes.

boto3 reaches it through ``AWS_ENDPOINT_URL`` and speaks each service's real wire protocol, so
every call's parameters are validated by botocore exactly as against AWS. It runs in the same
process as the execute-api gateway because the gateway needs the code of a deployed Lambda
function, which moto keeps but does not serve (its ``Code.Location`` is a made-up S3 URL).

The fixes, both confined to this process:
- moto's S3 evaluates a bucket policy without any request context: a statement's ``Condition``
  is either taken as met or its failure taken as a denial, so the bucket's standard
  deny-unless-TLS statement denies every request. IAM's rule is that a condition on a key the
  request does not carry is not met (bar the ``...IfExists`` and ``Null`` operators); since
  moto's S3 supplies no keys, such statements are left out of its evaluation here, which is
  what AWS does with that statement for any request over TLS.
- werkzeug's request log is silenced; the gateway and the runtime log what matters.
"""

from __future__ import annotations

import json
import logging
import socket

from l2c.cloud.session import CloudError


def start(port: int, host: str = "127.0.0.1"):
    """Start moto on host:port in a background thread; returns the server (call ``.stop()``)."""
    ensure_port_free(host, port, "the control plane (moto)")
    from moto.server import ThreadedMotoServer

    _fix_condition_evaluation()
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server


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
