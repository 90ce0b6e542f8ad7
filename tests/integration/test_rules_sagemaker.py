"""SageMaker hosting in the local cloud behaves as AWS's does, seen through boto3 only.

Endpoints go through Creating / Updating / Deleting on the cloud's pace, really fetch their
artifact with the execution role's permissions, fail and roll back with AWS's reasons, and are
refused what AWS refuses. The artifacts are uploaded here with boto3 (not by the deploy
engine), so these tests say what the cloud does, whatever the engine does with it.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import tarfile
import time
import uuid

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from l2c.local.tutorial import TUTORIAL_BODIES

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "l2c-rules-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0"
IRIS_ROW = TUTORIAL_BODIES["iris"]["data"]
SAGEMAKER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
# Watching a transition: Creating/Updating last 300 AWS seconds, so ~2.4 s at this pace.
WATCH_PACE = 0.008


CREATED: list[str] = []  # every name this module made, removed when it ends


def unique(prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    CREATED.append(name)
    return name


@pytest.fixture(scope="module", autouse=True)
def clean_up(local_cloud):
    """The session's cloud is shared: leave nothing behind (the deploy tests list every service)."""
    yield
    sm, iam = boto3.client("sagemaker", region_name=REGION), boto3.client("iam")
    scaling, logs = (
        boto3.client("application-autoscaling", region_name=REGION),
        boto3.client("logs", region_name=REGION),
    )
    for target in scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]:
        if target["ResourceId"].split("/")[1] in CREATED:
            scaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=target["ResourceId"],
                ScalableDimension=target["ScalableDimension"],
            )
    endpoints = [
        e["EndpointName"] for e in sm.list_endpoints(MaxResults=100)["Endpoints"] if e["EndpointName"] in CREATED
    ]
    for name in endpoints:
        statuses_until(sm, name, {"InService", "Failed", "gone"})
        sm.delete_endpoint(EndpointName=name)
    for name in endpoints:
        statuses_until(sm, name, {"gone"})
        logs.delete_log_group(logGroupName=f"/aws/sagemaker/Endpoints/{name}")
    for config in sm.list_endpoint_configs(MaxResults=100)["EndpointConfigs"]:
        if config["EndpointConfigName"] in CREATED:
            sm.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
    for model in sm.list_models(MaxResults=100)["Models"]:
        if model["ModelName"] in CREATED:
            sm.delete_model(ModelName=model["ModelName"])
    for role in iam.list_roles()["Roles"]:
        if role["RoleName"] in CREATED:
            for policy in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
                iam.delete_role_policy(RoleName=role["RoleName"], PolicyName=policy)
            iam.delete_role(RoleName=role["RoleName"])
    s3 = boto3.resource("s3", region_name=REGION)
    if s3.Bucket(BUCKET) in s3.buckets.all():
        s3.Bucket(BUCKET).objects.all().delete()
        s3.Bucket(BUCKET).delete()


@pytest.fixture(scope="module")
def sm(local_cloud):
    return boto3.client("sagemaker", region_name=REGION)


@pytest.fixture(scope="module")
def runtime(local_cloud):
    return boto3.client("sagemaker-runtime", region_name=REGION)


