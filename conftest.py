"""What every test layer and notebook shares: the suite never reaches real AWS (pin_offline),
the session's local cloud (tests/local_cloud.py) and Hypothesis's profiles.

Hypothesis runs the "dev" profile unless HYPOTHESIS_PROFILE names another: few examples, for a
quick local run; CI (.ci/run) sets HYPOTHESIS_PROFILE=ci, the thorough one.
"""

from __future__ import annotations

import os

from tests.offline_aws import pin_offline
from tests.profiles import load_profile

pytest_plugins = ["tests.local_cloud"]


def pytest_configure(config) -> None:
    pin_offline()
    load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
