"""A local cloud started in this process leaves os.environ alone: code here reaches it through
``connect(LOCAL, env=cloud.env)``, whatever the environment points at.

(Not a ``test_local_cloud*`` file: the session's cloud is not started nor put into os.environ here.)
"""

from __future__ import annotations

import os

import pytest

from l2c.cloud import session as cloud_session
from l2c.cloud.session import AUTO, AWS, LOCAL, CloudError, connect
from l2c.local.cloud import LocalCloud, Ports

ELSEWHERE = "http://127.0.0.1:9"  # what the environment points at: nothing listens there
GIVEN = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:45661",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": "http://127.0.0.1:45662",
    "L2C_EXECUTE_API_URL": "http://127.0.0.1:45663",
    "L2C_PACE": "0.002",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def test_connect_local_takes_the_variables_it_is_given_over_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ELSEWHERE)
    monkeypatch.setenv("L2C_EXECUTE_API_URL", ELSEWHERE)
    monkeypatch.setattr(cloud_session, "_account_of", lambda session: "123456789012")
    session = connect(LOCAL, env=GIVEN)
    assert session.endpoints == {
        "*": GIVEN["AWS_ENDPOINT_URL"],
        "sagemaker-runtime": GIVEN["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"],
    }
    assert session.execute_api_url == GIVEN["L2C_EXECUTE_API_URL"]
    assert session.pace == pytest.approx(0.002) and session.region == "eu-west-1"
    assert session.client("s3").meta.endpoint_url == GIVEN["AWS_ENDPOINT_URL"]
    # Without credentials among the variables, the local cloud's fake ones are used.
    assert session.boto.get_credentials().access_key == "testing"


@pytest.mark.parametrize("target", [AUTO, AWS])
def test_a_local_clouds_variables_are_refused_for_any_other_target(target):
    with pytest.raises(CloudError, match="for 'local' only"):
        connect(target, env=GIVEN)


def test_starting_a_local_cloud_leaves_this_processs_environment_as_it_was(monkeypatch, tmp_path):
    monkeypatch.setenv("L2C_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("AWS_ENDPOINT_URL", ELSEWHERE)
    before = dict(os.environ)
    with LocalCloud(Ports.free()) as cloud:
        assert dict(os.environ) == before
        session = connect(LOCAL, env=cloud.env)
        assert session.endpoints["*"] == cloud.control_plane_url
        assert session.client("sts").get_caller_identity()["Account"] == session.account != ""
        assert session.client("s3").list_buckets()["Buckets"] == []
    assert dict(os.environ) == before
