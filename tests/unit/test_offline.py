"""The test suite cannot reach a real AWS account: not from a test, not from a notebook kernel
or a subprocess, and not when the local cloud fails to start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3

from tests import offline_aws as suite

PROBE = """
import json, os, boto3
from l2c.cloud.session import AUTO, CloudError, connect
credentials = boto3.Session().get_credentials()
try:
    connect(AUTO)
    outcome = "connected"
except CloudError as err:
    outcome = str(err)
print(json.dumps({"key": credentials.access_key, "outcome": outcome,
                  "profile": os.environ.get("AWS_PROFILE"), "config": os.environ.get("AWS_CONFIG_FILE")}))
"""


def test_the_suite_runs_with_fake_credentials_and_no_aws_files():
    credentials = boto3.Session().get_credentials()
    assert credentials.access_key == "testing" and credentials.token is None
    assert os.environ["AWS_CONFIG_FILE"] == os.environ["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert not [name for name in os.environ if suite.REAL_AWS_VARIABLES.match(name)]


def test_a_developers_credentials_are_dropped_from_the_environment():
    laptop = {
        "AWS_PROFILE": "work",
        "AWS_SESSION_TOKEN": "t",
        "AWS_ENDPOINT_URL_S3": "https://s3.example",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.2/x",
        "AWS_ACCESS_KEY_ID": "AKIAREAL",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/token",
        "HOME": "/home/someone",
    }
    suite.pin_offline(laptop)
    assert laptop == {**suite.OFFLINE_AWS, "HOME": "/home/someone"}


def run_probe(extra: dict[str, str]) -> dict:
    env = {**os.environ, **extra}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_kernel_started_by_the_suite_inherits_the_pin_and_cannot_open_an_aws_session():
    # With real credentials this would be a session on the developer's account; here the fake
    # key is refused or AWS is unreachable, and nothing is created.
    probe = run_probe({})
    assert probe["key"] == "testing" and probe["profile"] is None and probe["config"] == os.devnull
    assert probe["outcome"] != "connected"


def test_when_the_local_cloud_failed_a_deployment_notebook_gets_an_endpoint_nothing_listens_on():
    probe = run_probe({"AWS_ENDPOINT_URL": suite.UNREACHABLE_ENDPOINT})
    assert probe["outcome"].startswith("cannot reach the local cloud (http://127.0.0.1:9")


def test_the_pin_is_in_force_before_any_test_runs():
    # pytest_configure pins the process; a test's own changes come later and are its own.
    assert os.environ["AWS_ACCESS_KEY_ID"] == suite.OFFLINE_AWS["AWS_ACCESS_KEY_ID"]