@pytest.fixture(scope="module")
def artifacts(local_cloud, trained_models):
    """s3 URLs: the two tutorial models, a pickle the container refuses, and a missing object."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    for name in ("iris", "house-price"):
        s3.upload_file(str(trained_models[name] / "model.tar.gz"), BUCKET, f"{name}/model.tar.gz")
    s3.put_object(Bucket=BUCKET, Key="pickle/model.tar.gz", Body=pickle_tarball())
    s3.put_object(
        Bucket=BUCKET, Key="private/model.tar.gz", Body=(trained_models["iris"] / "model.tar.gz").read_bytes()
    )
    return {
        name: f"s3://{BUCKET}/{name}/model.tar.gz" for name in ("iris", "house-price", "pickle", "private", "missing")
    }


def pickle_tarball() -> bytes:
    member = pickle.dumps({"not": "a booster"})
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(member)
        tar.addfile(info, io.BytesIO(member))
    return stream.getvalue()


def create_role(
    name: str, trust=SAGEMAKER_TRUST, read_prefixes=("iris/", "house-price/", "pickle/", "missing/")
) -> str:
    iam = boto3.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="read-models",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": [f"arn:aws:s3:::{BUCKET}/{prefix}*" for prefix in read_prefixes],
                    }
                ],
            }
        ),
    )
    return arn


@pytest.fixture(scope="module")
def role(local_cloud):
    arn = create_role(unique("l2c-rules-sm"))
    time.sleep(0.1)  # past IAM's propagation delay at the suite's pace
    return arn


@pytest.fixture(scope="module")
def models(sm, role, artifacts):
    names = {}
    for kind, url in artifacts.items():
        names[kind] = unique(f"m-{kind}")
        sm.create_model(
            ModelName=names[kind], ExecutionRoleArn=role, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url}
        )
    return names


def make_config(sm, model: str, instance_type="ml.m5.large", count=1, serverless=False) -> str:
    name = unique("cfg")
    variant = {"VariantName": "AllTraffic", "ModelName": model, "InitialVariantWeight": 1.0}
    if serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    else:
        variant.update(InstanceType=instance_type, InitialInstanceCount=count)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    return name


def statuses_until(sm, endpoint: str, final: set[str], timeout=30.0) -> list[str]:
    """Every status DescribeEndpoint reports (deduplicated) until one in ``final``, or 'gone'."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"]
        except ClientError as err:
            assert "Could not find endpoint" in err.response["Error"]["Message"]
            status = "gone"
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in final:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{endpoint} never reached {final}: {seen}")


def error_of(call, *args, **kwargs) -> dict:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


@pytest.fixture(scope="module")
def live(sm, models):
    """An InService iris endpoint shared by the tests that only read it."""
    name = unique("live")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    assert statuses_until(sm, name, {"InService", "Failed"})[-1] == "InService"
    return name


def invoke(runtime, endpoint: str) -> bytes:
    return runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=IRIS_ROW)["Body"].read()


def log_lines(endpoint: str) -> list[str]:
    logs = boto3.client("logs", region_name=REGION)
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    lines = []
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        assert stream["logStreamName"].startswith("AllTraffic/i-")
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
        lines += [event["message"] for event in events]
    return lines


# --------------------------------------------------------------------------- create


def test_create_is_creating_then_in_service_and_a_second_create_is_refused(sm, runtime, models, paced):
    paced(WATCH_PACE)
    name, config = unique("create"), make_config(sm, models["iris"])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config)
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
    error = error_of(sm.create_endpoint, EndpointName=name, EndpointConfigName=config)
    assert error["Error"]["Code"] == "ValidationException"
    assert error["Error"]["Message"] == f'Cannot create already existing endpoint "{arn("endpoint", name)}".'
    # Not invocable before it is InService: AWS does not know the endpoint's runtime yet.
    refused = error_of(runtime.invoke_endpoint, EndpointName=name, ContentType="text/csv", Body=IRIS_ROW)
    assert refused["Error"] == {
        "Code": "ValidationError",
        "Message": f"Endpoint {name} of account {ACCOUNT} not found.",
    }
    assert statuses_until(sm, name, {"InService", "Failed"}) == ["Creating", "InService"]
    assert invoke(runtime, name).count(b",") == 2  # three class probabilities
    assert any("Loaded the model" in line for line in log_lines(name))


def test_an_endpoint_whose_role_may_not_read_the_artifact_fails_with_awss_reason(sm, models, artifacts):
    name = unique("denied")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["private"]))
    assert statuses_until(sm, name, {"InService", "Failed"})[-1] == "Failed"
    reason = sm.describe_endpoint(EndpointName=name)["FailureReason"]
    assert reason == (
        f'Failed to download model data for container "container_1" from URL: "{artifacts["private"]}". Please ensure '
        "that there is an object located at the URL and that the role passed to CreateModel has permissions to "
        "download the object."
    )
    assert any("AccessDenied" in line for line in log_lines(name))
    with pytest.raises(Exception, match="Failed"):  # botocore's waiter: Failed is a failure state
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 2})


