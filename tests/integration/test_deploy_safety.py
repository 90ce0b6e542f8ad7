"""A deploy is safe by default, proved against the session's local cloud under AWS's rules.

The bucket is in the account's own regional namespace and every S3 call names its owner (a
bucket another account holds is refused 403, as S3 refuses it); the roles trust their service
for this account only and the local cloud's IAM judges those conditions when SageMaker and
Lambda assume them; the endpoint's log group expires like the function's; what lands in the
state folder is readable by its user only; and an option AWS would refuse stops the deploy
before anything exists.
"""

from __future__ import annotations

import json
import os
import stat
import uuid

import boto3
import httpx
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from l2c import datasets, training
from l2c.cloud import calling, functions, plan, sagemaker, stack, teardown
from l2c.cloud.progress import Reporter
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import CloudError

OTHER_ACCOUNT = "111122223333"
NAME = "iris-safe"


def s3_client(local_cloud, **credentials):
    credentials = credentials or {
        "aws_access_key_id": local_cloud.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": local_cloud.env["AWS_SECRET_ACCESS_KEY"],
    }
    return boto3.client("s3", region_name="us-east-1", endpoint_url=local_cloud.env["AWS_ENDPOINT_URL"], **credentials)


@pytest.fixture(scope="module")
def theirs(local_cloud) -> dict:
    """Credentials of another account (STS AssumeRole into it, as test_rules_s3 does)."""
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=local_cloud.env["AWS_ENDPOINT_URL"],
        aws_access_key_id=local_cloud.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=local_cloud.env["AWS_SECRET_ACCESS_KEY"],
    )
    granted = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/l2c-test-squatter", RoleSessionName="safety")
    return {
        "aws_access_key_id": granted["Credentials"]["AccessKeyId"],
        "aws_secret_access_key": granted["Credentials"]["SecretAccessKey"],
        "aws_session_token": granted["Credentials"]["SessionToken"],
    }


def refusal(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def stack_left(session, name: str) -> list[str]:
    """What exists of the stack, service by service (not through l2c's inventory)."""
    prefix = f"l2c-{name}"
    sm, lam, logs, iam = (session.client(n) for n in ("sagemaker", "lambda", "logs", "iam"))
    left = [m["ModelName"] for m in sm.list_models()["Models"] if m["ModelName"].startswith(prefix + "-")]
    left += [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == prefix]
    left += [f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"] == prefix]
    left += [
        g["logGroupName"] for g in logs.describe_log_groups()["logGroups"] if g["logGroupName"].endswith("/" + prefix)
    ]
    left += [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix + "-")]
    return left


# --------------------------------------------------------------------------- the bucket's owner


def test_a_bucket_of_another_account_is_refused_by_the_owner_condition(
    local_cloud, cloud_session, theirs, trained_models
):
    squatted = f"l2c-squat-{uuid.uuid4().hex[:12]}"
    other = s3_client(local_cloud, **theirs)
    other.create_bucket(Bucket=squatted)
    ours = s3_client(local_cloud)
    owner = {"ExpectedBucketOwner": cloud_session.account}
    try:
        assert refusal(lambda: ours.put_object(Bucket=squatted, Key="iris/model.tar.gz", Body=b"x", **owner)) == (
            "AccessDenied",
            403,
        )
        assert refusal(lambda: ours.list_objects_v2(Bucket=squatted, **owner)) == ("AccessDenied", 403)
        assert refusal(lambda: ours.head_bucket(Bucket=squatted, **owner))[1] == 403
        # The owner itself, naming itself, is served, as moto would serve it (a HEAD's length intact).
        assert (
            other.head_bucket(Bucket=squatted, ExpectedBucketOwner=OTHER_ACCOUNT)["ResponseMetadata"]["HTTPStatusCode"]
            == 200
        )
        other.put_object(Bucket=squatted, Key="theirs.bin", Body=b"y" * 1234, ExpectedBucketOwner=OTHER_ACCOUNT)
        assert (
            other.head_object(Bucket=squatted, Key="theirs.bin", ExpectedBucketOwner=OTHER_ACCOUNT)["ContentLength"]
            == 1234
        )
        assert refusal(lambda: ours.get_object(Bucket=squatted, Key="theirs.bin", **owner)) == ("AccessDenied", 403)
        other.delete_object(Bucket=squatted, Key="theirs.bin", ExpectedBucketOwner=OTHER_ACCOUNT)

        with pytest.raises(CloudError, match=f"bucket {squatted} exists but belongs to another account"):
            stack.deploy(
                NAME,
                trained_models["iris"],
                session=cloud_session,
                options=plan.DeployOptions(bucket=squatted),
                reporter=Reporter(),
            )
        assert other.list_objects_v2(Bucket=squatted).get("KeyCount") == 0  # nothing was written there
        assert stack_left(cloud_session, NAME) == []
    finally:
        other.delete_bucket(Bucket=squatted)


# --------------------------------------------------------------------------- a deploy, safe by default


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    deployment = stack.deploy(NAME, trained_models["iris"], session=cloud_session, reporter=Reporter())
    yield deployment
    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())


