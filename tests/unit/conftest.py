"""Shared fixtures of the unit tests."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lambda_module():
    """lambda/lambda_function.py imported from its file, the way the Lambda runtime loads it."""
    spec = importlib.util.spec_from_file_location("lambda_function", REPO / "lambda" / "lambda_function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
