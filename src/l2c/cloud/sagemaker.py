"""SageMaker hosting: model -> endpoint configuration -> endpoint, and the way back.

Names carry the model version (the booster's digest), so a new model is a new SageMaker model
and a new endpoint configuration, and the endpoint (whose name never changes: the Lambda
function calls it by name) is moved to it with ``UpdateEndpoint``, the way AWS keeps serving
during the switch. An update SageMaker rolls back leaves the endpoint InService on the old
configuration: that is reported as a failure, and nothing the endpoint runs on is deleted. The
endpoint is never deleted and re-created to work around a refused update: that would take the
production API down.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from l2c.cloud import tags
from l2c.cloud.progress import Reporter
from l2c.cloud.retries import retry_while_role_propagates
from l2c.cloud.session import CloudError, CloudSession, delete_if_present, get_if_present

VARIANT_NAME = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# botocore waiters-2.json: EndpointInService polls every 30 s, 120 times; EndpointDeleted 60 times.
IN_SERVICE_POLL_S = 30
IN_SERVICE_MAX_POLLS = 120
DELETED_POLL_S = 30
DELETED_MAX_POLLS = 60
# While an operation is in progress SageMaker refuses DeleteEndpoint and UpdateEndpoint
# (botocore's EndpointStatus enum; amazon-sagemaker-examples PR #3188).
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
# The quota that caps instances behind endpoints, per instance type (Service Quotas, "sagemaker").
QUOTA_NAME = "{instance_type} for endpoint usage"
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
MIN_CONCURRENCY, MAX_CONCURRENCY = 1, 200


class EndpointFailed(CloudError):
    """The endpoint went to Failed; the message holds SageMaker's reason and where the logs are."""


class UpdateRolledBack(CloudError):
    """SageMaker rolled an update back: the endpoint serves the old configuration again."""


class QuotaTooLow(CloudError):
    """The account may not run this many instances of this type behind endpoints."""


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

    def check(self) -> None:
        """Refuse settings CreateEndpointConfig would refuse, before anything is created (botocore's
        sagemaker model: ServerlessMemorySizeInMB 1024-6144 "in 1 GB increments",
        ServerlessMaxConcurrency 1-200; ProductionVariant InitialInstanceCount at least 1)."""
        if self.serverless:
            memory = self.serverless_memory_mb
            if memory not in SERVERLESS_MEMORY_MB:
                raise CloudError(
                    f"--memory-mb {memory} is not a serverless memory size: use one of "
                    f"{', '.join(map(str, SERVERLESS_MEMORY_MB))} (1 GB steps)"
                )
            if not MIN_CONCURRENCY <= self.serverless_max_concurrency <= MAX_CONCURRENCY:
                raise CloudError(
                    f"--max-concurrency {self.serverless_max_concurrency} is out of range: serverless endpoints take "
                    f"{MIN_CONCURRENCY} to {MAX_CONCURRENCY} concurrent requests"
                )
        elif self.instance_count < 1:
            raise CloudError(f"--instance-count {self.instance_count}: an endpoint needs at least 1 instance")

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


def log_group_name(endpoint: str) -> str:
    """Where SageMaker writes the endpoint's container lines (it creates the group itself on first write)."""
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def logs_location(session: CloudSession, endpoint: str) -> str:
    group = log_group_name(endpoint)
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
    return _describe_or_create(
        session,
        lambda: sm.describe_model(ModelName=name)["ModelArn"],
        lambda: retry_while_role_propagates(
            lambda: sm.create_model(
                ModelName=name,
                ExecutionRoleArn=role_arn,
                PrimaryContainer={"Image": image, "ModelDataUrl": model_data_url},
                Tags=tags.as_tag_list(wanted_tags),
            )["ModelArn"],
            session,
        ),
        wanted_tags,
    )


def ensure_endpoint_config(session: CloudSession, name: str, model: str, hosting: Hosting, wanted_tags: dict) -> bool:
    sm = session.client("sagemaker")
    return _describe_or_create(
        session,
        lambda: sm.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"],
        lambda: sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[hosting.production_variant(model)],
            Tags=tags.as_tag_list(wanted_tags),
        )["EndpointConfigArn"],
        wanted_tags,
    )


def _describe_or_create(session: CloudSession, describe, create, wanted_tags: dict) -> bool:
    """The ARN from ``describe()``, or from ``create()`` when SageMaker says there is none; then
    its tags brought to ``wanted_tags``. True when it was created."""
    try:
        arn, created = describe(), False
    except ClientError as err:
        if not _is_missing(err):
            raise
        arn, created = create(), True
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


