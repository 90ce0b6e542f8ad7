"""The integration tests run against the session's local cloud (tests/local_cloud.py): every
module here has its variables in os.environ, its module fixtures included, except a module
marked ``own_cloud`` (``pytestmark = pytest.mark.own_cloud``), which starts a cloud of its own
in this process, or moto, and must not see the session's."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _session_cloud(local_cloud_env):
    """Every module of this folder (see the docstring above for the exception)."""
