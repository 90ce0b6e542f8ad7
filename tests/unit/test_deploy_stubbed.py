"""Deploy and destroy against SageMaker's answers on AWS, replayed with botocore's Stubber.

Each test queues the exact calls the engine must make, in order, with AWS's own answers
(Stubber validates every parameter against the service model, as the wire does); a call the
engine should not make has no queued answer and fails the test.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from l2c.cloud import apigateway, container, cors, functions, plan, sagemaker, stack
from l2c.cloud.progress import Reporter
from l2c.cloud.sagemaker import Hosting
from l2c.cloud.session import CloudError, CloudSession

REGION, ACCOUNT = "eu-west-1", "123456789012"
ENDPOINT, OLD, NEW = "l2c-iris", "l2c-iris-aaaaaaaaaaaa-111111", "l2c-iris-bbbbbbbbbbbb-111111"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"
RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
NOT_FOUND = f'Could not find endpoint "{ARN}".'


@pytest.fixture
def session(monkeypatch):
    monkeypatch.setattr(sagemaker.time, "sleep", lambda seconds: None)  # AWS's 30 s polls, not waited here
    boto = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return CloudSession(boto=boto, region=REGION, account=ACCOUNT, partition="aws", target="aws")


@pytest.fixture
def stubs(session):
    services = ("sagemaker", "application-autoscaling", "service-quotas", "iam", "sts", "s3", "apigateway")
    clients = {name: session.client(name) for name in services}
    stubbers = {name: Stubber(client) for name, client in clients.items()}
    for stubber in stubbers.values():
        stubber.activate()
    yield stubbers
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


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


def config_of(name: str, instance_type: str | None = "ml.m5.large", serverless: bool = False) -> dict:
    variant = {"VariantName": "AllTraffic", "ModelName": name.rsplit("-", 1)[0]}
    if serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    else:
        variant.update(InstanceType=instance_type, InitialInstanceCount=1)
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/{name}",
        "ProductionVariants": [variant],
        "CreationTime": "2026-11-25T00:00:00Z",
    }


def expect_describe(stubs, *answers) -> None:
    for answer in answers:
        if answer is None:
            stubs["sagemaker"].add_client_error("describe_endpoint", "ValidationException", NOT_FOUND)
        else:
            stubs["sagemaker"].add_response("describe_endpoint", answer, {"EndpointName": ENDPOINT})


def expect_target(stubs, target: dict | None) -> None:
    targets = [target] if target else []
    stubs["application-autoscaling"].add_response(
        "describe_scalable_targets",
        {"ScalableTargets": targets},
        {"ServiceNamespace": "sagemaker", "ResourceIds": [RESOURCE], "ScalableDimension": DIMENSION},
    )


def scalable_target(minimum: int = 1, maximum: int = 3) -> dict:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": RESOURCE,
        "ScalableDimension": DIMENSION,
        "MinCapacity": minimum,
        "MaxCapacity": maximum,
        "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
        "CreationTime": "2026-11-25T00:00:00Z",
    }


# --------------------------------------------------------------------------- destroy waits, and deletes Failed


def test_delete_waits_out_an_endpoint_still_creating_then_deletes_it(session, stubs):
    expect_describe(stubs, described("Creating"), described("Creating"), described("Creating"), described("InService"))
    stubs["sagemaker"].add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    expect_describe(stubs, described("Deleting"), None)

    assert sagemaker.delete_endpoint(session, ENDPOINT, Reporter()) is True


@pytest.mark.parametrize("busy", ["Updating", "SystemUpdating", "RollingBack"])
def test_delete_waits_out_every_operation_in_progress(session, stubs, busy):
    expect_describe(stubs, described(busy), described(busy), described("InService"))
    stubs["sagemaker"].add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    expect_describe(stubs, None)

    assert sagemaker.delete_endpoint(session, ENDPOINT, Reporter()) is True


def test_a_failed_endpoint_is_deleted_although_describe_still_says_failed(session, stubs):
    # botocore's EndpointDeleted waiter stops at Failed; AWS may still describe the endpoint as
    # Failed right after DeleteEndpoint, before Deleting shows.
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    expect_describe(stubs, described("Failed", FailureReason=reason))
    stubs["sagemaker"].add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    expect_describe(stubs, described("Failed", FailureReason=reason), described("Deleting"), None)

    assert sagemaker.delete_endpoint(session, ENDPOINT, Reporter()) is True


def test_deleting_an_endpoint_that_is_gone_already_is_harmless(session, stubs):
    expect_describe(stubs, None)
    assert sagemaker.delete_endpoint(session, ENDPOINT, Reporter()) is False


# --------------------------------------------------------------------------- updates: rollback, no re-creation


def test_a_rolled_back_update_is_a_failure_naming_sagemakers_reason(session, stubs):
    reason = 'Failed to download model data for container "container_1" from URL: "s3://b/iris/b/model.tar.gz".'
    expect_describe(stubs, described("InService"))
    stubs["sagemaker"].add_response(
        "list_tags", {"Tags": [{"Key": "l2c:stack", "Value": "iris"}]}, {"ResourceArn": ARN}
    )
    expect_target(stubs, None)
    stubs["sagemaker"].add_response(
        "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": NEW}
    )
    # The EndpointInService waiter would call this a success: InService, on the OLD config.
    expect_describe(stubs, described("Updating"), described("InService", OLD, FailureReason=reason))

    with pytest.raises(sagemaker.UpdateRolledBack) as failure:
        sagemaker.ensure_endpoint(session, ENDPOINT, NEW, {"l2c:stack": "iris"}, Reporter())

    message = str(failure.value)
    assert reason in message and OLD in message and "kept" in message
    assert "/aws/sagemaker/Endpoints/l2c-iris" in message


def test_an_update_is_done_once_the_endpoint_runs_the_new_config(session, stubs):
    expect_describe(stubs, described("InService"))
    stubs["sagemaker"].add_response(
        "list_tags", {"Tags": [{"Key": "l2c:stack", "Value": "iris"}]}, {"ResourceArn": ARN}
    )
    expect_target(stubs, None)
    stubs["sagemaker"].add_response(
        "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": NEW}
    )
    expect_describe(stubs, described("Updating"), described("InService", NEW))

    assert sagemaker.ensure_endpoint(session, ENDPOINT, NEW, {"l2c:stack": "iris"}, Reporter()) == "updated"


def test_an_update_answered_with_a_bare_500_is_reported_and_the_endpoint_is_left_alone(session, stubs):
    # botocore names an error without a body by its HTTP status: no delete-and-recreate of a
    # production endpoint follows (no DeleteEndpoint or CreateEndpoint is queued here).
    expect_describe(stubs, described("InService"))
    stubs["sagemaker"].add_response(
        "list_tags", {"Tags": [{"Key": "l2c:stack", "Value": "iris"}]}, {"ResourceArn": ARN}
    )
    expect_target(stubs, None)
    stubs["sagemaker"].add_client_error("update_endpoint", "500", "", http_status_code=500)

    with pytest.raises(ClientError) as failure:
        sagemaker.ensure_endpoint(session, ENDPOINT, NEW, {"l2c:stack": "iris"}, Reporter())
    assert failure.value.response["Error"]["Code"] == "500"
    assert not hasattr(sagemaker, "_update_or_replace")


def test_a_deploy_interrupted_while_creating_waits_for_the_endpoint_instead_of_failing(session, stubs):
    expect_describe(stubs, described("Creating", NEW), described("Creating", NEW), described("InService", NEW))
    stubs["sagemaker"].add_response(
        "list_tags", {"Tags": [{"Key": "l2c:stack", "Value": "iris"}]}, {"ResourceArn": ARN}
    )

    assert sagemaker.ensure_endpoint(session, ENDPOINT, NEW, {"l2c:stack": "iris"}, Reporter()) == "unchanged"


# --------------------------------------------------------------------------- autoscaled endpoints


def test_a_model_only_update_of_an_autoscaled_endpoint_keeps_its_instance_count(session, stubs):
    expect_target(stubs, scalable_target())
    stubs["sagemaker"].add_response("describe_endpoint_config", config_of(OLD), {"EndpointConfigName": OLD})
    stubs["sagemaker"].add_response("describe_endpoint_config", config_of(NEW), {"EndpointConfigName": NEW})
    stubs["sagemaker"].add_response(
        "update_endpoint",
        {"EndpointArn": ARN},
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": NEW,
            "RetainAllVariantProperties": True,
        },
    )
    expect_describe(stubs, described("InService", NEW))

    sagemaker.update_endpoint(session, ENDPOINT, described("InService"), NEW, Reporter())


def test_a_new_instance_type_on_an_autoscaled_endpoint_deregisters_updates_and_registers_again(session, stubs):
    scaling = stubs["application-autoscaling"]
    expect_target(stubs, scalable_target(2, 5))
    stubs["sagemaker"].add_response("describe_endpoint_config", config_of(OLD), {"EndpointConfigName": OLD})
    stubs["sagemaker"].add_response(
        "describe_endpoint_config", config_of(NEW, "ml.c5.large"), {"EndpointConfigName": NEW}
    )
    expect_target(stubs, scalable_target(2, 5))  # deregister_autoscaling looks first
    scaling.add_response(
        "deregister_scalable_target",
        {},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": DIMENSION,
        },
    )
    # No RetainAllVariantProperties: the new type's count comes from the new config.
    stubs["sagemaker"].add_response(
        "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": NEW}
    )
    expect_describe(stubs, described("Updating", OLD), described("InService", NEW))
    scaling.add_response(
        "register_scalable_target",
        {},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": DIMENSION,
            "MinCapacity": 2,
            "MaxCapacity": 5,
        },
    )
    scaling.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:aws:autoscaling:policy"},
        {
            "PolicyName": f"{ENDPOINT}-invocations",
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": DIMENSION,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": ANY,
        },
    )

    sagemaker.update_endpoint(session, ENDPOINT, described("InService"), NEW, Reporter())


# --------------------------------------------------------------------------- checks before anything is created


def quotas_answer(value: float, instance_type: str = "ml.m5.large") -> dict:
    return {
        "Quotas": [
            {
                "ServiceCode": "sagemaker",
                "QuotaCode": "L-1E9C780D",
                "QuotaName": f"{instance_type} for endpoint usage",
                "Value": value,
                "Adjustable": True,
                "GlobalQuota": False,
            }
        ]
    }


def test_a_zero_instance_quota_is_refused_with_what_to_do(session, stubs):
    stubs["service-quotas"].add_response("list_service_quotas", quotas_answer(0.0), {"ServiceCode": "sagemaker"})

    with pytest.raises(sagemaker.QuotaTooLow) as refusal:
        sagemaker.check_instance_quota(session, Hosting())

    message = str(refusal.value)
    assert "ml.m5.large for endpoint usage" in message and "nothing was created" in message
    assert f"https://{REGION}.console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas/L-1E9C780D" in message
    assert "--serverless" in message and "--instance-type" in message


def test_a_quota_that_fits_is_a_line_of_the_plan(session, stubs):
    stubs["service-quotas"].add_response("list_service_quotas", quotas_answer(2.0), {"ServiceCode": "sagemaker"})
    line = sagemaker.check_instance_quota(session, Hosting())
    assert "ml.m5.large for endpoint usage" in line and "2" in line


def test_a_quota_that_cannot_be_read_does_not_block_the_deploy(session, stubs):
    stubs["service-quotas"].add_client_error("list_service_quotas", "AccessDeniedException", "not authorized", 400)
    assert "could not be read" in sagemaker.check_instance_quota(session, Hosting())


def test_create_endpoint_refused_for_the_quota_says_what_to_do(session, stubs):
    message = (
        "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances, with current "
        "utilization of 0 Instances and a request delta of 1 Instances."
    )
    stubs["sagemaker"].add_client_error("create_endpoint", "ResourceLimitExceeded", message, 400)
    stubs["sagemaker"].add_response("describe_endpoint_config", config_of(NEW), {"EndpointConfigName": NEW})

    with pytest.raises(sagemaker.QuotaTooLow) as refusal:
        sagemaker.create_endpoint(session, ENDPOINT, NEW, {"l2c:stack": "iris"})
    assert message in str(refusal.value) and "--serverless" in str(refusal.value)


def test_a_region_without_the_image_is_refused_before_anything_is_written(session):
    session.region = "xx-nowhere-1"  # no AWS call may come before the refusal: none is stubbed
    with pytest.raises(CloudError) as refusal:
        plan.check_before_creating("iris", session, plan.DeployOptions())
    message = str(refusal.value)
    assert "xx-nowhere-1" in message and "3.2-0" in message
    assert "supported regions:" in message and "us-east-1" in message and "eu-west-1" in message
    assert "\n" not in message  # one line


def test_instance_to_serverless_on_an_existing_endpoint_is_refused_up_front(session, stubs):
    expect_describe(stubs, described("InService"))
    stubs["sagemaker"].add_response("describe_endpoint_config", config_of(OLD), {"EndpointConfigName": OLD})

    with pytest.raises(CloudError, match=r"cannot update it to serverless.*l2c destroy iris"):
        sagemaker.check_hosting_change(session, ENDPOINT, Hosting(serverless_memory_mb=2048))


def test_serverless_to_instances_on_an_existing_endpoint_is_refused_up_front(session, stubs):
    expect_describe(stubs, described("InService"))
    stubs["sagemaker"].add_response(
        "describe_endpoint_config", config_of(OLD, serverless=True), {"EndpointConfigName": OLD}
    )

    with pytest.raises(CloudError, match=r"runs on serverless; SageMaker cannot update it to instances"):
        sagemaker.check_hosting_change(session, ENDPOINT, Hosting())


def simulated(decisions: dict[str, str], resource: str) -> dict:
    return {
        "EvaluationResults": [
            {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision}
            for action, decision in decisions.items()
        ],
        "IsTruncated": False,
    }


NOTEBOOK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/AmazonSageMaker-ExecutionRole-1"


def expect_no_bucket_yet(stubs) -> None:
    """Neither l2c's account-regional bucket nor one an earlier l2c made under the global name exists."""
    for name in (f"l2c-{ACCOUNT}-{REGION}-an", f"l2c-{ACCOUNT}-{REGION}"):
        stubs["s3"].add_client_error(
            "head_bucket", "404", "Not Found", 404, expected_params={"Bucket": name, "ExpectedBucketOwner": ACCOUNT}
        )