def ensure_endpoint(session: CloudSession, endpoint: str, config: str, wanted_tags: dict, reporter: Reporter) -> str:
    """Bring the endpoint onto ``config``: 'created', 'unchanged' or 'updated'.

    An endpoint still busy with an earlier operation (a deploy interrupted during its wait) is
    waited out first: SageMaker refuses to update it meanwhile.
    """
    current = describe_endpoint(session, endpoint)
    if current is not None and current["EndpointStatus"] in BUSY:
        current = wait_settled(session, endpoint, reporter)
    if current is None:
        create_endpoint(session, endpoint, config, wanted_tags)
        wait_in_service(session, endpoint, reporter, "creating")
        return "created"
    if current["EndpointStatus"] != "InService":
        raise _failure(session, endpoint, current)
    ensure_tags(session, current["EndpointArn"], wanted_tags)
    if current["EndpointConfigName"] == config:
        return "unchanged"
    update_endpoint(session, endpoint, current, config, reporter)
    return "updated"


def create_endpoint(session: CloudSession, endpoint: str, config: str, wanted_tags: dict) -> None:
    try:
        session.client("sagemaker").create_endpoint(
            EndpointName=endpoint, EndpointConfigName=config, Tags=tags.as_tag_list(wanted_tags)
        )
    except ClientError as err:
        raise _quota_refusal(session, err, endpoint, config) from None


def _quota_refusal(session: CloudSession, err: ClientError, endpoint: str, config: str) -> Exception:
    """ResourceLimitExceeded as what to do about it; any other error as it is."""
    if err.response.get("Error", {}).get("Code") != "ResourceLimitExceeded":
        return err
    variant = (describe_endpoint_config(session, config) or {"ProductionVariants": [{}]})["ProductionVariants"][0]
    return QuotaTooLow(
        f"SageMaker refused endpoint {endpoint} on {config}: {err.response['Error'].get('Message')}\n"
        + quota_advice(session, variant.get("InstanceType", "?"))
    )


def update_endpoint(session: CloudSession, endpoint: str, current: dict, config: str, reporter: Reporter) -> None:
    """UpdateEndpoint, waited on; fails (keeping the old configuration) if SageMaker rolled it back.

    An autoscaled endpoint keeps the instance count its scaling chose (RetainAllVariantProperties)
    while the instance type stays; a new instance type is refused while a scalable target is
    registered, so the target is taken off for the update and put back afterwards.
    """
    target = scalable_target(session, endpoint)
    retype = target is not None and _instance_type(session, current["EndpointConfigName"]) != _instance_type(
        session, config
    )
    arguments = {"EndpointName": endpoint, "EndpointConfigName": config}
    if target is not None and not retype:
        arguments["RetainAllVariantProperties"] = True
    if retype:
        deregister_autoscaling(session, endpoint)
    try:
        try:
            session.client("sagemaker").update_endpoint(**arguments)
        except ClientError as err:
            # An update runs the new instances next to the old ones: it can exceed a quota the
            # running endpoint fits in. The endpoint keeps serving its current configuration.
            raise _quota_refusal(session, err, endpoint, config) from None
        after = wait_in_service(session, endpoint, reporter, "updating")
    finally:
        if retype:
            register_autoscaling(session, endpoint, target["MinCapacity"], target["MaxCapacity"])
    if after.get("EndpointConfigName") != config:
        raise _rolled_back(session, endpoint, config, after)


def _instance_type(session: CloudSession, config: str) -> str | None:
    """The instance type a configuration asks for; None when serverless or when the config is gone."""
    description = describe_endpoint_config(session, config)
    if description is None:
        return None
    return description["ProductionVariants"][0].get("InstanceType")


def _rolled_back(session: CloudSession, endpoint: str, config: str, description: dict) -> UpdateRolledBack:
    reason = description.get("FailureReason") or "no reason given"
    return UpdateRolledBack(
        f"SageMaker rolled back the update of endpoint {endpoint} to {config}: {reason}\n"
        f"  the endpoint still serves the previous configuration {description.get('EndpointConfigName')}; "
        "it and its model and artifact were kept\n"
        f"  logs: {logs_location(session, endpoint)}"
    )


def describe_endpoint(session: CloudSession, endpoint: str) -> dict | None:
    return get_if_present(lambda: session.client("sagemaker").describe_endpoint(EndpointName=endpoint), _is_missing)