def test_the_artifact_bucket_is_in_the_accounts_regional_namespace(deployed, cloud_session):
    bucket = deployed.model_data_url.removeprefix("s3://").split("/", 1)[0]
    assert bucket == f"l2c-{cloud_session.account}-{cloud_session.region}-an"


def test_the_roles_trust_their_service_for_this_account_only_and_still_work(deployed, cloud_session):
    iam = cloud_session.client("iam")
    account, region = cloud_session.account, cloud_session.region
    lambda_trust = iam.get_role(RoleName=f"l2c-{NAME}-{region}-lambda")["Role"]["AssumeRolePolicyDocument"]
    sagemaker_trust = iam.get_role(RoleName=f"l2c-{NAME}-{region}-sagemaker")["Role"]["AssumeRolePolicyDocument"]
    assert lambda_trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}
    assert sagemaker_trust["Statement"][0]["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:sagemaker:{region}:{account}:*"
    }
    # The local cloud judged those conditions when SageMaker and Lambda took the roles on: the API answers.
    status, answer = calling.call_api(NAME, {"data": "5.1,3.5,1.4,0.2"}, session=cloud_session)
    assert status == 200 and answer["prediction"] == "setosa"


def test_a_role_that_trusts_lambda_for_another_account_cannot_be_assumed_by_lambda(cloud_session, paced):
    paced(0)  # no propagation delay: the condition alone must refuse it
    iam, lam = cloud_session.client("iam"), cloud_session.client("lambda")
    name = f"l2c-test-deputy-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": OTHER_ACCOUNT}},
            }
        ],
    }
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    try:
        code = functions.build_zip(functions.lambda_source_dir())
        with pytest.raises(ClientError) as refused:
            lam.create_function(
                FunctionName=name, Runtime="python3.13", Role=role, Handler=functions.HANDLER, Code={"ZipFile": code}
            )
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert "cannot be assumed by Lambda" in refused.value.response["Error"]["Message"]
    finally:
        iam.delete_role(RoleName=name)


