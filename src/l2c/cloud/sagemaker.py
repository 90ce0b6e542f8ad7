"""SageMaker hosting: model -> endpoint configuration -> endpoint, and the way back.

Names carry the model version (the booster's digest), so a new model is a new SageMaker model
and a new endpoint configuration, and the endpoint (whose name never changes: the Lambda
function calls it by name) is moved to it with ``UpdateEndpoint``, the way AWS keeps serving
during the switch. A service without UpdateEndpoint (moto) gets the equivalent: the endpoint is
deleted and created again under the same name on the new configuration.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

from botocore.exceptions import ClientError, WaiterError

from l2c.cloud import tags
from l2c.cloud.progress import Reporter
from l2c.cloud.session import CloudError, CloudSession, delete_if_present

VARIANT_NAME = "AllTraffic"
# IAM is eventually consistent: a role created a second ago may not be assumable yet.
ROLE_PROPAGATION_ATTEMPTS = 10
ROLE_PROPAGATION_DELAY_S = 3.0
IN_SERVICE_POLL_S = 15
IN_SERVICE_MAX_POLLS = 120  # half an hour


class EndpointFailed(CloudError):
    """The endpoint went to Failed; the message holds SageMaker's reason and where the logs are."""


@dataclass(frozen=True)
class Hosting:
    """How the endpoint runs: instances (billed per hour while the endpoint exists) or serverless."""

    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int = 5

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb is not None

    def production_variant(self, model_name: str) -> dict:
        variant = {"VariantName": VARIANT_NAME, "ModelName": model_name, "InitialVariantWeight": 1.0}
        if self.serverless:
            variant["ServerlessConfig"] = {
                "MemorySizeInMB": self.serverless_memory_mb,
                "MaxConcurrency": self.serverless_max_concurrency,
            }
        else:
            variant["InstanceType"] = self.instance_type
            variant["InitialInstanceCount"] = self.instance_count
        return variant

    def digest(self) -> str:
        """Six hex digits naming these settings in the endpoint config's name."""
        if self.serverless:
            settings = {"memory": self.serverless_memory_mb, "concurrency": self.serverless_max_concurrency}
        else:
            settings = {"instance_type": self.instance_type, "instance_count": self.instance_count}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]

    def describe(self) -> str:
        if self.serverless:
            return (
                f"serverless, {self.serverless_memory_mb} MB, up to {self.serverless_max_concurrency} "
                "concurrent requests: billed per request and per second of compute"
            )
        return (
            f"{self.instance_count} x {self.instance_type}: billed per instance-hour for as long "
            "as the endpoint exists, used or not"
        )


def model_name(stack: str, version: str) -> str:
    return f"l2c-{stack}-{version}"


def endpoint_config_name(stack: str, version: str, hosting: Hosting) -> str:
    return f"l2c-{stack}-{version}-{hosting.digest()}"


def endpoint_name(stack: str) -> str:
    return f"l2c-{stack}"


def logs_location(session: CloudSession, endpoint: str) -> str:
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    console = (
        f"https://{session.region}.console.aws.amazon.com/cloudwatch/home?region={session.region}"
        f"#logsV2:log-groups/log-group/{quote(quote(group, safe=''), safe='').replace('%', '$')}"
    )
    return f"CloudWatch log group {group} ({console})"


# --------------------------------------------------------------------------- create


def ensure_model(
    session: CloudSession, name: str, image: str, model_data_url: str, role_arn: str, wanted_tags: dict
) -> bool:
    """Create the SageMaker model unless it exists; True when it was created."""
    sm = session.client("sagemaker")
    try:
        arn = sm.describe_model(ModelName=name)["ModelArn"]
        created = False
    except ClientError as err:
        if not _is_missing(err):
            raise
        arn = _retry_while_role_propagates(
            lambda: sm.create_model(
                ModelName=name,
                ExecutionRoleArn=role_arn,
                PrimaryContainer={"Image": image, "ModelDataUrl": model_data_url},
                Tags=tags.as_tag_list(wanted_tags),
            )["ModelArn"]
        )
        created = True
    ensure_tags(session, arn, wanted_tags)
    return created