def test_a_missing_artifact_fails_the_endpoint(sm, models, artifacts):
    name = unique("missing")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["missing"]))
    assert statuses_until(sm, name, {"InService", "Failed"})[-1] == "Failed"
    assert sm.describe_endpoint(EndpointName=name)["FailureReason"].startswith(
        f'Failed to download model data for container "container_1" from URL: "{artifacts["missing"]}".'
    )
    assert any("NoSuchKey" in line for line in log_lines(name))


def test_a_pickled_artifact_never_passes_the_ping_health_check(sm, models):
    name = unique("pickle")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["pickle"]))
    assert statuses_until(sm, name, {"InService", "Failed"})[-1] == "Failed"
    assert sm.describe_endpoint(EndpointName=name)["FailureReason"] == (
        "The primary container for production variant AllTraffic did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )
    assert any("Unable to load model" in line for line in log_lines(name))


# --------------------------------------------------------------------------- update


def test_an_update_serves_the_old_config_while_updating_then_the_new_one(sm, runtime, models, paced):
    name, old = unique("update"), make_config(sm, models["iris"])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=old)
    statuses_until(sm, name, {"InService"})
    before = invoke(runtime, name)
    paced(WATCH_PACE)
    new = make_config(sm, models["house-price"])
    assert sm.update_endpoint(EndpointName=name, EndpointConfigName=new)["EndpointArn"].endswith(f"endpoint/{name}")
    during = sm.describe_endpoint(EndpointName=name)
    assert (during["EndpointStatus"], during["EndpointConfigName"]) == ("Updating", old)
    assert invoke(runtime, name) == before  # still the iris model: no availability loss
    refused = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName=new)
    assert refused["Error"]["Message"] == f'Cannot update in-progress endpoint "{arn("endpoint", name)}".'
    assert statuses_until(sm, name, {"InService"}) == ["Updating", "InService"]
    after = sm.describe_endpoint(EndpointName=name)
    assert after["EndpointConfigName"] == new and "FailureReason" not in after
    assert invoke(runtime, name).count(b",") == 0  # a house price now: one number


def test_a_failed_update_rolls_back_to_the_old_config_with_a_reason(sm, runtime, models, paced):
    name, old = unique("rollback"), make_config(sm, models["iris"])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=old)
    statuses_until(sm, name, {"InService"})
    paced(WATCH_PACE)
    sm.update_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["pickle"]))
    assert statuses_until(sm, name, {"InService"}) == ["Updating", "InService"]
    # As on AWS, the waiter succeeds: the endpoint is InService, on the OLD config.
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    after = sm.describe_endpoint(EndpointName=name)
    assert after["EndpointConfigName"] == old
    assert "did not pass the ping health check" in after["FailureReason"]
    assert invoke(runtime, name).count(b",") == 2


def test_updating_an_endpoint_that_does_not_exist(sm, models):
    name = unique("nothing")
    error = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    assert error["Error"] == {
        "Code": "ValidationException",
        "Message": f'Could not find endpoint "{arn("endpoint", name)}".',
    }