def get_model(session: CloudSession, name: str) -> dict | None:
    return get_if_present(lambda: session.client("sagemaker").describe_model(ModelName=name), _is_missing)


def describe_endpoint_config(session: CloudSession, config: str) -> dict | None:
    return get_if_present(
        lambda: session.client("sagemaker").describe_endpoint_config(EndpointConfigName=config), _is_missing
    )


def hosting_of(session: CloudSession, description: dict) -> str | None:
    """'serverless' or 'instances' for a described endpoint; None when its configuration is gone."""
    config = describe_endpoint_config(session, description.get("EndpointConfigName", ""))
    if config is not None:
        variant = config["ProductionVariants"][0]
    else:
        variants = description.get("ProductionVariants") or [{}]
        variant = variants[0]
        if not variant:
            return None
    serverless = any(
        key in variant for key in ("ServerlessConfig", "CurrentServerlessConfig", "DesiredServerlessConfig")
    )
    return "serverless" if serverless else "instances"


def check_hosting_change(session: CloudSession, endpoint: str, hosting: Hosting) -> None:
    """Refuse instance <-> serverless on an existing endpoint before anything is created:
    UpdateEndpoint does not support it (SageMaker serverless docs: "you can't update an
    instance-based endpoint to a serverless endpoint", and the reverse)."""
    current = describe_endpoint(session, endpoint)
    if current is None:
        return
    running = hosting_of(session, current)
    wanted = "serverless" if hosting.serverless else "instances"
    if running is None or running == wanted:
        return
    raise CloudError(
        f"endpoint {endpoint} runs on {running}; SageMaker cannot update it to {wanted}. "
        f"Destroy the stack first (`l2c destroy {endpoint.removeprefix('l2c-')}`), then deploy again"
        + (" with --serverless" if hosting.serverless else " without --serverless")
    )


# --------------------------------------------------------------------------- waiting


def wait_in_service(session: CloudSession, endpoint: str, reporter: Reporter, doing: str) -> dict:
    """Poll as botocore's EndpointInService waiter does (Failed is a failure); the description."""
    message = f"endpoint {endpoint} {doing} (on AWS this takes 5-10 minutes)"
    with reporter.waiting(message):
        description = _poll(
            session,
            endpoint,
            lambda d: d is None or d["EndpointStatus"] not in BUSY,
            IN_SERVICE_POLL_S,
            IN_SERVICE_MAX_POLLS,
        )
    if description is None or description["EndpointStatus"] != "InService":
        raise _failure(session, endpoint, description or {})
    return description


def wait_settled(session: CloudSession, endpoint: str, reporter: Reporter) -> dict | None:
    """Wait until no operation is in progress on the endpoint; its description, None once gone."""
    current = describe_endpoint(session, endpoint)
    if current is None or current["EndpointStatus"] not in BUSY:
        return current
    with reporter.waiting(f"endpoint {endpoint} is {current['EndpointStatus']}: waiting for SageMaker to finish"):
        return _poll(
            session,
            endpoint,
            lambda d: d is None or d["EndpointStatus"] not in BUSY,
            IN_SERVICE_POLL_S,
            IN_SERVICE_MAX_POLLS,
        )


def _poll(session: CloudSession, endpoint: str, done, delay_s: float, attempts: int) -> dict | None:
    for _ in range(attempts):
        description = describe_endpoint(session, endpoint)
        if done(description):
            return description
        time.sleep(session.poll_seconds(delay_s))
    status = description["EndpointStatus"] if description else "gone"
    raise CloudError(
        f"endpoint {endpoint} is still {status} after {attempts} checks {delay_s:g} s apart; "
        f"see the SageMaker console, then run the same command again"
    )


def _failure(session: CloudSession, endpoint: str, description: dict) -> EndpointFailed:
    status = description.get("EndpointStatus", "missing")
    reason = description.get("FailureReason") or "no reason given"
    stack = endpoint.removeprefix("l2c-")
    return EndpointFailed(
        f"endpoint {endpoint} is {status}: {reason}\n"
        f"  logs: {logs_location(session, endpoint)}\n"
        f"  nothing else was changed; remove what was created with `l2c destroy {stack}`"
    )


# --------------------------------------------------------------------------- quota


def instance_quota(session: CloudSession, instance_type: str) -> dict | None:
    """The account's '<type> for endpoint usage' quota ({"value", "code"}); None if it cannot be read
    (no permission for Service Quotas, or a type it does not list)."""
    wanted = QUOTA_NAME.format(instance_type=instance_type)
    client = session.client("service-quotas")
    try:
        for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
            for page in client.get_paginator(operation).paginate(ServiceCode="sagemaker"):
                for quota in page.get("Quotas", []):
                    if quota.get("QuotaName") == wanted:
                        return {"value": quota.get("Value", 0.0), "code": quota.get("QuotaCode")}
    except (ClientError, BotoCoreError):
        return None
    return None