def test_a_notebook_role_that_cannot_read_the_artifact_is_refused_with_the_permissions_it_needs(session, stubs):
    bucket = f"l2c-{ACCOUNT}-{REGION}-an"
    expect_no_bucket_yet(stubs)
    artifact = f"arn:aws:s3:::{bucket}/iris/aaaaaaaaaaaa/model.tar.gz"
    stubs["iam"].add_response(
        "simulate_principal_policy",
        simulated({"s3:GetObject": "implicitDeny"}, artifact),
        {
            "PolicySourceArn": NOTEBOOK_ROLE,
            "ActionNames": ["s3:GetObject"],
            "ResourceArns": [artifact],
        },
    )
    stubs["iam"].add_response(
        "simulate_principal_policy",
        simulated(dict.fromkeys(plan.PULL_IMAGE, "allowed"), "*"),
        {
            "PolicySourceArn": NOTEBOOK_ROLE,
            "ActionNames": list(plan.PULL_IMAGE),
            "ResourceArns": [ANY],
        },
    )
    image = container.image_uri(REGION)

    with pytest.raises(CloudError) as refusal:
        plan._check_execution_role(session, "iris", "aaaaaaaaaaaa", NOTEBOOK_ROLE, image)

    message = str(refusal.value)
    assert "may not s3:GetObject" in message and "nothing was created" in message
    assert f"s3:GetObject on arn:aws:s3:::{bucket}/iris/*" in message
    assert "ecr:BatchGetImage" in message and "'sagemaker' in their name" in message


