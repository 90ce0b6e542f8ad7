"""AWS rules for sagemaker (see :mod:`l2c.local.rules`)."""

from __future__ import annotations

from l2c.local.rules import RULES  # noqa: F401
