"""What the Lambda host reads and writes straight in moto's stores: a function's code, its log events."""

from __future__ import annotations

from l2c.cloud.session import CloudError


def deployed_code(function_arn: str) -> bytes:
    """The zip a Lambda function was deployed with, read from moto's store.

    moto keeps it but does not serve it (its ``Code.Location`` is a made-up S3 URL), which is why
    the Lambda host runs in moto's process."""
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