def test_with_a_given_role_a_caller_who_may_not_create_roles_is_told_to_pass_the_function_role(session, stubs):
    caller = f"arn:aws:sts::{ACCOUNT}:assumed-role/AmazonSageMaker-ExecutionRole-1/SageMaker"
    stubs["sts"].add_response(
        "get_caller_identity", {"UserId": "AROAEXAMPLE:SageMaker", "Account": ACCOUNT, "Arn": caller}
    )
    stubs["iam"].add_response(
        "get_role",
        {
            "Role": {
                "Path": "/service-role/",
                "RoleName": "AmazonSageMaker-ExecutionRole-1",
                "RoleId": "AROAEXAMPLE0000000000",
                "Arn": NOTEBOOK_ROLE,
                "CreateDate": "2026-11-25T00:00:00Z",
            }
        },
        {"RoleName": "AmazonSageMaker-ExecutionRole-1"},
    )
    stubs["iam"].add_response(
        "simulate_principal_policy",
        simulated(dict.fromkeys(plan.CREATE_ROLE, "implicitDeny"), "*"),
        {
            "PolicySourceArn": NOTEBOOK_ROLE,
            "ActionNames": list(plan.CREATE_ROLE),
            "ResourceArns": [ANY],
        },
    )

    with pytest.raises(CloudError) as refusal:
        plan._check_may_create_function_role(session, "iris")

    message = str(refusal.value)
    assert "iam:CreateRole" in message and "--lambda-role-arn" in message and "nothing was created" in message
    assert f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/l2c-iris" in message


