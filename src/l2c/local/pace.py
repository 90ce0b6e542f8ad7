"""One knob for every delay the local cloud imitates: how long AWS takes, times a factor.

AWS takes minutes to create an endpoint and seconds to make a new role or API key usable;
the local cloud takes the same steps, in the same order, scaled by the pace: at the default
of 0.01 an endpoint is ``Creating`` for about three seconds (AWS's five minutes), at 0 every
transition is immediate but still happens. ``l2c up --pace`` and ``L2C_PACE`` set it; the test
suite runs with a small pace and raises it where a test must watch a transition.

Clients scale their polling by the same factor (:func:`poll_seconds`), so a waiter that polls
AWS every 15 s polls the local cloud every 0.15 s at the default pace.
"""

from __future__ import annotations

import os
import threading

from l2c.cloud.session import CloudError
from l2c.config import PACE_ENV

DEFAULT_PACE = 0.01
# Below this a poll is a busy loop; above it a test waits for nothing.
MIN_POLL_SECONDS = 0.05


class Pace:
    def __init__(self, factor: float):
        self._factor = check_factor(factor)
        self._lock = threading.Lock()

    @property
    def factor(self) -> float:
        return self._factor

    def set(self, factor: float) -> None:
        with self._lock:
            self._factor = check_factor(factor)

    def seconds(self, aws_seconds: float) -> float:
        """How long the local cloud takes for what AWS takes ``aws_seconds`` for."""
        return aws_seconds * self._factor


def check_factor(factor) -> float:
    try:
        value = float(factor)
    except (TypeError, ValueError):
        raise CloudError(f"the pace must be a number (0 for no delays, 1 for AWS's own), not {factor!r}") from None
    if not 0 <= value <= 1:
        raise CloudError(f"the pace must be between 0 and 1 (a fraction of AWS's durations), not {value:g}")
    return value


def from_environment(default: float = DEFAULT_PACE) -> float:
    return check_factor(os.environ.get(PACE_ENV) or default)


PACE = Pace(from_environment())
