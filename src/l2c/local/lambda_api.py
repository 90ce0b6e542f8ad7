"""Lambda's Invoke data plane through the edge: what ``lambda.invoke`` and ``aws lambda invoke`` reach.

``POST /2015-03-31/functions/{FunctionName}/invocations`` (signed for ``lambda``) runs the
deployed code in the same warm workers the execute-api gateway uses (:mod:`l2c.local.lambdas`),
and answers as the Lambda API reference's Invoke page says:

- ``RequestResponse`` (the default): 200 with the handler's result; a handler that raises, times
  out or kills its runtime is still a 200, with ``X-Amz-Function-Error: Unhandled`` and Lambda's
  error object (``errorMessage``, ``errorType``, ``stackTrace``);
- ``Event``: 202 at once, the invocation runs in the background; ``DryRun``: 204, nothing runs;
- ``LogType: Tail``: ``X-Amz-Log-Result`` holds the last 4 KB of the invocation's log, base64;
- an unknown function is ``ResourceNotFoundException`` 404, a payload over 6 MB
  ``RequestEntityTooLargeException`` 413, a function still Pending ``ResourceConflictException``
  409, a body that is not JSON ``InvalidRequestContentException`` 400;
- a function already running as many executions as its concurrency allows (its reservation, or
  the local account's unreserved pool: :mod:`l2c.local.lambdas`) is ``TooManyRequestsException``
  429 "Rate Exceeded." with its ``Reason``, at once. An ``Event`` invocation is not refused: Lambda
  keeps throttled events and retries them, so here it waits for an execution to end (up to
  :data:`EVENT_THROTTLE_WAIT_S`), then is dropped with a log line.

``FunctionName`` may be a name, an ARN or a partial ARN (``123456789012:function:name``).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

from l2c.local.edge import EdgeRequest, account_of
from l2c.local.lambdas import InvocationCrashed, InvocationThrottled, InvocationTimeout, LambdaHost
from l2c.local.rules import AwsError, Reply
from l2c.local.rules import awslambda as lambda_rules

# Sources: Lambda API reference, Invoke (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html:
# status codes, X-Amz-Function-Error, X-Amz-Log-Result, X-Amz-Executed-Version, the errors); botocore's
# lambda service model (Invoke's headers and error shapes); Lambda quotas (6 MB / 1 MB payloads).
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
# Invoke's payload quotas (Lambda quotas page): 6 MB synchronous, 1 MB asynchronous.
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT = 1024 * 1024
LOG_TAIL_BYTES = 4096
EXECUTED_VERSION = "$LATEST"
# Lambda retries a throttled asynchronous event for up to 6 hours (MaximumEventAgeInSeconds);
# locally a waiting event holds one of the few background threads, so it waits less.
EVENT_THROTTLE_WAIT_S = 60.0
log = logging.getLogger("l2c.local.lambda_api")


def is_invoke_call(request: EdgeRequest) -> bool:
    return (
        request.method == "POST" and request.signing_service == "lambda" and INVOKE_PATH.match(request.path) is not None
    )


class LambdaInvoke:
    """The Invoke operation, answered by running the function."""

    def __init__(self, host: LambdaHost):
        self.host = host
        self._background = ThreadPoolExecutor(4, thread_name_prefix="l2c-lambda-event")

    def __call__(self, request: EdgeRequest) -> Reply:
        region = request.region or "us-east-1"
        account = account_of(request.access_key or "")
        function_name = unquote(INVOKE_PATH.match(request.path)["name"])
        function = lambda_rules.find_function(account, region, function_name)
        if function is None:
            raise lambda_rules.not_found(account, region, function_name)
        invocation_type = request.header("x-amz-invocation-type") or "RequestResponse"
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise AwsError(
                "InvalidParameterValueException", f"Unsupported invocation type {invocation_type}", 400, Type="User"
            )
        _check_size(request.body, invocation_type)
        config = lambda_rules.with_lifecycle(function.get_configuration())
        refusal = lambda_rules.conflict_while_busy(config["FunctionArn"])
        if refusal is not None and config.get("State") == "Pending":
            raise refusal  # during an update AWS runs the previous version; only Pending refuses
        event = _event(request.body)
        if invocation_type == "DryRun":
            return Reply(204, _headers(), b"")
        if invocation_type == "Event":
            self._background.submit(self._run_in_background, config, event)
            return Reply(202, _headers(), b"")
        return self._run(config, event, tail=request.header("x-amz-log-type") == "Tail")

    def _run(self, config: dict, event, tail: bool) -> Reply:
        try:
            outcome = run(self.host, config, event)
        except InvocationThrottled as throttled:
            raise throttled_error(throttled) from None
        headers = _headers()
        if outcome.error:
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        if tail:
            headers.append(("X-Amz-Log-Result", log_tail(outcome.log_lines)))
        return Reply(200, headers, json.dumps(outcome.payload).encode())

    def _run_in_background(self, config: dict, event) -> None:
        try:
            run(self.host, config, event, wait_s=EVENT_THROTTLE_WAIT_S)
        except InvocationThrottled:
            log.warning(
                "asynchronous invocation of %s dropped: still throttled after %.0f s",
                config["FunctionName"],
                EVENT_THROTTLE_WAIT_S,
            )
        except Exception:  # nobody waits for an Event invocation; its failure goes to the log
            log.exception("asynchronous invocation of %s failed", config["FunctionName"])

    def stop(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)


class Outcome:
    def __init__(self, payload, error: bool, log_lines: list[str]):
        self.payload, self.error, self.log_lines = payload, error, log_lines


def throttled_error(throttled: InvocationThrottled) -> AwsError:
    """Invoke's answer past the function's concurrency (botocore's lambda model: Reason, Type)."""
    return AwsError("TooManyRequestsException", "Rate Exceeded.", 429, Reason=throttled.reason, Type="User")


def run(host: LambdaHost, config: dict, event, wait_s: float = 0.0) -> Outcome:
    """One invocation, with Lambda's error objects for what went wrong in the function
    (InvocationThrottled, which is Lambda's refusal rather than the function's, is raised)."""
    timeout = float(config.get("Timeout", 3))
    try:
        invocation = host.invoke(config, event, timeout, wait_s)
    except InvocationTimeout as timed_out:
        message = f"{_timestamp()} {timed_out.request_id} Task timed out after {timeout:.2f} seconds"
        return Outcome({"errorMessage": message}, True, timed_out.log_lines)
    except InvocationCrashed as crash:
        # Lambda's words for a runtime that died: "exit status N", or "signal: killed" for a signal.
        if crash.exit_code is None:
            reason = str(crash)
        elif crash.exit_code < 0:
            reason = f"signal: {signal.Signals(-crash.exit_code).name.removeprefix('SIG').lower()}"
        else:
            reason = f"exit status {crash.exit_code}"
        payload = {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {crash.request_id or uuid.uuid4()} Error: Runtime exited with error: {reason}",
        }
        return Outcome(payload, True, crash.log_lines)
    if invocation.ok:
        return Outcome(invocation.payload, False, invocation.log_lines)
    payload = dict(invocation.payload)
    payload.setdefault("requestId", invocation.request_id)
    return Outcome(payload, True, invocation.log_lines)


def log_tail(lines: list[str]) -> str:
    """The last 4 KB of an invocation's log, base64, as ``X-Amz-Log-Result`` carries it."""
    text = "".join(line + "\n" for line in lines).encode()
    return base64.b64encode(text[-LOG_TAIL_BYTES:]).decode()


def _check_size(body: bytes, invocation_type: str) -> None:
    limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
    if len(body) > limit:
        raise AwsError(
            "RequestEntityTooLargeException",
            f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
            413,
            Type="User",
        )


def _event(body: bytes):
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as err:
        raise AwsError(
            "InvalidRequestContentException", f"Could not parse request body into json: {err}", 400, Type="User"
        ) from None


def _headers() -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("X-Amz-Executed-Version", EXECUTED_VERSION)]


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
