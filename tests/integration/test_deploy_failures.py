"""What the deploy engine does when SageMaker says no: answers only AWS gives, recorded with
botocore's Stubber (which validates every parameter against the service model, as the wire does)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from l2c.cloud import plan, sagemaker
from l2c.cloud.progress import Reporter
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import CloudSession, caller_role_arn

ENDPOINT, OLD, NEW = "l2c-iris", "l2c-iris-aaaaaaaaaaaa-111111", "l2c-iris-bbbbbbbbbbbb-111111"
ARN = f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{ENDPOINT}"


@pytest.fixture
def session():
    boto = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
    return CloudSession(boto=boto, region="eu-west-1", account="123456789012", partition="aws", target="aws")


def described(status: str, config: str = OLD, **extra) -> dict:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": ARN,
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": "2026-11-25T00:00:00Z",
        "LastModifiedTime": "2026-11-25T00:00:00Z",
        **extra,
    }


def test_a_failed_endpoint_reports_sagemakers_reason_and_where_the_logs_are(session, monkeypatch):
    monkeypatch.setattr(sagemaker, "IN_SERVICE_POLL_S", 0)
    client = session.client("sagemaker")
    with Stubber(client) as stub:
        stub.add_client_error("describe_endpoint", "ValidationException", f"Could not find endpoint {ARN}")
        stub.add_response(
            "create_endpoint",
            {"EndpointArn": ARN},
            {
                "EndpointName": ENDPOINT,
                "EndpointConfigName": NEW,
                "Tags": [{"Key": "l2c:stack", "Value": "iris"}],
            },
        )
        reason = "The primary container for production variant AllTraffic did not pass the ping health check."
        failed = described("Failed", NEW, FailureReason=reason)
        stub.add_response("describe_endpoint", failed, {"EndpointName": ENDPOINT})  # the poll, which the report quotes
        with pytest.raises(sagemaker.EndpointFailed) as failure:
            sagemaker.ensure_endpoint(session, ENDPOINT, NEW, {"l2c:stack": "iris"}, Reporter())
        stub.assert_no_pending_responses()
    message = str(failure.value)
    assert reason in message
    assert "/aws/sagemaker/Endpoints/l2c-iris" in message and "region=eu-west-1" in message
    assert "l2c destroy" in message


def _no_scalable_target(stub) -> None:
    stub.add_response(
        "describe_scalable_targets",
        {"ScalableTargets": []},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceIds": [f"endpoint/{ENDPOINT}/variant/AllTraffic"],
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        },
    )


def test_a_new_version_uses_update_endpoint(session, monkeypatch):
    monkeypatch.setattr(sagemaker, "IN_SERVICE_POLL_S", 0)
    client, scaling = session.client("sagemaker"), session.client("application-autoscaling")
    with Stubber(client) as stub, Stubber(scaling) as stub_scaling:
        stub.add_response("describe_endpoint", described("InService"), {"EndpointName": ENDPOINT})
        stub.add_response("list_tags", {"Tags": [{"Key": "l2c:stack", "Value": "iris"}]}, {"ResourceArn": ARN})
        _no_scalable_target(stub_scaling)
        stub.add_response(
            "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": NEW}
        )
        stub.add_response("describe_endpoint", described("InService", NEW), {"EndpointName": ENDPOINT})
        change = sagemaker.ensure_endpoint(session, ENDPOINT, NEW, {"l2c:stack": "iris"}, Reporter())
        stub.assert_no_pending_responses()
        stub_scaling.assert_no_pending_responses()
    assert change == "updated"


def test_a_refused_update_is_reported_not_worked_around_by_deleting_the_endpoint(session):
    client, scaling = session.client("sagemaker"), session.client("application-autoscaling")
    with Stubber(client) as stub, Stubber(scaling) as stub_scaling:
        _no_scalable_target(stub_scaling)
        stub.add_client_error("update_endpoint", "ValidationException", "Cannot update in-progress endpoint", 400)
        with pytest.raises(ClientError, match="in-progress"):
            sagemaker.update_endpoint(session, ENDPOINT, described("InService"), NEW, Reporter())
        stub.assert_no_pending_responses()  # and nothing else: no DeleteEndpoint, no CreateEndpoint


def test_the_notebooks_own_role_is_found_with_its_path(session):
    sts, iam = session.client("sts"), session.client("iam")
    role_arn = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-1"
    with Stubber(sts) as stub_sts, Stubber(iam) as stub_iam:
        stub_sts.add_response(
            "get_caller_identity",
            {
                "UserId": "AROAEXAMPLE:SageMaker",
                "Account": "123456789012",
                "Arn": "arn:aws:sts::123456789012:assumed-role/AmazonSageMaker-ExecutionRole-1/SageMaker",
            },
        )
        stub_iam.add_response(
            "get_role",
            {
                "Role": {
                    "Path": "/service-role/",
                    "RoleName": "AmazonSageMaker-ExecutionRole-1",
                    "RoleId": "AROAEXAMPLE0000000000",
                    "Arn": role_arn,
                    "CreateDate": "2026-11-25T00:00:00Z",
                }
            },
            {"RoleName": "AmazonSageMaker-ExecutionRole-1"},
        )
        assert caller_role_arn(session) == role_arn


def test_the_aws_plan_names_what_keeps_billing(session):
    instance = plan.plan("iris", session)
    assert any("l2c-iris" in line and "KEEPS BILLING" in line and "1 x ml.m5.large" in line for line in instance)
    serverless = plan.plan("iris", session, plan.DeployOptions(hosting=Hosting(serverless_memory_mb=2048), public=True))
    assert any("serverless, 2048 MB" in line for line in serverless)
    assert any("PUBLIC" in line for line in serverless)
