"""Hypothesis profiles: "dev" (the default, quick) and "ci" (thorough; .ci/run selects it with
HYPOTHESIS_PROFILE=ci). The root conftest loads one before any test module is imported.

A property test that needs more examples than others says how many relative to Hypothesis's own
default of 100, through ``examples(n)``: n under a profile of 100 examples, scaled by the
profile loaded (dev runs a fifth of them, ci twice as many), so the profile changes every test.
"""

from __future__ import annotations

from hypothesis import settings

HYPOTHESIS_DEFAULT = 100
settings.register_profile("dev", max_examples=20)
# print_blob: a failure in CI prints the @reproduce_failure line that replays it locally.
settings.register_profile("ci", max_examples=200, print_blob=True)


def load_profile(name: str) -> None:
    settings.load_profile(name)


def examples(count: int) -> int:
    """``count`` examples scaled by the loaded profile (``count`` at Hypothesis's default)."""
    return max(1, count * settings().max_examples // HYPOTHESIS_DEFAULT)
