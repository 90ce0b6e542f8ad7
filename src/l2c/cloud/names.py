"""What a stack may be called, and the model version its resources are named after."""

from __future__ import annotations

import re

from l2c.cloud.session import CloudError

STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


def check_stack_name(name: str) -> str:
    if not STACK_NAME.match(name):
        raise CloudError(
            f"{name!r} cannot name a stack: use 2-32 lower-case letters, digits and hyphens, "
            "starting with a letter (it becomes part of AWS resource names)"
        )
    return name


def model_version(card: dict) -> str:
    """The first 12 hex digits of the booster's SHA-256: a new model is a new version."""
    return card["booster_sha256"][:12]
