"""Retrying what AWS refuses only for a while: one helper for every "not yet" the deploy meets.

IAM is eventually consistent: SageMaker's CreateModel answers ``ValidationException: Could not
assume role ...`` and Lambda's CreateFunction ``InvalidParameterValueException: The role
defined for the function cannot be assumed by Lambda.`` for a role created seconds ago (AWS IAM
User Guide, troubleshooting; 10-60 s reported in hashicorp/terraform-provider-aws#6566).

API Gateway meters a few control-plane operations per account, far below what botocore's own
retries wait out: over them it answers ``TooManyRequestsException`` (API Gateway developer guide,
"Amazon API Gateway quotas", control-plane rate limits). Those calls are retried here, spaced by
the operation's own quota, on a client without botocore's retries so that one back-off decides.

Every wait is AWS's on AWS and scaled by ``session.poll_seconds`` on the local cloud, whose
delays and quotas run at the same pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")

# About 90 s in all on AWS: 1, 2, 4, 8, 15, 15, ... seconds apart.
ROLE_PROPAGATION_BUDGET_S = 90.0
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 15.0
_ROLE_NOT_READY = ("could not assume role", "cannot be assumed")

# Seconds between two calls the quota allows, per operation (API Gateway quotas page).
API_GATEWAY_QUOTA_S = {
    "CreateRestApi": 3.0,
    "CreateDeployment": 5.0,
    "UpdateUsagePlan": 20.0,
    "DeleteRestApi": 30.0,
}
# Wait out up to this many quota intervals before giving up (other l2c runs may share the quota).
QUOTA_INTERVALS_BUDGET = 5
THROTTLED = {"TooManyRequestsException", "ThrottlingException"}


def role_not_ready(err: ClientError) -> bool:
    message = err.response.get("Error", {}).get("Message", "").lower()
    return any(text in message for text in _ROLE_NOT_READY)


def throttled(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in THROTTLED


def _delays(budget_s: float, first_delay_s: float, max_delay_s: float) -> Iterator[float]:
    """The back-off waits that still fit in ``budget_s`` from now, each asked for after a failed
    try: ``first_delay_s``, doubling up to ``max_delay_s``."""
    deadline = time.monotonic() + budget_s  # now, not at the first next(): the first try counts

    def waits() -> Iterator[float]:
        delay = first_delay_s
        while time.monotonic() + delay <= deadline:
            yield delay
            delay = min(delay * 2, max_delay_s)

    return waits()


def retry(
    call: Callable[[], T],
    retryable: Callable[[ClientError], bool],
    budget_s: float,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """``call()`` until it succeeds, fails for another reason, or ``budget_s`` is spent (then re-raise)."""
    delays = _delays(budget_s, first_delay_s, max_delay_s)
    while True:
        try:
            return call()
        except ClientError as err:
            delay = next(delays, None) if retryable(err) else None
            if delay is None:
                raise
        time.sleep(delay)


def repeat_while(
    call: Callable[[], T],
    again: Callable[[T], bool],
    budget_s: float,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """``call()`` again, with back-off, while ``again(result)`` holds and ``budget_s`` lasts; the last result."""
    delays = _delays(budget_s, first_delay_s, max_delay_s)
    while True:
        result = call()
        delay = next(delays, None) if again(result) else None
        if delay is None:
            return result
        time.sleep(delay)


def _scale(session) -> Callable[[float], float]:
    return session.poll_seconds if session is not None else (lambda seconds: seconds)


def retry_while_role_propagates(call: Callable[[], T], session=None) -> T:
    """``call()``, retried with back-off while IAM has not yet propagated a new role.

    ``session`` (a CloudSession) scales the waiting to the local cloud's pace."""
    scale = _scale(session)
    return retry(call, role_not_ready, scale(ROLE_PROPAGATION_BUDGET_S), scale(FIRST_DELAY_S), scale(MAX_DELAY_S))


def retry_while_throttled(operation: str, call: Callable[[], T], session=None) -> T:
    """``call()`` an API Gateway operation with a control-plane quota, waiting out TooManyRequests.

    The first wait is the quota's interval (a sooner retry is refused again), then twice that."""
    scale, interval = _scale(session), API_GATEWAY_QUOTA_S[operation]
    return retry(call, throttled, scale(interval * QUOTA_INTERVALS_BUDGET), scale(interval), scale(interval * 2))
