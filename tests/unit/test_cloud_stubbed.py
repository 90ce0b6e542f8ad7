"""What the deploy engine does with answers only real AWS gives, replayed with botocore's Stubber
(which checks every request's parameters against the service model, as the wire would).

Waits are AWS's own here (the session has no local pace); a fake clock records them instead of
sleeping, so a test can say "the retry waited out the 20 s quota", not just "it retried".
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from typer.testing import CliRunner

from l2c.cloud import apigateway, functions, iam, retries, s3
from l2c.cloud.session import AWS, CloudError, CloudSession, connect

REGION, ACCOUNT = "eu-west-1", "123456789012"
API_ID, PLAN_ID, KEY_ID = "a1b2c3d4e5", "pl4n1d", "k3y1d0"
SHARED = {"l2c:shared": "true"}


@pytest.fixture
def session() -> CloudSession:
    boto = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return CloudSession(boto=boto, region=REGION, account=ACCOUNT, partition="aws", target="aws")


@pytest.fixture
def clock(monkeypatch):
    """retries' view of time: sleeping advances it and is recorded, nothing really waits."""
    fake = SimpleNamespace(now=1000.0, sleeps=[])

    def sleep(seconds: float) -> None:
        fake.sleeps.append(seconds)
        fake.now += seconds

    monkeypatch.setattr(retries, "time", SimpleNamespace(monotonic=lambda: fake.now, sleep=sleep))
    return fake


def throttled(stub: Stubber, operation: str, times: int = 1) -> None:
    for _ in range(times):
        stub.add_client_error(operation, "TooManyRequestsException", "Too Many Requests", 429)


# --------------------------------------------------------------------------- usage plan and REST API


def test_destroy_detaches_the_stage_before_deleting_the_usage_plan_and_waits_out_the_quotas(session, clock):
    client, metered = session.client("apigateway"), session.client("apigateway", attempts=1)
    plan = {
        "id": PLAN_ID,
        "name": apigateway.PLAN_NAME,
        "apiStages": [{"apiId": API_ID, "stage": "test"}],
        "tags": SHARED,
    }
    with Stubber(client) as stub, Stubber(metered) as stub_metered:
        stub.add_response("get_usage_plans", {"items": [plan]}, {})
        stub.add_response(
            "get_usage_plan_keys", {"items": [{"id": KEY_ID, "type": "API_KEY"}]}, {"usagePlanId": PLAN_ID}
        )
        stub.add_response("delete_usage_plan_key", {}, {"usagePlanId": PLAN_ID, "keyId": KEY_ID})
        throttled(stub_metered, "update_usage_plan")
        stub_metered.add_response(
            "update_usage_plan",
            {"id": PLAN_ID, "apiStages": []},
            {
                "usagePlanId": PLAN_ID,
                "patchOperations": [{"op": "remove", "path": "/apiStages", "value": f"{API_ID}:test"}],
            },
        )
        stub.add_response("delete_usage_plan", {}, {"usagePlanId": PLAN_ID})
        stub.add_response(
            "get_api_keys",
            {"items": [{"id": KEY_ID, "name": apigateway.KEY_NAME, "tags": SHARED}]},
            {"nameQuery": apigateway.KEY_NAME, "includeValues": True},
        )
        stub.add_response("delete_api_key", {}, {"apiKey": KEY_ID})
        stub.add_response("get_rest_apis", {"items": [{"id": API_ID, "name": apigateway.API_NAME, "tags": SHARED}]}, {})
        throttled(stub_metered, "delete_rest_api")
        stub_metered.add_response("delete_rest_api", {}, {"restApiId": API_ID})

        deleted = apigateway.delete_shared(session)

        stub.assert_no_pending_responses()
        stub_metered.assert_no_pending_responses()
    assert deleted == [
        f"usage plan {apigateway.PLAN_NAME}",
        f"API key {apigateway.KEY_NAME}",
        f"REST API l2c ({API_ID})",
    ]
    assert clock.sleeps == [20.0, 30.0]  # UpdateUsagePlan: 1 per 20 s; DeleteRestApi: 1 per 30 s


def test_a_quota_that_stays_exhausted_is_reported_after_a_bounded_wait(session, clock):
    metered = session.client("apigateway", attempts=1)
    with Stubber(metered) as stub:
        throttled(stub, "update_usage_plan", times=6)
        with pytest.raises(ClientError, match="TooManyRequestsException"):
            apigateway._update_usage_plan(
                session, PLAN_ID, [{"op": "remove", "path": "/apiStages", "value": f"{API_ID}:test"}]
            )
    assert clock.sleeps[0] == 20.0 and sum(clock.sleeps) <= 5 * 20.0