def ensure_endpoint_config(
    session: CloudSession, name: str, model: str, hosting: Hosting, wanted_tags: dict
) -> bool:
    sm = session.client("sagemaker")
    try:
        arn = sm.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"]
        created = False
    except ClientError as err:
        if not _is_missing(err):
            raise
        arn = sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[hosting.production_variant(model)],
            Tags=tags.as_tag_list(wanted_tags),
        )["EndpointConfigArn"]
        created = True
    ensure_tags(session, arn, wanted_tags)
    return created


def ensure_tags(session: CloudSession, arn: str, wanted_tags: dict) -> None:
    # Tags given at creation are not kept by every SageMaker implementation (moto drops them
    # for models and configurations), so they are checked and added afterwards.
    sm = session.client("sagemaker")
    present = tags.from_tag_list(sm.list_tags(ResourceArn=arn).get("Tags"))
    missing = tags.missing_tags(wanted_tags, present)
    if missing:
        sm.add_tags(ResourceArn=arn, Tags=tags.as_tag_list(missing))


def ensure_endpoint(
    session: CloudSession, endpoint: str, config: str, wanted_tags: dict, reporter: Reporter
) -> str:
    """Bring the endpoint onto ``config``: 'created', 'unchanged', 'updated' or 'replaced'."""
    current = describe_endpoint(session, endpoint)
    if current is None:
        session.client("sagemaker").create_endpoint(
            EndpointName=endpoint, EndpointConfigName=config, Tags=tags.as_tag_list(wanted_tags)
        )
        wait_in_service(session, endpoint, reporter, "creating")
        return "created"
    if current["EndpointStatus"] == "Failed":
        raise _failure(session, endpoint, current)
    if current["EndpointStatus"] != "InService":
        wait_in_service(session, endpoint, reporter, current["EndpointStatus"].lower())
    ensure_tags(session, current["EndpointArn"], wanted_tags)
    if current["EndpointConfigName"] == config:
        return "unchanged"
    change = _update_or_replace(session, endpoint, config, wanted_tags)
    wait_in_service(session, endpoint, reporter, "updating" if change == "updated" else "re-creating")
    return change


def _update_or_replace(session: CloudSession, endpoint: str, config: str, wanted_tags: dict) -> str:
    # One attempt: an unimplemented operation must not be retried with back-off five times.
    sm_once = session.client("sagemaker", attempts=1)
    try:
        sm_once.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        return "updated"
    except ClientError as err:
        if not _is_unimplemented(err):
            raise
    delete_endpoint(session, endpoint)
    session.client("sagemaker").create_endpoint(
        EndpointName=endpoint, EndpointConfigName=config, Tags=tags.as_tag_list(wanted_tags)
    )
    return "replaced"


def _is_unimplemented(err: ClientError) -> bool:
    # SageMaker names every error ("ValidationException", "ThrottlingException", ...). An
    # answer whose code is a bare HTTP status did not come from an implementation of the
    # operation (moto answers UpdateEndpoint with an HTML 500 page).
    code = str(err.response.get("Error", {}).get("Code", ""))
    return code.isdigit() or code in {"NotImplemented", "NotImplementedException"}


def describe_endpoint(session: CloudSession, endpoint: str) -> dict | None:
    try:
        return session.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    except ClientError as err:
        if _is_missing(err):
            return None
        raise


def wait_in_service(session: CloudSession, endpoint: str, reporter: Reporter, doing: str) -> None:
    waiter = session.client("sagemaker").get_waiter("endpoint_in_service")
    message = f"endpoint {endpoint} {doing} (on AWS this takes 5-10 minutes)"
    with reporter.waiting(message):
        try:
            waiter.wait(
                EndpointName=endpoint,
                WaiterConfig={"Delay": IN_SERVICE_POLL_S, "MaxAttempts": IN_SERVICE_MAX_POLLS},
            )
        except WaiterError:
            current = describe_endpoint(session, endpoint) or {}
            raise _failure(session, endpoint, current) from None