def test_the_endpoints_log_group_expires_like_the_functions_and_destroy_removes_both(cloud_session, trained_models):
    name = "iris-logs"
    stack.deploy(name, trained_models["iris"], session=cloud_session, reporter=Reporter())
    logs = cloud_session.client("logs")
    groups = {g["logGroupName"]: g for g in logs.describe_log_groups(logGroupNamePrefix="/aws/")["logGroups"]}
    endpoint_group = sagemaker.log_group_name(sagemaker.endpoint_name(name))
    function_group = functions.log_group_name(functions.function_name(name))
    try:
        assert groups[endpoint_group].get("retentionInDays") == functions.LOG_RETENTION_DAYS
        assert groups[function_group].get("retentionInDays") == functions.LOG_RETENTION_DAYS
        arn = groups[endpoint_group]["arn"].removesuffix(":*")
        assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"l2c:stack": name}
    finally:
        report = teardown.destroy(name, session=cloud_session, reporter=Reporter())
    assert f"log group {endpoint_group}" in report.deleted
    left = {g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/")["logGroups"]}
    assert endpoint_group not in left and function_group not in left


def test_what_the_state_folder_holds_is_readable_by_its_user_only(deployed, local_cloud):
    postman = deployed.postman_environment
    assert stat.S_IMODE(os.stat(postman).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(postman.parent).st_mode) == 0o700
    # The file `l2c up` writes for other terminals holds the cloud's credentials: 0600 too.
    assert stat.S_IMODE(os.stat(local_cloud.folder / "local-cloud.json").st_mode) == 0o600


# --------------------------------------------------------------------------- refused before anything exists


@pytest.mark.parametrize(
    "options, message",
    [
        (
            plan.DeployOptions(hosting=Hosting(serverless_memory_mb=1500)),
            "--memory-mb 1500 is not a serverless memory size",
        ),
        (plan.DeployOptions(hosting=Hosting(serverless_memory_mb=2048, serverless_max_concurrency=500)), "1 to 200"),
        (
            plan.DeployOptions(hosting=Hosting(serverless_memory_mb=2048), autoscale=(1, 3)),
            "--autoscale applies to instance",
        ),
        (plan.DeployOptions(bucket="Not_A_Bucket"), "not a valid S3 bucket name"),
    ],
)
def test_an_option_aws_would_refuse_stops_the_deploy_before_anything_exists(
    cloud_session, trained_models, options, message
):
    buckets_before = {b["Name"] for b in cloud_session.client("s3").list_buckets()["Buckets"]}
    with pytest.raises(CloudError, match=message) as refused:
        stack.deploy(
            "iris-refused", trained_models["iris"], session=cloud_session, options=options, reporter=Reporter()
        )
    assert "\n" not in str(refused.value)
    assert stack_left(cloud_session, "iris-refused") == []
    assert {b["Name"] for b in cloud_session.client("s3").list_buckets()["Buckets"]} == buckets_before


# --------------------------------------------------------------------------- a model too wide for Lambda's 4 KB


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """200 columns with long names: 5 KB of names, over Lambda's 4 KB environment."""
    folder = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(7)
    values = rng.normal(size=(40, 200))
    frame = pd.DataFrame(values, columns=[f"sensor_reading_{index:04d}_value" for index in range(200)])
    frame["target"] = values[:, 0] * 2 + values[:, 1]
    frame.to_csv(folder / "wide.csv", index=False)
    data = datasets.load_csv(folder / "wide.csv", target="target", task="regression", name="wide-sensors")
    return training.train_and_save(data, models_dir=folder / "models", params=training.TUTORIAL_PARAMS)


def test_a_wide_csv_model_deploys_and_its_named_columns_are_read_from_the_zip(cloud_session, wide_model):
    name = "wide-sensors"
    card = json.loads((wide_model / "model_card.json").read_text())
    try:
        deployment = stack.deploy(name, wide_model, session=cloud_session, reporter=Reporter())
        variables = cloud_session.client("lambda").get_function_configuration(FunctionName=deployment.function)[
            "Environment"
        ]["Variables"]
        assert "FEATURE_NAMES" not in variables and variables["FEATURE_COUNT"] == "200"
        row = {column: 0.5 for column in card["feature_names"]}
        status, answer = calling.call_api(name, {"features": row}, session=cloud_session)
        assert status == 200, answer
        assert isinstance(answer["prediction"], float)
        # A misspelt column is caught by the names the handler read from its zip.
        wrong = {**row, "sensor_reading_9999_value": 1.0}
        del wrong[card["feature_names"][0]]
        response = httpx.post(
            deployment.url, json={"features": wrong}, headers={"x-api-key": deployment.api_key}, timeout=60
        )
        assert response.status_code == 400, response.text
        with pytest.raises(CloudError, match="row 1 has 3 values but the model expects 200"):
            calling.invoke(name, "1,2,3", session=cloud_session)
    finally:
        teardown.destroy(name, session=cloud_session, reporter=Reporter())