def test_a_failed_endpoint_cannot_be_updated(sm, models):
    name = unique("failed")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["pickle"]))
    statuses_until(sm, name, {"Failed"})
    error = error_of(sm.update_endpoint, EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    assert error["Error"]["Code"] == "ValidationException"
    assert error["Error"]["Message"].startswith(f'Cannot update failed endpoint "{arn("endpoint", name)}".')


def test_an_instance_endpoint_cannot_become_serverless(sm, models, live):
    error = error_of(
        sm.update_endpoint, EndpointName=live, EndpointConfigName=make_config(sm, models["iris"], serverless=True)
    )
    assert error["Error"]["Code"] == "ValidationException"
    assert "between instance-based and serverless hosting" in error["Error"]["Message"]
    assert sm.describe_endpoint(EndpointName=live)["EndpointStatus"] == "InService"


def test_an_autoscaled_variant_cannot_change_instance_type_but_can_change_model(sm, models):
    name = unique("scaled")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    statuses_until(sm, name, {"InService"})
    scaling = boto3.client("application-autoscaling", region_name=REGION)
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{name}/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    error = error_of(
        sm.update_endpoint,
        EndpointName=name,
        EndpointConfigName=make_config(sm, models["iris"], instance_type="ml.c5.large"),
    )
    assert error["Error"]["Code"] == "ValidationException"
    assert (
        'The variant(s) "[AllTraffic]"' in error["Error"]["Message"]
        and "DeregisterScalableTarget" in error["Error"]["Message"]
    )
    # The documented exception: a new model on the same instance type is allowed.
    sm.update_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["house-price"]))
    assert statuses_until(sm, name, {"InService"})[-1] == "InService"


def test_retain_all_variant_properties_keeps_the_instance_count(sm, models):
    name = unique("retain")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    statuses_until(sm, name, {"InService"})
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}]
    )
    sm.update_endpoint(
        EndpointName=name, EndpointConfigName=make_config(sm, models["house-price"]), RetainAllVariantProperties=True
    )
    statuses_until(sm, name, {"InService"})
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 3
    sm.update_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    statuses_until(sm, name, {"InService"})
    assert sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"] == 1


# --------------------------------------------------------------------------- delete


def test_delete_is_refused_while_creating_then_deleting_then_gone(sm, models, paced):
    paced(WATCH_PACE)
    name = unique("delete")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    error = error_of(sm.delete_endpoint, EndpointName=name)
    assert error["Error"] == {
        "Code": "ValidationException",
        "Message": f'Cannot update in-progress endpoint "{arn("endpoint", name)}".',
    }
    statuses_until(sm, name, {"InService"})
    sm.delete_endpoint(EndpointName=name)
    assert statuses_until(sm, name, {"gone"}) == ["Deleting", "gone"]
    # The name is free again: a new endpoint under it is created afresh.
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"


def test_a_failed_endpoint_can_be_deleted(sm, models):
    name = unique("delfail")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=make_config(sm, models["pickle"]))
    statuses_until(sm, name, {"Failed"})
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})


# --------------------------------------------------------------------------- quotas


@pytest.fixture
def quotas(local_cloud):
    url = local_cloud.env["AWS_ENDPOINT_URL"] + "/_l2c/quotas"

    def set_quotas(values: dict) -> None:
        httpx.post(url, json=values).raise_for_status()

    yield set_quotas
    current = httpx.get(url).json()["quotas"]
    set_quotas({name: None for name in current})


def test_create_beyond_the_instance_quota_is_resource_limit_exceeded(sm, models, quotas):
    quotas({"ml.m5.large": 0})
    name = unique("quota")
    error = error_of(sm.create_endpoint, EndpointName=name, EndpointConfigName=make_config(sm, models["iris"]))
    assert error["Error"]["Code"] == "ResourceLimitExceeded"
    assert re.fullmatch(
        r"The account-level service limit 'ml\.m5\.large for endpoint usage' is 0 Instances, with current utilization "
        r"of \d+ Instances and a request delta of 1 Instances\. Please use AWS Service Quotas to request an increase "
        r"for this quota\. If AWS Service Quotas is not available, contact AWS support to request an increase for "
        r"this quota\.",
        error["Error"]["Message"],
    )
    assert (
        error_of(sm.describe_endpoint, EndpointName=name)["Error"]["Code"] == "ValidationException"
    )  # nothing created