def test_a_redeploy_waits_out_the_create_deployment_quota(session, clock):
    client, metered = session.client("apigateway"), session.client("apigateway", attempts=1)
    with Stubber(client) as stub, Stubber(metered) as stub_metered:
        stub.add_response(
            "get_resources", {"items": [{"id": "r00t", "path": "/"}]}, {"restApiId": API_ID, "embed": ["methods"]}
        )
        stub.add_response("get_gateway_responses", {"items": []}, {"restApiId": API_ID})
        stub.add_client_error("get_stage", "NotFoundException", "Invalid stage identifier specified", 404)
        throttled(stub_metered, "create_deployment")
        stub_metered.add_response("create_deployment", {"id": "d3pl0y"}, {"restApiId": API_ID, "description": ANY})
        stub.add_response(
            "create_stage",
            {"stageName": "test"},
            {
                "restApiId": API_ID,
                "stageName": "test",
                "deploymentId": "d3pl0y",
                "tags": SHARED,
            },
        )
        assert apigateway.ensure_stage_deployed(session, API_ID) is True
        stub.assert_no_pending_responses()
    assert clock.sleeps == [5.0]


def test_a_stack_whose_route_another_stack_has_is_refused_before_anything_is_made(session, monkeypatch):
    monkeypatch.setattr(apigateway, "_known_stacks", lambda session: {"iris-v2"})
    monkeypatch.setattr(apigateway, "_route_owner", lambda session, path: None)
    with pytest.raises(CloudError, match=r"irisv2 would route to /irisv2prediction, which stack iris-v2 already uses"):
        apigateway.refuse_route_collision(session, "irisv2")
    apigateway.refuse_route_collision(session, "iris-v2")  # its own route is no collision


def test_the_route_owner_is_read_from_the_routes_integration(session):
    client = session.client("apigateway")
    uri = (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:l2c-iris-v2/invocations"
    )
    item = {
        "id": "r3s",
        "path": "/irisv2prediction",
        "resourceMethods": {"POST": {"methodIntegration": {"type": "AWS_PROXY", "uri": uri}}},
    }
    with Stubber(client) as stub:
        stub.add_response("get_rest_apis", {"items": [{"id": API_ID, "name": apigateway.API_NAME, "tags": SHARED}]}, {})
        stub.add_response(
            "get_resources", {"items": [{"id": "r00t", "path": "/"}, item]}, {"restApiId": API_ID, "embed": ["methods"]}
        )
        assert apigateway._route_owner(session, "irisv2prediction") == "iris-v2"


# --------------------------------------------------------------------------- Lambda


ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/l2c/l2c-iris-{REGION}-lambda"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:l2c-iris"


def spec(code: bytes = b"new code") -> functions.FunctionSpec:
    return functions.FunctionSpec(
        name="l2c-iris", role_arn=ROLE_ARN, code=code, environment={"ENDPOINT_NAME": "l2c-iris"}
    )


def configuration(code_sha256: str, **state) -> dict:
    return {
        "FunctionName": "l2c-iris",
        "FunctionArn": FUNCTION_ARN,
        "Runtime": "python3.13",
        "Role": ROLE_ARN,
        "Handler": functions.HANDLER,
        "Timeout": functions.DEFAULT_TIMEOUT_S,
        "MemorySize": functions.DEFAULT_MEMORY_MB,
        "Environment": {"Variables": {"ENDPOINT_NAME": "l2c-iris"}},
        "CodeSha256": code_sha256,
        **state,
    }


def test_a_new_role_lambda_cannot_assume_yet_is_retried_for_about_90_seconds(session, clock):
    client = session.client("lambda")
    with Stubber(client) as stub:
        stub.add_client_error("get_function_configuration", "ResourceNotFoundException", "Function not found", 404)
        for _ in range(12):
            stub.add_client_error(
                "create_function",
                "InvalidParameterValueException",
                "The role defined for the function cannot be assumed by Lambda.",
                400,
            )
        with pytest.raises(ClientError, match="cannot be assumed"):
            functions.ensure_function(session, spec(), {"l2c:stack": "iris"})
    assert clock.sleeps[:4] == [1.0, 2.0, 4.0, 8.0] and max(clock.sleeps) == 15.0  # backing off
    assert 75.0 <= sum(clock.sleeps) <= 90.0


