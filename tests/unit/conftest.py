"""Shared fixtures of the unit tests."""

import importlib.util

import pytest

from l2c.config import LAMBDA_DIR


@pytest.fixture(scope="session")
def lambda_module():
    """src/l2c/lambda/lambda_function.py imported from its file, the way the Lambda runtime loads it."""
    spec = importlib.util.spec_from_file_location("lambda_function", LAMBDA_DIR / "lambda_function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