def quota_console_url(session: CloudSession, code: str | None) -> str:
    base = f"https://{session.region}.console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas"
    return f"{base}/{code}" if code else base


def quota_advice(session: CloudSession, instance_type: str, code: str | None = None) -> str:
    return (
        f"  what to do: request more '{QUOTA_NAME.format(instance_type=instance_type)}' in the Service Quotas "
        f"console ({quota_console_url(session, code)}; approval can take a day), or deploy with --serverless "
        "(billed per request, no instance quota), or pick another --instance-type this account may run"
    )


def check_instance_quota(session: CloudSession, hosting: Hosting) -> str:
    """Refuse (QuotaTooLow) a deploy the account's quota would refuse at CreateEndpoint; else a line for the plan."""
    if hosting.serverless:
        return "serverless endpoints need no instance quota"
    quota = instance_quota(session, hosting.instance_type)
    name = QUOTA_NAME.format(instance_type=hosting.instance_type)
    if quota is None:
        return f"quota '{name}' could not be read (Service Quotas); CreateEndpoint will tell"
    if quota["value"] < hosting.instance_count:
        raise QuotaTooLow(
            f"this account may run {quota['value']:g} x {hosting.instance_type} behind endpoints in "
            f"{session.region} ('{name}'), and this deploy needs {hosting.instance_count}; nothing was created\n"
            + quota_advice(session, hosting.instance_type, quota["code"])
        )
    return f"quota '{name}': {quota['value']:g}, this deploy uses {hosting.instance_count}"


def register_autoscaling(session: CloudSession, endpoint: str, minimum: int, maximum: int) -> None:
    """Target tracking on invocations per instance (70/minute, AWS's suggested starting point)."""
    client = session.client("application-autoscaling")
    resource = _scalable_resource(endpoint)
    client.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=minimum,
        MaxCapacity=maximum,
    )
    client.put_scaling_policy(
        PolicyName=f"{endpoint}-invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
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


def scalable_target(session: CloudSession, endpoint: str) -> dict | None:
    client = session.client("application-autoscaling")
    targets = client.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[_scalable_resource(endpoint)], ScalableDimension=SCALABLE_DIMENSION
    )["ScalableTargets"]
    return targets[0] if targets else None


def deregister_autoscaling(session: CloudSession, endpoint: str) -> bool:
    if scalable_target(session, endpoint) is None:
        return False
    session.client("application-autoscaling").deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=_scalable_resource(endpoint), ScalableDimension=SCALABLE_DIMENSION
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


def delete_endpoint(session: CloudSession, endpoint: str, reporter: Reporter | None = None) -> bool:
    """Delete the endpoint and wait until it is gone; True when there was one to delete.

    An operation in progress is waited out first (SageMaker refuses DeleteEndpoint meanwhile).
    The wait polls DescribeEndpoint itself rather than using botocore's EndpointDeleted waiter,
    which stops at Failed: a Failed endpoint is exactly one that must be deletable.
    """
    reporter = reporter or Reporter()
    current = describe_endpoint(session, endpoint)
    if current is None:
        return False
    if current["EndpointStatus"] != "Deleting":
        if current["EndpointStatus"] in BUSY:
            current = wait_settled(session, endpoint, reporter)
            if current is None:
                return True
        if not _request_delete(session, endpoint, reporter):
            return True
    with reporter.waiting(f"deleting endpoint {endpoint}"):
        _poll(session, endpoint, lambda d: d is None, DELETED_POLL_S, DELETED_MAX_POLLS)
    return True


def _request_delete(session: CloudSession, endpoint: str, reporter: Reporter) -> bool:
    """DeleteEndpoint; an operation SageMaker started in the meantime (SystemUpdating) is waited
    out once more. False when the endpoint went away by itself."""
    sm = session.client("sagemaker")
    try:
        return delete_if_present(lambda: sm.delete_endpoint(EndpointName=endpoint), _is_missing)
    except ClientError as err:
        if "in-progress" not in err.response.get("Error", {}).get("Message", ""):
            raise
    if wait_settled(session, endpoint, reporter) is None:
        return False
    return delete_if_present(lambda: sm.delete_endpoint(EndpointName=endpoint), _is_missing)


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
