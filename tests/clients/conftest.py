"""The client tests drive tools from outside (the AWS CLI, newman, sagemaker-core, a fresh boto3
process) against the session's local cloud (tests/local_cloud.py): every module here has its
variables in os.environ, its module fixtures included."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _session_cloud(local_cloud_env):
    """Every module of this folder."""
