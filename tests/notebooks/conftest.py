"""The notebook tests run notebooks/ with other parameters in the session's local cloud
(tests/local_cloud.py): every module here has its variables in os.environ, as nbval's own runs
of notebooks/ do."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _session_cloud(local_cloud_env):
    """Every module of this folder."""