def test_create_and_update_count_the_instances_already_in_use(sm, models, quotas):
    quotas({"ml.c5.2xlarge": 2})
    first = unique("quota-a")
    sm.create_endpoint(
        EndpointName=first, EndpointConfigName=make_config(sm, models["iris"], instance_type="ml.c5.2xlarge")
    )
    statuses_until(sm, first, {"InService"})
    two = make_config(sm, models["iris"], instance_type="ml.c5.2xlarge", count=2)
    error = error_of(sm.create_endpoint, EndpointName=unique("quota-b"), EndpointConfigName=two)
    assert error["Error"]["Code"] == "ResourceLimitExceeded"
    assert (
        "'ml.c5.2xlarge for endpoint usage' is 2 Instances, with current utilization of 1 Instances and a "
        "request delta of 2 Instances"
    ) in error["Error"]["Message"]
    # An update brings up the new fleet before the old one goes: both count.
    error = error_of(sm.update_endpoint, EndpointName=first, EndpointConfigName=two)
    assert error["Error"]["Code"] == "ResourceLimitExceeded"
    sm.update_endpoint(
        EndpointName=first, EndpointConfigName=make_config(sm, models["house-price"], instance_type="ml.c5.2xlarge")
    )
    assert statuses_until(sm, first, {"InService"})[-1] == "InService"


def test_quotas_can_be_set_from_the_environment():
    from l2c.local.rules.sagemaker import quotas_from_environment

    assert quotas_from_environment("ml.m5.large=0, ml.t2.medium=2") == {"ml.m5.large": 0, "ml.t2.medium": 2}
    with pytest.raises(ValueError, match="ml.m5.large=0"):
        quotas_from_environment("ml.m5.large")
    with pytest.raises(ValueError, match="whole number"):
        quotas_from_environment("ml.m5.large=-1")


def test_quota_settings_refuse_what_is_not_a_count(local_cloud):
    answer = httpx.post(local_cloud.env["AWS_ENDPOINT_URL"] + "/_l2c/quotas", json={"ml.m5.large": "many"})
    assert answer.status_code == 400 and "whole number" in answer.json()["message"]


def test_service_quotas_answers_from_the_same_table(local_cloud, quotas):
    quotas({"ml.m5.large": 0, "ml.g5.xlarge": 2})
    client = boto3.client("service-quotas", region_name=REGION)
    listed = {q["QuotaName"]: q for q in client.list_service_quotas(ServiceCode="sagemaker")["Quotas"]}
    assert listed["ml.m5.large for endpoint usage"]["Value"] == 0.0
    assert listed["ml.g5.xlarge for endpoint usage"]["Value"] == 2.0
    code = listed["ml.m5.large for endpoint usage"]["QuotaCode"]
    quota = client.get_service_quota(ServiceCode="sagemaker", QuotaCode=code)["Quota"]
    assert (quota["QuotaName"], quota["Value"], quota["ServiceCode"]) == (
        "ml.m5.large for endpoint usage",
        0.0,
        "sagemaker",
    )
    error = error_of(client.get_service_quota, ServiceCode="sagemaker", QuotaCode="L-00000000")
    assert error["Error"]["Code"] == "NoSuchResourceException"


# --------------------------------------------------------------------------- models and roles


def test_create_model_with_a_role_iam_has_not_propagated_yet(sm, artifacts, paced):
    paced(0.5)  # IAM's ~10 s become 5 s
    role = create_role(unique("l2c-young"))
    error = error_of(
        sm.create_model,
        ModelName=unique("young"),
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": artifacts["iris"]},
    )
    assert error["Error"] == {
        "Code": "ValidationException",
        "Message": f"Could not assume role {role}. Please ensure that the role exists and allows principal "
        "'sagemaker.amazonaws.com' to assume the role.",
    }


def test_create_model_with_a_role_that_does_not_trust_sagemaker(sm, artifacts):
    lambda_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = create_role(unique("l2c-lambda-only"), trust=lambda_trust)
    time.sleep(0.1)
    error = error_of(
        sm.create_model,
        ModelName=unique("untrusted"),
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": artifacts["iris"]},
    )
    assert error["Error"]["Message"].startswith(f"Could not assume role {role}.")


# --------------------------------------------------------------------------- shapes


