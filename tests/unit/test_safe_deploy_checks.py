"""A deploy on a real AWS account is safe by default: its bucket cannot be squatted, its key
does not leak into logs or other users' files, its roles cannot be assumed for someone else's
resources, and an option AWS would refuse is refused before anything exists.

AWS's answers are replayed with botocore's Stubber, which checks every request's parameters
against the service model: a call queued with ExpectedBucketOwner fails the test if the engine
leaves it out.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import stat
import zipfile

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from l2c.cloud import functions, plan, postman, roles, s3, stack
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import CloudError, CloudSession, write_private
from l2c.local.rules import iam as iam_rules

REGION, ACCOUNT = "eu-west-1", "123456789012"
REGIONAL = f"l2c-{ACCOUNT}-{REGION}-an"
GLOBAL = f"l2c-{ACCOUNT}-{REGION}"
OWNER = {"ExpectedBucketOwner": ACCOUNT}


def make_session(region: str = REGION, partition: str = "aws", bucket: str | None = None) -> CloudSession:
    boto = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    return CloudSession(boto=boto, region=region, account=ACCOUNT, partition=partition, target="aws", bucket=bucket)


@pytest.fixture
def session() -> CloudSession:
    return make_session()


def missing(stub: Stubber, bucket: str) -> None:
    stub.add_client_error("head_bucket", "404", "Not Found", 404, expected_params={"Bucket": bucket, **OWNER})


def present(stub: Stubber, bucket: str) -> None:
    # The status is what botocore's bucket_exists waiter reads.
    stub.add_response("head_bucket", {"ResponseMetadata": {"HTTPStatusCode": 200}}, {"Bucket": bucket, **OWNER})


# --------------------------------------------------------------------------- 1. the bucket


def test_the_bucket_is_created_in_the_accounts_regional_namespace_and_every_call_names_its_owner(session):
    hardening = [
        (
            "put_public_access_block",
            {
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                }
            },
        ),
        (
            "put_bucket_encryption",
            {
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                }
            },
        ),
        ("put_bucket_policy", {"Policy": json.dumps(s3.tls_only_policy(REGIONAL, "aws"))}),
        ("put_bucket_tagging", {"Tagging": {"TagSet": [{"Key": "l2c:shared", "Value": "true"}]}}),
    ]
    with Stubber(session.client("s3")) as stub:
        missing(stub, REGIONAL)
        missing(stub, GLOBAL)
        missing(stub, REGIONAL)  # ensure_bucket looks once more
        stub.add_response(
            "create_bucket",
            {"Location": f"/{REGIONAL}"},
            {
                "Bucket": REGIONAL,
                "ObjectOwnership": "BucketOwnerEnforced",
                "BucketNamespace": "account-regional",
                "CreateBucketConfiguration": {"LocationConstraint": REGION},
            },
        )
        present(stub, REGIONAL)  # the bucket_exists waiter
        for operation, params in hardening:
            stub.add_response(operation, {}, {"Bucket": REGIONAL, **params, **OWNER})

        bucket = s3.bucket_name(session)
        assert bucket == REGIONAL
        assert s3.ensure_bucket(session, bucket) is True
        stub.assert_no_pending_responses()


def test_an_artifact_is_read_and_written_only_in_a_bucket_of_this_account(session, tmp_path):
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(b"artifact")
    key = "iris/abc/model.tar.gz"
    with Stubber(session.client("s3")) as stub:
        stub.add_client_error(
            "head_object", "404", "Not Found", 404, expected_params={"Bucket": REGIONAL, "Key": key, **OWNER}
        )
        stub.add_response(
            "put_object",
            {},
            {
                "Bucket": REGIONAL,
                "Key": key,
                "Body": b"artifact",
                "ContentType": "application/gzip",
                "Metadata": {"sha256": "d1"},
                "Tagging": "l2c%3Astack=iris",
                **OWNER,
            },
        )
        stub.add_response(
            "list_objects_v2", {"Contents": [{"Key": key}]}, {"Bucket": REGIONAL, "Prefix": "iris/", **OWNER}
        )
        assert s3.upload_artifact(session, REGIONAL, key, tarball, "d1") is True
        assert s3.list_keys(session, REGIONAL, "iris/") == [key]
        stub.assert_no_pending_responses()


def test_where_s3_has_no_regional_namespace_the_global_name_is_kept():
    # Middle East (Bahrain) is one of the two Regions S3 names without it; GovCloud is not named.
    for region, partition in (("me-south-1", "aws"), ("us-gov-west-1", "aws-us-gov")):
        session = make_session(region, partition)
        with Stubber(session.client("s3")) as stub:  # no call: nothing is queued
            assert s3.bucket_name(session) == f"l2c-{ACCOUNT}-{region}"
            stub.assert_no_pending_responses()


def test_a_bucket_an_earlier_l2c_made_under_the_global_name_is_kept_while_it_is_this_accounts(session):
    with Stubber(session.client("s3")) as stub:
        missing(stub, REGIONAL)
        present(stub, GLOBAL)
        assert s3.bucket_name(session) == GLOBAL
        # Once someone else holds the global name (a squatter after destroy), it is never used.
        missing(stub, REGIONAL)
        stub.add_client_error("head_bucket", "403", "Forbidden", 403, expected_params={"Bucket": GLOBAL, **OWNER})
        assert s3.bucket_name(session) == REGIONAL
        stub.assert_no_pending_responses()


def test_a_named_bucket_of_the_user_is_used_as_it_is_and_never_deleted(tmp_path):
    session = make_session(bucket="team-models")
    with Stubber(session.client("s3")) as stub:
        assert s3.bucket_name(session) == "team-models"
        present(stub, "team-models")
        stub.add_response(
            "get_bucket_tagging", {"TagSet": [{"Key": "team", "Value": "ml"}]}, {"Bucket": "team-models", **OWNER}
        )
        assert s3.ensure_bucket(session, "team-models") is False  # no policy, encryption or tags put
        present(stub, "team-models")
        stub.add_response(
            "get_bucket_tagging", {"TagSet": [{"Key": "team", "Value": "ml"}]}, {"Bucket": "team-models", **OWNER}
        )
        assert s3.delete_bucket_if_empty(session, "team-models") is False
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    "bad", ["ab", "Team-Models", "-models", "models-", "a..b", "192.168.0.1", "x" * 64, "my_bucket"]
)
def test_a_bucket_name_s3_would_refuse_is_refused_before_anything(bad):
    with pytest.raises(CloudError, match="not a valid S3 bucket name"):
        plan.check_options(plan.DeployOptions(bucket=bad))


# --------------------------------------------------------------------------- 2. the API key


def deployment(target: str = "aws", key: str | None = "a1b2c3d4e5f6g7h8i9j0k1l2m3") -> stack.Deployment:
    return stack.Deployment(
        stack="iris",
        region=REGION,
        target=target,
        model_version="abc",
        model_data_url="s3://b/k",
        endpoint="l2c-iris",
        endpoint_change="created",
        function="l2c-iris",
        api_id="a1",
        url="https://x/test/iris",
        api_key=key,
    )


def test_the_key_is_masked_in_what_a_deploy_prints_unless_asked():
    shown = deployment()
    text = "\n".join(shown.summary()) + shown.curl()
    assert "a1b2c3d4e5f6g7h8i9j0k1l2m3" not in text
    assert "a1b2…l2m3" in text and "--show-key" in text
    assert "a1b2c3d4e5f6g7h8i9j0k1l2m3" in shown.curl(show_key=True)
    assert "API key    a1b2c3d4e5f6g7h8i9j0k1l2m3" in shown.summary(show_key=True)
    assert stack.mask_key("short") == "…"  # too short to show any of it


def test_the_cli_masks_the_key_and_show_key_prints_it(monkeypatch, tmp_path):
    from l2c import cli

    monkeypatch.setattr(cli, "_connect", lambda *args: make_session())
    monkeypatch.setattr(stack, "deploy", lambda *args, **kwargs: deployment())
    runner = CliRunner()
    masked = runner.invoke(cli.app, ["deploy", "iris", "--yes"], catch_exceptions=False)
    # plan() would call AWS: the CLI asks for it only with --aws, which this test leaves out.
    assert masked.exit_code == 0, masked.output
    assert "a1b2c3d4e5f6g7h8i9j0k1l2m3" not in masked.output and "a1b2…l2m3" in masked.output
    revealed = runner.invoke(cli.app, ["deploy", "iris", "--show-key"], catch_exceptions=False)
    assert "x-api-key: a1b2c3d4e5f6g7h8i9j0k1l2m3" in revealed.output


def test_files_under_the_state_folder_are_readable_by_their_user_only(tmp_path, monkeypatch):
    monkeypatch.setenv("L2C_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir(mode=0o755)
    monkeypatch.setattr(os, "umask", os.umask)  # restored after the test
    previous = os.umask(0o022)
    try:
        path = postman.write_postman_environment(make_session(), "https://x/test", "a1b2c3d4e5f6g7h8i9j0k1l2m3")
        again = write_private(path, "{}\n")  # rewriting keeps it private
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(again).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staging file left


# --------------------------------------------------------------------------- 3, 4. trust policies, partition


def test_the_roles_trust_their_service_only_for_this_account(session):
    lambda_trust = roles.lambda_role_spec(session, "iris").trust_policy["Statement"][0]
    assert lambda_trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    sagemaker_trust = roles.sagemaker_role_spec(session, "iris", REGIONAL).trust_policy["Statement"][0]
    assert sagemaker_trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:*"},
    }


def test_every_arn_of_the_roles_is_in_the_sessions_partition():
    # The European Sovereign Cloud's regions do not start with a prefix a lookup table knew:
    # the rendered policies named arn:aws: there, while the bucket policy said arn:aws-eusc:.
    session = make_session("us-isof-south-1", "aws-iso-f")
    documents = [roles.lambda_role_spec(session, "iris").policy, roles.lambda_role_spec(session, "iris").trust_policy]
    spec = roles.sagemaker_role_spec(session, "iris", f"l2c-{ACCOUNT}-us-isof-south-1")
    documents += [spec.policy, spec.trust_policy]
    arns = [value for document in documents for value in _strings(document) if value.startswith("arn:")]
    assert arns and all(arn.startswith("arn:aws-iso-f:") for arn in arns), arns


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


class Role:
    def __init__(self, document: dict):
        self.assume_role_policy_document = json.dumps(document)


def test_the_local_cloud_judges_a_trust_policys_conditions_as_iam_does(session):
    trust = roles.sagemaker_role_spec(session, "iris", REGIONAL).trust_policy
    role = Role(trust)
    ours = iam_rules.service_context(ACCOUNT, f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/l2c-iris-abc")
    theirs = iam_rules.service_context("111122223333", f"arn:aws:sagemaker:{REGION}:111122223333:model/x")
    elsewhere = iam_rules.service_context(ACCOUNT, f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/x")
    assert iam_rules.trusts_service(role, "sagemaker.amazonaws.com", ours)
    assert not iam_rules.trusts_service(role, "sagemaker.amazonaws.com", theirs)
    assert not iam_rules.trusts_service(role, "sagemaker.amazonaws.com", elsewhere)
    assert not iam_rules.trusts_service(role, "sagemaker.amazonaws.com", {})  # a key the request lacks fails
    assert not iam_rules.trusts_service(role, "lambda.amazonaws.com", ours)
    lenient = Role(
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}},
                }
            ]
        }
    )
    assert iam_rules.trusts_service(lenient, "lambda.amazonaws.com", {})
    unknown = Role(
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"DateGreaterThan": {"aws:CurrentTime": "x"}},
                }
            ]
        }
    )
    assert not iam_rules.trusts_service(unknown, "lambda.amazonaws.com", ours)


# --------------------------------------------------------------------------- 5. options checked first


@pytest.mark.parametrize(
    "hosting, message",
    [
        (Hosting(serverless_memory_mb=1500), "--memory-mb 1500 is not a serverless memory size"),
        (Hosting(serverless_memory_mb=512), "--memory-mb 512"),
        (Hosting(serverless_memory_mb=7168), "--memory-mb 7168"),
        (Hosting(serverless_memory_mb=2048, serverless_max_concurrency=0), "--max-concurrency 0 is out of range"),
        (Hosting(serverless_memory_mb=2048, serverless_max_concurrency=201), "1 to 200"),
        (Hosting(instance_count=0), "at least 1 instance"),
    ],
)
def test_hosting_aws_would_refuse_is_refused_in_one_line(hosting, message):
    with pytest.raises(CloudError, match=message) as refusal:
        plan.check_options(plan.DeployOptions(hosting=hosting))
    assert "\n" not in str(refusal.value)


def test_every_serverless_size_sagemaker_takes_passes():
    for memory in (1024, 2048, 3072, 4096, 5120, 6144):
        plan.check_options(
            plan.DeployOptions(hosting=Hosting(serverless_memory_mb=memory, serverless_max_concurrency=200))
        )


def test_autoscale_with_serverless_and_other_impossible_options_are_refused():
    with pytest.raises(CloudError, match="--autoscale applies to instance endpoints"):
        plan.check_options(plan.DeployOptions(hosting=Hosting(serverless_memory_mb=2048), autoscale=(1, 2)))
    with pytest.raises(CloudError, match="MIN must be at least 1"):
        plan.check_options(plan.DeployOptions(autoscale=(0, 2)))
    with pytest.raises(CloudError, match="1 to 900 s"):
        plan.check_options(plan.DeployOptions(lambda_timeout=901))


def test_the_cli_refuses_a_bad_memory_size_before_it_looks_for_a_cloud(monkeypatch):
    from l2c import cli

    def no_cloud(*args):
        raise AssertionError("the options must be refused before any connection")

    monkeypatch.setattr(cli, "_connect", no_cloud)
    result = CliRunner().invoke(cli.app, ["deploy", "iris", "--serverless", "--memory-mb", "1500"])
    assert result.exit_code == 1
    assert "--memory-mb 1500 is not a serverless memory size" in result.output
    assert "Traceback" not in result.output


def wide_card(columns: int = 600) -> dict:
    return {
        "feature_names": [f"sensor_reading_{index:04d}" for index in range(columns)],
        "class_labels": ["ok", "fault"],
    }


def test_a_wide_models_column_names_travel_in_the_zip_not_the_4_kb_environment():
    card = wide_card()
    environment = functions.environment_from_card(card, "l2c-wide")
    assert "FEATURE_NAMES" not in environment and environment["FEATURE_COUNT"] == "600"
    assert functions.environment_size(environment) <= functions.ENVIRONMENT_LIMIT_BYTES
    bundled = functions.bundled_files(card, environment)
    assert json.loads(bundled[functions.FEATURE_NAMES_FILE]) == card["feature_names"]
    narrow = {"feature_names": ["a", "b"], "class_labels": []}
    narrow_env = functions.environment_from_card(narrow, "l2c-n")
    assert narrow_env["FEATURE_NAMES"] == "a,b" and functions.bundled_files(narrow, narrow_env) == {}


def test_the_handler_reads_the_bundled_column_names(tmp_path):
    card = wide_card(300)
    environment = functions.environment_from_card(card, "l2c-wide")
    code = functions.build_zip(functions.lambda_source_dir(), functions.bundled_files(card, environment))
    assert code == functions.build_zip(functions.lambda_source_dir(), functions.bundled_files(card, environment))
    zipfile.ZipFile(io.BytesIO(code)).extractall(tmp_path)
    spec = importlib.util.spec_from_file_location("bundled_handler", tmp_path / "lambda_function.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    settings = handler.Settings(environment)
    assert settings.feature_names == card["feature_names"] and settings.feature_count == 300


def test_an_environment_over_4_kb_even_without_names_is_refused_before_anything(session):
    card = {"feature_names": ["a"], "class_labels": [f"class-{index:05d}-" + "x" * 40 for index in range(100)]}
    with pytest.raises(CloudError, match=r"over Lambda's limit of 4096 bytes .*CLASS_LABELS.*nothing was created"):
        plan.check_before_creating("wide", session, plan.DeployOptions(), card=card)