def test_the_first_update_waits_until_the_function_is_active_and_its_last_update_done(session):
    paced = CloudSession(boto=session.boto, region=REGION, account=ACCOUNT, partition="aws", target="aws", pace=0.001)
    client = paced.client("lambda")
    name = {"FunctionName": "l2c-iris"}
    with Stubber(client) as stub:
        stub.add_response(
            "get_function_configuration", configuration("old", State="Pending", LastUpdateStatus="InProgress"), name
        )
        # function_active_v2, then function_updated_v2 (botocore waiters-2.json): GetFunction until settled
        stub.add_response("get_function", {"Configuration": configuration("old", State="Pending")}, name)
        stub.add_response("get_function", {"Configuration": configuration("old", State="Active")}, name)
        stub.add_response("get_function", {"Configuration": configuration("old", LastUpdateStatus="InProgress")}, name)
        stub.add_response("get_function", {"Configuration": configuration("old", LastUpdateStatus="Successful")}, name)
        stub.add_response("update_function_code", configuration(spec().code_sha256), {**name, "ZipFile": b"new code"})
        stub.add_response(
            "get_function", {"Configuration": configuration(spec().code_sha256, LastUpdateStatus="Successful")}, name
        )
        stub.add_response("list_tags", {"Tags": {"l2c:stack": "iris"}}, {"Resource": FUNCTION_ARN})
        arn, change = functions.ensure_function(paced, spec(), {"l2c:stack": "iris"})
        stub.assert_no_pending_responses()
    assert (arn, change) == (FUNCTION_ARN, "updated")


# --------------------------------------------------------------------------- S3


def test_objects_s3_refused_to_delete_are_reported_not_ignored(session):
    client = session.client("s3")
    with Stubber(client) as stub:
        stub.add_response("get_bucket_versioning", {}, {"Bucket": "l2c-bucket", "ExpectedBucketOwner": ACCOUNT})
        stub.add_response(
            "delete_objects",
            {
                "Errors": [
                    {"Key": "iris/abc/model.tar.gz", "Code": "AccessDenied", "Message": "Access Denied"},
                ]
            },
            {
                "Bucket": "l2c-bucket",
                "Delete": {"Objects": [{"Key": "iris/abc/model.tar.gz"}], "Quiet": True},
                "ExpectedBucketOwner": ACCOUNT,
            },
        )
        with pytest.raises(CloudError, match=r"refused to delete 1 object.*iris/abc/model.tar.gz: AccessDenied"):
            s3.delete_keys(session, "l2c-bucket", ["iris/abc/model.tar.gz"])


def test_a_versioned_bucket_loses_every_version_and_delete_marker_of_the_keys(session):
    client = session.client("s3")
    key = "iris/abc/model.tar.gz"
    with Stubber(client) as stub:
        stub.add_response(
            "get_bucket_versioning", {"Status": "Suspended"}, {"Bucket": "l2c-bucket", "ExpectedBucketOwner": ACCOUNT}
        )
        stub.add_response(
            "list_object_versions",
            {
                "Versions": [
                    {"Key": key, "VersionId": "v2"},
                    {"Key": key, "VersionId": "v1"},
                    {"Key": "iris/other/model.tar.gz", "VersionId": "v9"},
                ],
                "DeleteMarkers": [{"Key": key, "VersionId": "m1"}],
            },
            {"Bucket": "l2c-bucket", "Prefix": "iris/", "ExpectedBucketOwner": ACCOUNT},
        )
        stub.add_response(
            "delete_objects",
            {},
            {
                "Bucket": "l2c-bucket",
                "ExpectedBucketOwner": ACCOUNT,
                "Delete": {
                    "Objects": [
                        {"Key": key, "VersionId": "v2"},
                        {"Key": key, "VersionId": "v1"},
                        {"Key": key, "VersionId": "m1"},
                    ],
                    "Quiet": True,
                },
            },
        )
        s3.delete_keys(session, "l2c-bucket", [key])
        stub.assert_no_pending_responses()


# --------------------------------------------------------------------------- IAM


def test_role_names_carry_the_region_and_fit_iams_64_characters():
    longest_stack = "a" * 32
    for region in ("us-east-1", "ap-southeast-1", "us-gov-west-1", "eusc-de-east-1"):
        for purpose in ("sagemaker", "lambda"):
            name = iam.role_name(longest_stack, purpose, region)
            assert region in name and len(name) <= 64
    assert iam.role_name("iris", "lambda", "eu-west-1") != iam.role_name("iris", "lambda", "us-east-1")
    stretched = iam.role_name(longest_stack, "sagemaker", "xx-somewhere-very-far-1")
    assert len(stretched) <= 64 and stretched != iam.role_name(longest_stack, "sagemaker", "xx-somewhere-very-far-2")