def test_an_update_beyond_the_quota_says_what_to_do_and_leaves_the_endpoint_serving(session, stubs):
    message = (
        "The account-level service limit 'ml.m5.large for endpoint usage' is 1 Instances, with current "
        "utilization of 1 Instances and a request delta of 1 Instances."
    )
    expect_target(stubs, None)
    stubs["sagemaker"].add_client_error("update_endpoint", "ResourceLimitExceeded", message, 400)
    stubs["sagemaker"].add_response("describe_endpoint_config", config_of(NEW), {"EndpointConfigName": NEW})

    with pytest.raises(sagemaker.QuotaTooLow) as refusal:
        sagemaker.update_endpoint(session, ENDPOINT, described("InService"), NEW, Reporter())
    assert message in str(refusal.value) and "Service Quotas console" in str(refusal.value)


def test_delete_refused_by_an_operation_that_started_meanwhile_waits_it_out_and_deletes(session, stubs):
    expect_describe(stubs, described("InService"))
    stubs["sagemaker"].add_client_error(
        "delete_endpoint", "ValidationException", f'Cannot update in-progress endpoint "{ARN}".'
    )
    expect_describe(stubs, described("SystemUpdating"), described("InService"))
    stubs["sagemaker"].add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    expect_describe(stubs, None)

    assert sagemaker.delete_endpoint(session, ENDPOINT, Reporter()) is True