def test_describes_leave_out_what_aws_leaves_out_and_sagemaker_core_reads_them(sm, models, live):
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model

    described = sm.describe_endpoint(EndpointName=live)
    assert "DataCaptureConfig" not in described
    model = sm.describe_model(ModelName=models["iris"])
    assert "VpcConfig" not in model and "Containers" not in model
    endpoint = Endpoint.get(endpoint_name=live, region=REGION)
    assert endpoint.endpoint_status == "InService"
    assert live in [e.endpoint_name for e in Endpoint.get_all(region=REGION)]
    assert described["EndpointConfigName"] in [c.endpoint_config_name for c in EndpointConfig.get_all(region=REGION)]
    assert models["iris"] in [m.model_name for m in Model.get_all(region=REGION)]


# --------------------------------------------------------------------------- the runtime


def test_a_response_stream_carries_the_whole_answer_in_one_payload_part(runtime, live):
    expected = invoke(runtime, live)
    reply = runtime.invoke_endpoint_with_response_stream(EndpointName=live, ContentType="text/csv", Body=IRIS_ROW)
    parts = [event["PayloadPart"]["Bytes"] for event in reply["Body"]]
    assert parts == [expected]
    assert reply["InvokedProductionVariant"] == "AllTraffic"
    assert reply["ContentType"].startswith("text/csv")


def test_async_invocation_of_a_real_time_endpoint_is_a_validation_error(runtime, live):
    error = error_of(runtime.invoke_endpoint_async, EndpointName=live, InputLocation=f"s3://{BUCKET}/in.csv")
    assert error["Error"]["Code"] == "ValidationError"
    assert "is not an asynchronous inference endpoint" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_model_error_is_written_to_the_endpoints_log_group(runtime, live):
    error = error_of(runtime.invoke_endpoint, EndpointName=live, ContentType="text/csv", Body="a,b,c,d")
    assert error["Error"]["Code"] == "ModelError"
    assert f"/aws/sagemaker/Endpoints/{live}" in error["Error"]["Message"]
    deadline = time.monotonic() + 10
    while not any(line.startswith("Model error (415)") for line in log_lines(live)):
        assert time.monotonic() < deadline, log_lines(live)
        time.sleep(0.1)


def test_assumed_role_credentials_are_held_to_the_roles_policy(local_cloud, live, sm, models):
    other = unique("other")
    sm.create_endpoint(EndpointName=other, EndpointConfigName=make_config(sm, models["iris"]))
    statuses_until(sm, other, {"InService"})
    iam = boto3.client("iam")
    role_name = unique("l2c-invoker")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="invoke",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint", "Resource": arn("endpoint", live)}
                ],
            }
        ),
    )
    credentials = boto3.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="fn")["Credentials"]
    as_role = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    ).client("sagemaker-runtime")
    assert as_role.invoke_endpoint(EndpointName=live, ContentType="text/csv", Body=IRIS_ROW)["Body"].read()
    error = error_of(as_role.invoke_endpoint, EndpointName=other, ContentType="text/csv", Body=IRIS_ROW)
    assert error["Error"] == {
        "Code": "AccessDeniedException",
        "Message": f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/fn is not authorized to perform: "
        f"sagemaker:InvokeEndpoint on resource: {arn('endpoint', other)} because no identity-based policy "
        "allows the sagemaker:InvokeEndpoint action",
    }
    assert error["ResponseMetadata"]["RetryAttempts"] == 0
    # A policy change is seen at once (the runtime's answers last until moto changes).
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="invoke",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint", "Resource": "*"}],
            }
        ),
    )
    assert as_role.invoke_endpoint(EndpointName=other, ContentType="text/csv", Body=IRIS_ROW)["Body"].read()


def test_the_authorize_admin_call(local_cloud):
    url = local_cloud.env["AWS_ENDPOINT_URL"] + "/_l2c/authorize"
    own = httpx.post(url, json={"access_key": "testing", "action": "sagemaker:InvokeEndpoint", "resource": "*"})
    assert own.json() == {"allowed": True, "principal": None}
    assert httpx.post(url, json={"access_key": "x"}).status_code == 400