def test_another_regions_role_is_never_modified_or_deleted(session):
    client = session.client("iam")
    role = {
        "Path": "/l2c/",
        "RoleName": "l2c-iris-lambda",
        "RoleId": "AROAEXAMPLE0000000000",
        "Arn": f"arn:aws:iam::{ACCOUNT}:role/l2c/l2c-iris-lambda",
        "CreateDate": "2026-11-25T00:00:00Z",
        "Tags": [{"Key": "l2c:stack", "Value": "iris"}, {"Key": "l2c:region", "Value": "us-east-1"}],
    }
    with Stubber(client) as stub:
        stub.add_response("get_role", {"Role": role}, {"RoleName": "l2c-iris-lambda"})
        stub.add_response("get_role", {"Role": role}, {"RoleName": "l2c-iris-lambda"})
        with pytest.raises(CloudError, match="belongs to l2c's stack in us-east-1"):
            iam.delete_role(session, "l2c-iris-lambda")
        wanted = iam.RoleSpec("l2c-iris-lambda", "d", {"Version": "2012-10-17", "Statement": []}, "p", {})
        with pytest.raises(CloudError, match="belongs to l2c's stack in us-east-1"):
            iam.ensure_role(session, wanted, {"l2c:stack": "iris"})
        stub.assert_no_pending_responses()  # and nothing else was called: no delete, no put


# --------------------------------------------------------------------------- an expired SSO session


@pytest.fixture
def expired_sso_profile(tmp_path, monkeypatch):
    """A profile signed in with `aws sso login` whose cached token has expired, as botocore reads it."""
    import botocore.credentials

    start_url = "https://my-sso-portal.awsapps.com/start"
    (tmp_path / "config").write_text(
        "[profile expired]\n"
        f"sso_start_url = {start_url}\nsso_region = {REGION}\nsso_account_id = {ACCOUNT}\n"
        f"sso_role_name = ReadOnly\nregion = {REGION}\n"
    )
    cache = tmp_path / "sso-cache"
    cache.mkdir()
    token = {"startUrl": start_url, "region": REGION, "accessToken": "expired", "expiresAt": "2020-01-01T00:00:00Z"}
    (cache / f"{hashlib.sha1(start_url.encode()).hexdigest()}.json").write_text(json.dumps(token))
    monkeypatch.setattr(botocore.credentials.SSOProvider, "_SSO_TOKEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return "expired"


def test_an_expired_sso_session_says_aws_sso_login(expired_sso_profile):
    with pytest.raises(CloudError, match=r"SSO session has expired.*`aws sso login --profile expired`"):
        connect(AWS, profile=expired_sso_profile)


def test_the_cli_says_aws_sso_login_not_a_traceback(expired_sso_profile):
    from l2c.cli import app

    result = CliRunner().invoke(app, ["status", "--aws", "--profile", expired_sso_profile])
    assert result.exit_code == 1
    assert "aws sso login --profile expired" in result.output and "Traceback" not in result.output


def test_an_sso_session_expiring_half_way_through_a_deploy_says_aws_sso_login(monkeypatch):
    from botocore.exceptions import TokenRetrievalError

    from l2c import cli
    from l2c.cloud import plan, stack

    monkeypatch.setattr(cli, "_connect", lambda aws, region, profile: SimpleNamespace(account=ACCOUNT, region=REGION))

    def expire(*args, **kwargs):
        raise TokenRetrievalError(provider="sso", error_msg="Token has expired and refresh failed")

    monkeypatch.setattr(plan, "plan", lambda *args, **kwargs: [])
    monkeypatch.setattr(stack, "deploy", expire)
    result = CliRunner().invoke(cli.app, ["deploy", "iris", "--aws", "--yes", "--profile", "work"])
    assert result.exit_code == 1
    assert "aws sso login --profile work" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- notebooks that stop half-way


def test_a_failing_notebook_cell_still_fails_and_ends_with_how_to_clean_up(session, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from l2c.cloud import reminder

    shell = InteractiveShell.instance()
    try:
        assert reminder.remind_to_destroy("iris", session)
        result = shell.run_cell("assert 403 == 200, 'the API refused the call'")
        interrupted = shell.run_cell("raise KeyboardInterrupt")
        shown = capsys.readouterr().out
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()
    assert not result.success and not interrupted.success  # nbval and "Run All" still see the failure
    assert "the API refused the call" in shown and "KeyboardInterrupt" in shown
    assert shown.count(f"`l2c destroy iris --aws --region {REGION}`") == 2
    assert "endpoint l2c-iris bills by the hour" in shown


@pytest.mark.parametrize("notebook", ["model-deployment-aws.ipynb"])
def test_the_deployment_notebooks_arm_the_reminder_before_creating_anything_and_end_with_destroy(notebook):
    import re
    from pathlib import Path

    cells = json.loads((Path(__file__).resolve().parents[2] / "notebooks" / notebook).read_text())["cells"]
    code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    armed = next(i for i, text in enumerate(code) if "reminder.remind_to_destroy(" in text)
    first_create = next(i for i, text in enumerate(code) if "stack.upload_model(" in text)
    assert armed < first_create
    assert "teardown.destroy(" in code[-1]
    kept = json.dumps([cell.get("outputs", []) for cell in cells if cell["cell_type"] == "code"])
    assert set(re.findall(r"(?<!\d)\d{12}(?!\d)", kept)) <= {"123456789012"}  # no account id kept but AWS's placeholder