# --------------------------------------------------------------------------- CORS: what deploy creates on API Gateway

API, RESOURCE_ID, ORIGIN = "a1b2c3d4e5", "r1s2t3", "https://predictions.example.com"
WHERE = {"restApiId": API, "resourceId": RESOURCE_ID, "httpMethod": "OPTIONS"}
PREFLIGHT_HEADERS = {
    "method.response.header.Access-Control-Allow-Origin": f"'{ORIGIN}'",
    "method.response.header.Access-Control-Allow-Headers": "'Content-Type,X-Api-Key,Authorization,X-Amz-Date,X-Amz-Security-Token'",
    "method.response.header.Access-Control-Allow-Methods": "'OPTIONS,POST'",
    "method.response.header.Access-Control-Max-Age": "'600'",
}
ERROR_HEADERS = {
    "gatewayresponse.header.Access-Control-Allow-Origin": f"'{ORIGIN}'",
    "gatewayresponse.header.Access-Control-Allow-Headers": "'Content-Type,X-Api-Key,Authorization,X-Amz-Date,X-Amz-Security-Token'",
}
ERROR_TEMPLATE = {"application/json": '{"message": $context.error.messageString}'}


def aws_gateway_responses(**customised: dict) -> dict:
    """GetGatewayResponses as AWS answers it: every type, the ones not customised marked defaultResponse
    (API reference, GetGatewayResponses and GatewayResponse); a few types stand for all of them."""
    defaults = {"DEFAULT_4XX": None, "DEFAULT_5XX": None, "INVALID_API_KEY": "403", "THROTTLED": "429"}
    items = []
    for response_type, status in defaults.items():
        item = customised.get(response_type) or {
            "responseType": response_type,
            "responseParameters": {},
            "responseTemplates": {"application/json": '{"message":$context.error.messageString}'},
            "defaultResponse": True,
        }
        if status and "statusCode" not in item:
            item = {**item, "statusCode": status}
        items.append(item)
    return {"items": items}


