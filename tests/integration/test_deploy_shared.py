"""What stacks share, on the local cloud under its AWS rules: the route namespace, the API key,
the usage plan, the artifact bucket, IAM (global, while everything else is regional), and the
`l2c` commands that deploy and destroy them, Ctrl-C included.

The tests run in file order around one stack; the last one destroys everything with the CLI and
lists every service directly to prove nothing is left.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager

import httpx
import pytest
from aws_helpers import everything_l2c_left
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from l2c.cli import app
from l2c.cloud import apigateway, calling, functions, iam, inventory, progress, s3, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.cloud.session import LOCAL, CloudError, CloudSession, connect
from l2c.local.tutorial import TUTORIAL_BODIES

NAME = "iris-v2"
OTHER_REGION = "eu-west-1"


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    yield stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=Reporter())
    teardown.destroy(everything=True, session=cloud_session, reporter=Reporter())


def at_pace(session: CloudSession, pace: float) -> CloudSession:
    """The same session, waiting as a cloud running at ``pace`` makes it wait."""
    return dataclasses.replace(session, pace=pace, _clients={})


# --------------------------------------------------------------------------- routes


def test_a_stack_that_would_share_a_route_is_refused_before_anything_is_created(
    deployed, cloud_session, trained_models
):
    with pytest.raises(CloudError, match=r"irisv2 would route to /irisv2prediction, which stack iris-v2 already uses"):
        stack.deploy("irisv2", trained_models["iris"], session=cloud_session, reporter=Reporter())
    assert inventory.status(cloud_session).of("irisv2") == []
    assert calling.call_api(NAME, TUTORIAL_BODIES["iris"], session=cloud_session)[0] == 200


# --------------------------------------------------------------------------- a new key takes seconds


def test_call_api_waits_until_a_new_key_works(deployed, cloud_session, paced):
    paced(0.2)  # a new key is refused for 5 s on AWS: 1 s here
    slow = at_pace(cloud_session, 0.2)
    plan = apigateway.find_usage_plan(slow)
    cloud_session.client("apigateway").delete_api_key(apiKey=apigateway.find_api_key(slow)["id"])
    _, key = apigateway.ensure_api_key(slow, plan["id"])

    first = httpx.post(deployed.url, json=TUTORIAL_BODIES["iris"], headers={"x-api-key": key}, timeout=30)
    status, answer = calling.call_api(NAME, TUTORIAL_BODIES["iris"], session=slow)

    assert first.status_code == 403, "the key must not work at once, or this test proves nothing"
    assert (status, answer["prediction"]) == (200, "setosa")


# --------------------------------------------------------------------------- a function still updating


def test_a_function_still_updating_is_waited_for_before_it_is_changed(deployed, cloud_session, paced):
    paced(0.1)  # an update is InProgress for 5 s on AWS: 0.5 s here
    slow = at_pace(cloud_session, 0.1)
    current = functions.get_configuration(slow, deployed.function)
    environment = current["Environment"]["Variables"]
    spec = functions.FunctionSpec(
        name=deployed.function,
        role_arn=current["Role"],
        code=functions.build_zip(functions.lambda_source_dir()),
        environment={**environment, "MAX_ROWS": "10"},
    )
    slow.client("lambda").update_function_configuration(FunctionName=deployed.function, Description="busy")
    assert functions.get_configuration(slow, deployed.function)["LastUpdateStatus"] == "InProgress"

    assert functions.ensure_function(slow, spec, {"l2c:stack": NAME})[1] == "updated"

    assert functions.get_configuration(slow, deployed.function)["Environment"]["Variables"]["MAX_ROWS"] == "10"
    restored = dataclasses.replace(spec, environment=environment)
    assert functions.ensure_function(slow, restored, {"l2c:stack": NAME})[1] == "updated"


# --------------------------------------------------------------------------- usage plan


def test_the_usage_plan_cannot_be_deleted_while_a_stage_is_attached(deployed, cloud_session):
    plan = apigateway.find_usage_plan(cloud_session)
    with pytest.raises(ClientError, match="because there are API Stages associated with it"):
        cloud_session.client("apigateway").delete_usage_plan(usagePlanId=plan["id"])
    assert apigateway.find_usage_plan(cloud_session)["apiStages"] == [{"apiId": deployed.api_id, "stage": "test"}]


# --------------------------------------------------------------------------- IAM is global


def _roles(session: CloudSession) -> dict[str, dict]:
    client = session.client("iam")
    return {
        role["RoleName"]: client.get_role_policy(RoleName=role["RoleName"], PolicyName=policy)["PolicyDocument"]
        for role in client.list_roles(PathPrefix=iam.ROLE_PATH)["Roles"]
        for policy in client.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    }


def test_the_same_stack_in_another_region_has_roles_of_its_own(deployed, cloud_session, trained_models):
    before = _roles(cloud_session)
    elsewhere = connect(LOCAL, region=OTHER_REGION)
    other = stack.prepare(NAME, trained_models["iris"], session=elsewhere, reporter=Reporter())
    stack.create_roles(other)

    after = _roles(cloud_session)
    assert {name: after[name] for name in before} == before, "the first region's policies were rewritten"
    added = sorted(set(after) - set(before))
    assert added == [f"l2c-{NAME}-{OTHER_REGION}-lambda", f"l2c-{NAME}-{OTHER_REGION}-sagemaker"]
    assert all(OTHER_REGION in json.dumps(after[name]) and "us-east-1" not in json.dumps(after[name]) for name in added)
    here = {r.name for r in inventory.status(cloud_session).resources if r.kind == "role"}
    there = {r.name for r in inventory.status(elsewhere).resources if r.kind == "role"}
    assert here == set(before) and there == set(added)

    teardown.destroy(NAME, session=elsewhere, reporter=Reporter())

    assert _roles(cloud_session) == before
    assert calling.call_api(NAME, TUTORIAL_BODIES["iris"], session=cloud_session)[0] == 200


# --------------------------------------------------------------------------- the commands


@contextmanager
def ctrl_c_while_creating(self, message: str):
    if "creating" in message:
        raise KeyboardInterrupt
    yield


def test_ctrl_c_during_the_endpoint_wait_says_what_bills_and_how_to_destroy(
    deployed, cloud_session, trained_models, monkeypatch
):
    monkeypatch.setattr(progress.ConsoleReporter, "waiting", ctrl_c_while_creating)
    result = CliRunner().invoke(app, ["deploy", "iris-ctrl-c", "--model-dir", str(trained_models["iris"])])
    monkeypatch.undo()

    assert result.exit_code == 130, result.output
    message = " ".join(result.output.split())
    assert "interrupted while deploying iris-ctrl-c" in message
    assert "endpoint l2c-iris-ctrl-c would bill by the hour on AWS" in message
    assert "`l2c destroy iris-ctrl-c`" in message
    assert ("sagemaker", "endpoint") in {(r.service, r.kind) for r in inventory.status(cloud_session).of("iris-ctrl-c")}

    destroyed = CliRunner().invoke(app, ["destroy", "iris-ctrl-c"])
    assert destroyed.exit_code == 0, destroyed.output
    assert inventory.status(cloud_session).of("iris-ctrl-c") == []


def test_cli_deploy_then_destroy_leaves_nothing_even_in_a_versioned_bucket(deployed, cloud_session, trained_models):
    bucket = s3.bucket_name(cloud_session)
    client = cloud_session.client("s3")
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    deployed_cli = CliRunner().invoke(app, ["deploy", "iris-cli", "--model-dir", str(trained_models["iris"])])
    assert deployed_cli.exit_code == 0, deployed_cli.output
    key = next(k for k in s3.list_keys(cloud_session, bucket, "iris-cli/"))
    client.put_object(Bucket=bucket, Key=key, Body=client.get_object(Bucket=bucket, Key=key)["Body"].read())
    versions = client.list_object_versions(Bucket=bucket, Prefix="iris-cli/")["Versions"]
    assert len(versions) == 2

    destroyed = CliRunner().invoke(app, ["destroy", "--all"])

    assert destroyed.exit_code == 0, destroyed.output
    assert everything_l2c_left(cloud_session) == []
    with pytest.raises(ClientError, match="NoSuchBucket"):
        client.list_object_versions(Bucket=bucket)