def _failure(session: CloudSession, endpoint: str, description: dict) -> EndpointFailed:
    status = description.get("EndpointStatus", "missing")
    reason = description.get("FailureReason") or "no reason given"
    return EndpointFailed(
        f"endpoint {endpoint} is {status}: {reason}\n"
        f"  logs: {logs_location(session, endpoint)}\n"
        f"  nothing else was changed; remove what was created with `l2c destroy`"
    )


def _retry_while_role_propagates(create):
    for attempt in range(ROLE_PROPAGATION_ATTEMPTS):
        try:
            return create()
        except ClientError as err:
            message = err.response.get("Error", {}).get("Message", "")
            role_not_ready = "assume" in message.lower()
            if not role_not_ready or attempt == ROLE_PROPAGATION_ATTEMPTS - 1:
                raise
            time.sleep(ROLE_PROPAGATION_DELAY_S)


def register_autoscaling(session: CloudSession, endpoint: str, minimum: int, maximum: int) -> None:
    """Target tracking on invocations per instance (70/minute, AWS's suggested starting point)."""
    client = session.client("application-autoscaling")
    resource = _scalable_resource(endpoint)
    client.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=minimum,
        MaxCapacity=maximum,
    )
    client.put_scaling_policy(
        PolicyName=f"{endpoint}-invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    )


def _scalable_resource(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT_NAME}"


def deregister_autoscaling(session: CloudSession, endpoint: str) -> bool:
    client = session.client("application-autoscaling")
    resource = _scalable_resource(endpoint)
    targets = client.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
    if not targets["ScalableTargets"]:
        return False
    client.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension="sagemaker:variant:DesiredInstanceCount"
    )
    return True


def autoscaled_endpoints(session: CloudSession) -> list[str]:
    client = session.client("application-autoscaling")
    names = []
    for page in client.get_paginator("describe_scalable_targets").paginate(ServiceNamespace="sagemaker"):
        for target in page["ScalableTargets"]:
            parts = target["ResourceId"].split("/")
            if len(parts) >= 2 and parts[1].startswith("l2c-"):
                names.append(parts[1])
    return names


# --------------------------------------------------------------------------- delete


def delete_endpoint(session: CloudSession, endpoint: str) -> bool:
    sm = session.client("sagemaker")
    if not delete_if_present(lambda: sm.delete_endpoint(EndpointName=endpoint), _is_missing):
        return False
    sm.get_waiter("endpoint_deleted").wait(
        EndpointName=endpoint, WaiterConfig={"Delay": IN_SERVICE_POLL_S, "MaxAttempts": IN_SERVICE_MAX_POLLS}
    )
    return True


def delete_endpoint_config(session: CloudSession, name: str) -> bool:
    return delete_if_present(
        lambda: session.client("sagemaker").delete_endpoint_config(EndpointConfigName=name), _is_missing
    )


def delete_model(session: CloudSession, name: str) -> bool:
    return delete_if_present(lambda: session.client("sagemaker").delete_model(ModelName=name), _is_missing)


def _is_missing(err: ClientError) -> bool:
    error = err.response.get("Error", {})
    message = error.get("Message", "")
    return error.get("Code") in {"ValidationException", "ResourceNotFound"} and (
        "Could not find" in message or "does not exist" in message or "not found" in message.lower()
    )


# --------------------------------------------------------------------------- list


def list_tagged(session: CloudSession, kind: str) -> list[dict]:
    """Models, endpoint configs or endpoints named ``l2c-*``, each with its tags."""
    sm = session.client("sagemaker")
    operation, key, arn_key = {
        "model": ("list_models", "Models", "ModelArn"),
        "endpoint-config": ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigArn"),
        "endpoint": ("list_endpoints", "Endpoints", "EndpointArn"),
    }[kind]
    name_key = {"model": "ModelName", "endpoint-config": "EndpointConfigName", "endpoint": "EndpointName"}[kind]
    found = []
    for page in sm.get_paginator(operation).paginate(NameContains="l2c-"):
        for item in page[key]:
            if not item[name_key].startswith("l2c-"):
                continue
            item_tags = tags.from_tag_list(sm.list_tags(ResourceArn=item[arn_key]).get("Tags"))
            found.append({"name": item[name_key], "arn": item[arn_key], "tags": item_tags, "item": item})
    return found