def ours(response_type: str, origin: str = ORIGIN) -> dict:
    headers = {name: value.replace(ORIGIN, origin) for name, value in ERROR_HEADERS.items()}
    return {
        "responseType": response_type,
        "responseParameters": headers,
        "responseTemplates": ERROR_TEMPLATE,
        "defaultResponse": False,
    }


def preflight_method(origin: str = ORIGIN) -> dict:
    """GetMethod of the OPTIONS deploy makes, as AWS answers it."""
    headers = {name: value.replace(ORIGIN, origin) for name, value in PREFLIGHT_HEADERS.items()}
    return {
        "httpMethod": "OPTIONS",
        "authorizationType": "NONE",
        "apiKeyRequired": False,
        "methodResponses": {"200": {"statusCode": "200", "responseParameters": dict.fromkeys(headers, False)}},
        "methodIntegration": {
            "type": "MOCK",
            "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "passthroughBehavior": "NEVER",
            "timeoutInMillis": 29000,
            "cacheNamespace": RESOURCE_ID,
            "cacheKeyParameters": [],
            "integrationResponses": {
                "200": {
                    "statusCode": "200",
                    "responseParameters": headers,
                    "responseTemplates": {"application/json": ""},
                }
            },
        },
    }


def expect_preflight_created(stubs) -> None:
    gateway = stubs["apigateway"]
    gateway.add_response(
        "put_method", {"httpMethod": "OPTIONS"}, {**WHERE, "authorizationType": "NONE", "apiKeyRequired": False}
    )
    gateway.add_response(
        "put_method_response",
        {"statusCode": "200"},
        {
            **WHERE,
            "statusCode": "200",
            "responseParameters": dict.fromkeys(PREFLIGHT_HEADERS, False),
        },
    )
    gateway.add_response(
        "put_integration",
        {"type": "MOCK"},
        {
            **WHERE,
            "type": "MOCK",
            "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "passthroughBehavior": "NEVER",
        },
    )
    gateway.add_response(
        "put_integration_response",
        {"statusCode": "200"},
        {
            **WHERE,
            "statusCode": "200",
            "responseParameters": PREFLIGHT_HEADERS,
            "responseTemplates": {"application/json": ""},
        },
    )


def expect_error_headers_put(stubs) -> None:
    for response_type in ("DEFAULT_4XX", "DEFAULT_5XX"):
        stubs["apigateway"].add_response(
            "put_gateway_response",
            ours(response_type),
            {
                "restApiId": API,
                "responseType": response_type,
                "responseParameters": ERROR_HEADERS,
                "responseTemplates": ERROR_TEMPLATE,  # no statusCode: each error keeps its own
            },
        )


def cors_stack(session, origin: str | None) -> stack.Stack:
    return stack.Stack(
        name="iris",
        model_dir=Path("models/iris"),
        card={},
        session=session,
        options=plan.DeployOptions(cors_origin=origin or apigateway.NO_CORS),
        reporter=Reporter(),
        cors_origin=origin,
    )


def expect_routes(stubs, *paths: str) -> None:
    items = [{"id": "root0", "path": "/"}] + [{"id": f"id{index}", "path": path} for index, path in enumerate(paths)]
    stubs["apigateway"].add_response("get_resources", {"items": items}, {"restApiId": API, "embed": ["methods"]})


def test_a_first_deploy_makes_the_preflight_and_the_error_headers_of_the_consoles_enable_cors(session, stubs):
    gateway = stubs["apigateway"]
    gateway.add_response("get_gateway_responses", aws_gateway_responses(), {"restApiId": API})
    expect_routes(stubs, "/irisprediction")
    gateway.add_client_error(
        "get_method", "NotFoundException", "Invalid Method identifier specified", 404, expected_params=WHERE
    )
    expect_preflight_created(stubs)
    gateway.add_response("get_gateway_responses", aws_gateway_responses(), {"restApiId": API})
    expect_error_headers_put(stubs)
    built = cors_stack(session, ORIGIN)

    cors.ensure_cors(built, API, RESOURCE_ID, "irisprediction")

    assert built.changes == [
        f"OPTIONS /irisprediction (CORS preflight for {ORIGIN})",
        f"CORS headers for {ORIGIN} on the API's errors",
    ]
    assert not any(line.startswith("warning") for line in built.reporter.lines)


