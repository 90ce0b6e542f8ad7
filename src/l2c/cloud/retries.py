"""Retrying what AWS refuses only for a while: one helper for every "not yet" the deploy meets.

IAM is eventually consistent: SageMaker's CreateModel answers ``ValidationException: Could not
assume role ...`` and Lambda's CreateFunction ``InvalidParameterValueException: The role
defined for the function cannot be assumed by Lambda.`` for a role created seconds ago (AWS IAM
User Guide, troubleshooting; 10-60 s reported in hashicorp/terraform-provider-aws#6566).
"""

from __future__ import annotations

import time
from typing import Callable

from botocore.exceptions import ClientError

# About 90 s in all on AWS: 1, 2, 4, 8, 15, 15, ... seconds apart.
ROLE_PROPAGATION_BUDGET_S = 90.0
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 15.0
_ROLE_NOT_READY = ("could not assume role", "cannot be assumed")


def role_not_ready(err: ClientError) -> bool:
    message = err.response.get("Error", {}).get("Message", "").lower()
    return any(text in message for text in _ROLE_NOT_READY)


def retry(call: Callable, retryable: Callable[[ClientError], bool], budget_s: float,
          first_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S, sleep=time.sleep):
    """``call()`` until it succeeds, fails for another reason, or ``budget_s`` is spent (then re-raise)."""
    deadline = time.monotonic() + budget_s
    delay = first_delay_s
    while True:
        try:
            return call()
        except ClientError as err:
            if not retryable(err) or time.monotonic() + delay > deadline:
                raise
        sleep(delay)
        delay = min(delay * 2, max_delay_s)


def retry_while_role_propagates(call: Callable, session=None):
    """``call()``, retried with back-off while IAM has not yet propagated a new role.

    ``session`` (a CloudSession) scales the waiting to the local cloud's pace."""
    scale = session.poll_seconds if session is not None else (lambda seconds: seconds)
    return retry(call, role_not_ready, scale(ROLE_PROPAGATION_BUDGET_S), scale(FIRST_DELAY_S), scale(MAX_DELAY_S))