def test_a_second_deploy_with_the_same_origin_only_reads(session, stubs):
    gateway = stubs["apigateway"]
    present = aws_gateway_responses(DEFAULT_4XX=ours("DEFAULT_4XX"), DEFAULT_5XX=ours("DEFAULT_5XX"))
    gateway.add_response("get_gateway_responses", present, {"restApiId": API})
    expect_routes(stubs, "/irisprediction", "/housepriceprediction")
    gateway.add_response("get_method", preflight_method(), WHERE)
    gateway.add_response("get_gateway_responses", present, {"restApiId": API})
    built = cors_stack(session, ORIGIN)

    cors.ensure_cors(built, API, RESOURCE_ID, "irisprediction")

    assert built.changes == [] and not any(line.startswith("warning") for line in built.reporter.lines)


def test_a_new_origin_replaces_the_preflight_and_warns_of_the_other_routes(session, stubs):
    gateway = stubs["apigateway"]
    old = "https://old.example.com"
    present = aws_gateway_responses(DEFAULT_4XX=ours("DEFAULT_4XX", old), DEFAULT_5XX=ours("DEFAULT_5XX", old))
    gateway.add_response("get_gateway_responses", present, {"restApiId": API})
    expect_routes(stubs, "/irisprediction", "/housepriceprediction")
    gateway.add_response("get_method", preflight_method(old), WHERE)
    gateway.add_response("delete_method", {}, WHERE)
    expect_preflight_created(stubs)
    gateway.add_response("get_gateway_responses", present, {"restApiId": API})
    expect_error_headers_put(stubs)
    built = cors_stack(session, ORIGIN)

    cors.ensure_cors(built, API, RESOURCE_ID, "irisprediction")

    assert len(built.changes) == 2
    warning = next(line for line in built.reporter.lines if line.startswith("warning"))
    assert old in warning and ORIGIN in warning and "/housepriceprediction" in warning


def test_no_origin_removes_the_preflight_and_only_l2cs_error_headers(session, stubs):
    gateway = stubs["apigateway"]
    present = aws_gateway_responses(DEFAULT_4XX=ours("DEFAULT_4XX"))  # DEFAULT_5XX is AWS's own default
    gateway.add_response("get_gateway_responses", present, {"restApiId": API})
    expect_routes(stubs, "/irisprediction")
    gateway.add_response("delete_method", {}, WHERE)
    gateway.add_response("get_gateway_responses", present, {"restApiId": API})
    gateway.add_response("delete_gateway_response", {}, {"restApiId": API, "responseType": "DEFAULT_4XX"})
    built = cors_stack(session, None)

    cors.ensure_cors(built, API, RESOURCE_ID, "irisprediction")

    assert built.changes == ["OPTIONS /irisprediction removed (no CORS)", "CORS headers removed from the API's errors"]


def test_the_fingerprint_changes_with_the_preflights_origin_and_the_error_headers(session, stubs):
    gateway = stubs["apigateway"]

    def fingerprint(origin: str, responses: dict) -> str:
        method = preflight_method(origin)
        items = [
            {"id": "root0", "path": "/"},
            {"id": RESOURCE_ID, "path": "/irisprediction", "resourceMethods": {"OPTIONS": method}},
        ]
        gateway.add_response("get_resources", {"items": items}, {"restApiId": API, "embed": ["methods"]})
        gateway.add_response("get_gateway_responses", responses, {"restApiId": API})
        return apigateway.routes_fingerprint(session, API)

    plain = fingerprint(ORIGIN, aws_gateway_responses())
    assert fingerprint(ORIGIN, aws_gateway_responses()) == plain  # AWS's listed defaults are not customisations
    assert fingerprint("https://other.example.com", aws_gateway_responses()) != plain
    assert fingerprint(ORIGIN, aws_gateway_responses(DEFAULT_4XX=ours("DEFAULT_4XX"))) != plain


def test_the_function_answers_for_the_origin_and_for_none_sends_no_cors_header():
    card = {"feature_names": ["a", "b"], "class_labels": []}
    assert functions.environment_from_card(card, "l2c-x", cors_origin=ORIGIN)["CORS_ALLOW_ORIGIN"] == ORIGIN
    assert functions.environment_from_card(card, "l2c-x")["CORS_ALLOW_ORIGIN"] == ""


@pytest.mark.parametrize(
    "given, expected",
    [
        (None, None),  # AWS: which site may call an API that bills you is yours to name
        (ORIGIN, ORIGIN),
        ("*", "*"),
        (apigateway.NO_CORS, None),
    ],
)
def test_on_aws_there_is_no_cors_unless_an_origin_is_given(session, given, expected):
    assert cors.cors_origin_for(session, plan.DeployOptions(cors_origin=given)) == expected


def test_locally_the_default_origin_is_the_edges_where_the_pages_are_served(session):
    local = CloudSession(
        boto=session.boto,
        region=REGION,
        account=ACCOUNT,
        partition="aws",
        target="local",
        endpoints={"*": "http://127.0.0.1:4566"},
    )
    assert cors.cors_origin_for(local, plan.DeployOptions()) == "http://127.0.0.1:4566"
    assert cors.cors_origin_for(local, plan.DeployOptions(cors_origin=apigateway.NO_CORS)) is None
    assert cors.cors_origin_for(local, plan.DeployOptions(cors_origin=ORIGIN)) == ORIGIN


def test_the_plan_says_what_cors_the_api_gets():
    assert cors.cors_plan_line(None).startswith("no CORS") and "--cors-origin" in cors.cors_plan_line(None)
    assert "ANY origin" in cors.cors_plan_line("*")
    assert cors.cors_plan_line(ORIGIN).startswith(f"CORS for {ORIGIN}: an OPTIONS preflight (no key)")


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",
        "http://127.0.0.1:4566",
        "http://localhost:8000",
        "http://[::1]:8080",
        "https://a-b.example.co.uk",
        "chrome-extension://abcdefghijklmnop",
        "*",
        "none",
    ],
)
def test_an_origin_as_a_browser_sends_it_is_accepted(origin):
    assert apigateway.check_cors_origin(origin) == origin
    plan.check_options(plan.DeployOptions(cors_origin=origin))


@pytest.mark.parametrize(
    "origin, says",
    [
        ("https://example.com/", "has a path: an origin is scheme://host[:port] only, here https://example.com"),
        ("https://example.com/app/index.html", "has a path"),
        ("https://example.com?x=1", "has a path"),
        ("https://Example.com", "browsers send origins in lower case (https://example.com)"),
        ("https://example.com:443", "browsers send this origin as https://example.com"),
        ("http://example.com:80", "browsers send this origin as http://example.com"),
        ("http://127.0.0.1:99999", "port 99999 is out of range"),
        ("example.com", "is not an origin: give scheme://host[:port]"),
        ("https://user@example.com", "is not an origin"),
        ("https://exa'mple.com", "is not an origin"),
        ("", "is not an origin"),
        ("null", "pages opened from a file"),
    ],
)
def test_anything_else_is_refused_in_one_line_before_any_aws_call(origin, says):
    with pytest.raises(CloudError) as refusal:
        plan.check_options(plan.DeployOptions(cors_origin=origin))
    message = str(refusal.value)
    assert says in message and "\n" not in message


def test_the_cli_refuses_a_bad_origin_before_it_looks_for_a_cloud(monkeypatch):
    from typer.testing import CliRunner

    from l2c import cli

    def no_cloud(*args):
        raise AssertionError("the origin must be refused before any connection")

    monkeypatch.setattr(cli, "_connect", no_cloud)
    result = CliRunner().invoke(cli.app, ["deploy", "iris", "--aws", "--cors-origin", "https://example.com/app"])
    assert result.exit_code == 1
    assert "--cors-origin https://example.com/app has a path" in result.output
    assert "Traceback" not in result.output
