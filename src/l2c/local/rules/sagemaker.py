"""AWS rules for SageMaker hosting (see :mod:`l2c.local.rules`): what an endpoint goes through.

moto makes an endpoint ``InService`` the moment it is asked for, overwrites one created twice,
has no UpdateEndpoint, deletes at once and never looks at the model. On AWS an endpoint is
``Creating`` for minutes while its instances download the model artifact with the execution
role's permissions and start the container; it ends ``InService`` or ``Failed`` with a reason.
An update keeps serving the old configuration until the new one is healthy, and rolls back if
it is not. The rules below do the same, on timers scaled by the pace (:mod:`l2c.local.pace`),
in the cloud's own process, with moto as the store.

Instance quotas are one table (:data:`QUOTAS`): CreateEndpoint and UpdateEndpoint are refused
beyond it, and Service Quotas answers from it, so a deploy can check its quota first.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
import zlib
from dataclasses import dataclass

from l2c.config import QUOTAS_ENV
from l2c.local.pace import PACE
from l2c.local.rules import RULES, AwsError, Call, Reply
from l2c.local.rules import iam as iam_rules

log = logging.getLogger("l2c.local.rules")

# How long AWS takes (seconds). Creating: the deploy guides and the SageMaker Python SDK's
# waiters speak of "several minutes"; 5 minutes is the common figure for one ml.m5.large with a
# small model (aws/amazon-sagemaker-examples notebooks, "This will take 5-10 minutes").
CREATE_AWS_S = 300.0
UPDATE_AWS_S = 300.0  # a blue/green update provisions a whole new fleet first
DELETE_AWS_S = 90.0  # Deleting lasts one to two minutes before DescribeEndpoint stops finding it
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
DEFAULT_INSTANCE_QUOTA = 20  # generous: the local cloud refuses only when a test or user asks it to
# The Service Quotas code of "ml.m5.large for endpoint usage" (as the AWS CLI examples cite it).
KNOWN_QUOTA_CODES = {"ml.m5.large": "L-1E9C780D"}

_lock = threading.RLock()


def _backend(account: str, region: str):
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[account][region]


def _bump() -> None:
    from l2c.local import change_count

    change_count.changes.bump()


def _endpoint_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:endpoint/{name.lower()}"


def _config_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:endpoint-config/{name.lower()}"


def _json_reply(document: dict) -> Reply:
    body = json.dumps(document).encode()
    return Reply(200, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))], body)


def _later(seconds: float, action, *args) -> None:
    timer = threading.Timer(seconds, _guarded, args=(action, *args))
    timer.daemon = True
    timer.start()


def _guarded(action, *args) -> None:
    try:
        with _lock:
            action(*args)
    except Exception:  # a transition's bug must not kill the timer thread silently
        log.exception("endpoint transition %s failed", getattr(action, "__name__", action))
    finally:
        _bump()


# --------------------------------------------------------------------------- instance quotas


class Quotas:
    """Per-instance-type limits of "<type> for endpoint usage", in instances."""

    def __init__(self, overrides: dict[str, int] | None = None):
        self.overrides: dict[str, int] = dict(overrides or {})

    def limit(self, instance_type: str) -> int:
        return self.overrides.get(instance_type, DEFAULT_INSTANCE_QUOTA)

    def set(self, values: dict) -> None:
        for instance_type, value in values.items():
            if value is None:
                self.overrides.pop(instance_type, None)
            else:
                self.overrides[str(instance_type)] = check_quota(instance_type, value)

    def known_types(self, in_use=()) -> list[str]:
        return sorted({"ml.m5.large", "ml.t2.medium", *self.overrides, *in_use})


def check_quota(instance_type, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or int(value) != value:
        raise ValueError(f"the quota of {instance_type} must be a whole number of instances >= 0, not {value!r}")
    return int(value)


def quotas_from_environment(text: str | None = None) -> dict[str, int]:
    """``L2C_INSTANCE_QUOTAS="ml.m5.large=0,ml.t2.medium=2"``."""
    text = os.environ.get(QUOTAS_ENV, "") if text is None else text
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        instance_type, _, value = (part.strip() for part in item.partition("="))
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{QUOTAS_ENV}: {item!r} is not <instance type>=<instances>, e.g. ml.m5.large=0") from None
        values[instance_type] = check_quota(instance_type, number)
    return values


QUOTAS = Quotas(quotas_from_environment())


def quota_name(instance_type: str) -> str:
    return f"{instance_type} for endpoint usage"


def quota_code(instance_type: str) -> str:
    # Real codes are opaque and per type; for the types whose code is not known here a stable
    # code of the same shape is made up, so GetServiceQuota round-trips what List returns.
    known = KNOWN_QUOTA_CODES.get(instance_type)
    return known or f"L-{zlib.crc32(instance_type.encode()):08X}"


def _usage(account: str, region: str, exclude: str | None = None) -> dict[str, int]:
    """Instances in use per type by the region's endpoints (all but ``exclude``)."""
    backend = _backend(account, region)
    used: dict[str, int] = {}
    for name, endpoint in backend.endpoints.items():
        if name == exclude:
            continue
        for instance_type, count in _instances(backend, endpoint.endpoint_config_name).items():
            used[instance_type] = used.get(instance_type, 0) + count
    return used


def _instances(backend, config_name: str) -> dict[str, int]:
    config = backend.endpoint_configs.get(config_name)
    counts: dict[str, int] = {}
    for variant in getattr(config, "production_variants", None) or []:
        if variant.get("InstanceType"):
            counts[variant["InstanceType"]] = counts.get(variant["InstanceType"], 0) + int(
                variant.get("InitialInstanceCount") or 0
            )
    return counts


def _check_quota(account: str, region: str, config_name: str, exclude: str | None = None) -> None:
    # Source: the ResourceLimitExceeded message of CreateEndpoint as reported in
    # aws-samples/sagemaker-custom-project-templates#51 and aws-samples/aws-genai-llm-chatbot#244.
    backend = _backend(account, region)
    used = _usage(account, region, exclude)
    for instance_type, delta in _instances(backend, config_name).items():
        limit, current = QUOTAS.limit(instance_type), used.get(instance_type, 0)
        if current + delta > limit:
            raise AwsError(
                "ResourceLimitExceeded",
                f"The account-level service limit '{quota_name(instance_type)}' is {limit} Instances, with current "
                f"utilization of {current} Instances and a request delta of {delta} Instances. Please use AWS Service "
                "Quotas to request an increase for this quota. If AWS Service Quotas is not available, contact AWS "
                "support to request an increase for this quota.",
            )


def quotas_admin(request) -> Reply:
    """``POST /_l2c/quotas {"ml.m5.large": 0}`` sets limits (null: back to the default); GET reads them."""
    from l2c.local.edge import json_reply

    if request.method == "POST":
        try:
            values = request.json()
            if not isinstance(values, dict):
                raise ValueError('send an object of instance type -> instances, e.g. {"ml.m5.large": 0}')
            with _lock:
                QUOTAS.set(values)
        except ValueError as err:
            return json_reply(400, {"message": str(err)})
    return json_reply(200, {"default": DEFAULT_INSTANCE_QUOTA, "quotas": dict(QUOTAS.overrides)})


def register_admin(edge) -> None:
    edge.admin("GET", "quotas", quotas_admin)
    edge.admin("POST", "quotas", quotas_admin)


# --------------------------------------------------------------------------- the endpoint's instances


@dataclass
class Outcome:
    ok: bool
    reason: str | None = None


def _stream_name(variant: str) -> str:
    return f"{variant}/i-{uuid.uuid4().hex[:17]}"


def write_endpoint_log(account: str, region: str, endpoint: str, stream: str, lines: list[str]) -> None:
    """Container log lines into /aws/sagemaker/Endpoints/<endpoint>, as an endpoint's instances write them."""
    from moto.logs.models import logs_backends

    backend = logs_backends[account][region]
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    if group not in backend.groups:
        backend.create_log_group(group, tags={})
    if stream not in backend.groups[group].streams:
        backend.create_log_stream(group, stream)
    now = int(time.time() * 1000)
    backend.put_log_events(group, stream, [{"timestamp": now, "message": line} for line in lines])


def start_instances(account: str, region: str, endpoint: str, config_name: str) -> Outcome:
    """What each variant's instance does before it takes traffic: download the model data with the
    execution role's permissions, load it in the container, answer the ping health check."""
    backend = _backend(account, region)
    config = backend.endpoint_configs.get(config_name)
    if config is None:
        return Outcome(False, f'Could not find endpoint configuration "{_config_arn(account, region, config_name)}".')
    for variant in config.production_variants:
        outcome = _start_variant(account, region, endpoint, variant)
        if not outcome.ok:
            return outcome
    return Outcome(True)


def _start_variant(account: str, region: str, endpoint: str, variant: dict) -> Outcome:
    backend = _backend(account, region)
    name = variant["VariantName"]
    stream = _stream_name(name)
    model = backend._models.get(variant.get("ModelName", ""))
    if model is None:
        reason = (
            f'Could not find model "arn:aws:sagemaker:{region}:{account}:model/{variant.get("ModelName", "").lower()}".'
        )
        write_endpoint_log(account, region, endpoint, stream, [reason])
        return Outcome(False, reason)
    container = model.primary_container or (model.containers or [{}])[0]
    url = container.get("ModelDataUrl", "")
    # Source: the FailureReason AWS gives when an instance cannot fetch the artifact
    # (aws-samples/cvat-on-aws-china#3): the object is missing or the role may not read it.
    download_failed = (
        f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure that there is '
        "an object located at the URL and that the role passed to CreateModel has permissions to download the object."
    )
    data, problem = _download(account, model.execution_role_arn, url)
    if data is None:
        write_endpoint_log(account, region, endpoint, stream, [f"Failed to download model data from {url}: {problem}"])
        return Outcome(False, download_failed)
    from l2c.serving.sandbox import CheckUnavailable, check_artifact

    # Checked in a child process, never loaded here: a booster that crashes XGBoost would
    # otherwise take the whole local cloud down with it.
    try:
        problem = check_artifact(data).reason
    except CheckUnavailable as err:
        problem = str(err)
    if problem:  # the container's own loader refusing it: the ping never answers 200
        write_endpoint_log(
            account,
            region,
            endpoint,
            stream,
            [
                f"Downloaded model data from {url} ({len(data)} bytes)",
                f"Unable to load model: {problem}",
                "Worker exited; /ping is not answering",
            ],
        )
        # Source: aws/sagemaker-python-sdk#787, awslabs/llm-hosting-container#18.
        return Outcome(
            False,
            f"The primary container for production variant {name} did not pass the ping health "
            "check. Please check CloudWatch logs for this endpoint.",
        )
    write_endpoint_log(
        account,
        region,
        endpoint,
        stream,
        [
            f"Downloaded model data from {url} ({len(data)} bytes)",
            "Loaded the model; /ping answers 200",
        ],
    )
    return Outcome(True)


def _download(account: str, role_arn: str, url: str) -> tuple[bytes | None, str]:
    from moto.s3.models import s3_backends

    if not url.startswith("s3://") or "/" not in url[5:]:
        return None, "not an s3://bucket/key URL"
    bucket, key = url[5:].split("/", 1)
    role = iam_rules.find_role(account, role_arn)
    if role is None:
        return None, f"the execution role {role_arn} does not exist"
    if not iam_rules.role_allows(role, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"):
        return None, f"AccessDenied: {role_arn} is not allowed s3:GetObject on {bucket}/{key}"
    backend = s3_backends[account]["aws"]
    try:
        obj = backend.get_object(bucket, key)
    except Exception:  # moto's MissingBucket
        return None, f"NoSuchBucket: {bucket}"
    if obj is None:
        return None, f"NoSuchKey: {key}"
    return bytes(obj.value), ""


# --------------------------------------------------------------------------- lifecycle


def _existing(call: Call, name: str):
    endpoint = _backend(call.account, call.region).endpoints.get(name)
    if endpoint is None:
        raise AwsError(
            "ValidationException", f'Could not find endpoint "{_endpoint_arn(call.account, call.region, name)}".'
        )
    return endpoint


@RULES.before(
    "sagemaker",
    "CreateEndpoint",
    "UpdateEndpoint",
    id="sagemaker.endpoint-instance-quota",
    test="tests/integration/test_rules_sagemaker.py::test_create_and_update_count_the_instances_already_in_use",
    source="SageMaker endpoint quotas ('<instance type> for endpoint usage', Service Quotas console); the "
    "ResourceLimitExceeded message in aws-samples/sagemaker-custom-project-templates#51 and "
    "aws-samples/aws-genai-llm-chatbot#244",
    summary="The instances a config asks for, plus those the region's endpoints use (an update's old fleet too: "
    "blue/green), may not exceed the type's quota: ResourceLimitExceeded with AWS's message. Quotas are "
    'generous unless set (POST /_l2c/quotas, or L2C_INSTANCE_QUOTAS="ml.m5.large=0").',
)
def instance_quota(call: Call):
    with _lock:
        _check_quota(call.account, call.region, call.params.get("EndpointConfigName", ""))


@RULES.before(
    "sagemaker",
    "CreateEndpoint",
    id="sagemaker.endpoint-create",
    test="tests/integration/test_rules_sagemaker.py::test_create_is_creating_then_in_service_and_a_second_create_is_refused",
    source="SageMaker API Reference, CreateEndpoint and DescribeEndpoint (EndpointStatus); the 'Cannot create "
    "already existing endpoint' ValidationException in aws/sagemaker-python-sdk#101 and "
    "aws/amazon-sagemaker-examples#2491; FailureReason texts in aws-samples/cvat-on-aws-china#3 and "
    "aws/sagemaker-python-sdk#787",
    summary="An existing name is refused (moto overwrites it). The endpoint is Creating for ~300 AWS seconds "
    "while its instances download the artifact from S3 with the execution role's permissions and load it "
    "(pickles refused); then InService, or Failed with AWS's FailureReason and the container's lines in "
    "/aws/sagemaker/Endpoints/<name>.",
)
def create_endpoint(call: Call):
    name, config_name = call.params.get("EndpointName", ""), call.params.get("EndpointConfigName", "")
    with _lock:
        backend = _backend(call.account, call.region)
        if name in backend.endpoints:
            raise AwsError(
                "ValidationException",
                f'Cannot create already existing endpoint "{_endpoint_arn(call.account, call.region, name)}".',
            )
        if config_name not in backend.endpoint_configs:
            raise AwsError(
                "ValidationException",
                f'Could not find endpoint configuration "{_config_arn(call.account, call.region, config_name)}".',
            )
        endpoint = backend.create_endpoint(name, config_name, call.params.get("Tags") or [])
        endpoint.endpoint_status = "Creating"
    _bump()
    _later(PACE.seconds(CREATE_AWS_S), _finish_create, call.account, call.region, name, endpoint)
    return _json_reply({"EndpointArn": endpoint.arn})


def _finish_create(account: str, region: str, name: str, endpoint) -> None:
    if _backend(account, region).endpoints.get(name) is not endpoint or endpoint.endpoint_status != "Creating":
        return  # deleted (or replaced) meanwhile
    outcome = start_instances(account, region, name, endpoint.endpoint_config_name)
    endpoint.failure_reason = outcome.reason
    endpoint.last_modified_time = _now()
    endpoint.endpoint_status = "InService" if outcome.ok else "Failed"


def _now():
    from moto.core.utils import utcnow

    return utcnow()


@RULES.before(
    "sagemaker",
    "UpdateEndpoint",
    id="sagemaker.endpoint-update",
    test="tests/integration/test_rules_sagemaker.py::test_an_update_serves_the_old_config_while_updating_then_the_new_one",
    source="SageMaker API Reference, UpdateEndpoint (Updating, no availability loss; RetainAllVariantProperties); "
    "botocore sagemaker model EndpointMetadata/DescribeEndpointOutput.FailureReason (a failed update rolls "
    "back to the old config, InService); 'Cannot update in-progress endpoint' as reported for UpdateEndpoint and "
    "UpdateEndpointWeightsAndCapacities in public deploy scripts, and amazon-sagemaker-examples PR #3188; "
    "SageMaker Developer "
    "Guide, endpoint-scaling-update (an update that changes the instance type of an auto-scaled variant fails) "
    "and serverless-endpoints-update (instance to serverless is not supported)",
    summary="Answered instead of moto (which lacks it). Refused unless InService (Failed endpoints too: the stricter "
    "choice, AWS's wording for that case not found), refused from instance to serverless hosting (and back: "
    "stricter, undocumented), refused "
    "when it changes the instance type of a variant registered as a scalable target, and refused beyond the "
    "instance quota. Updating for ~300 AWS seconds, serving and reporting the OLD config; then InService on "
    "the new one, or rolled back: InService on the old config with FailureReason set.",
)
def update_endpoint(call: Call):
    name, config_name = call.params.get("EndpointName", ""), call.params.get("EndpointConfigName", "")
    with _lock:
        backend = _backend(call.account, call.region)
        endpoint = _existing(call, name)
        if endpoint.endpoint_status != "InService":
            raise AwsError(
                "ValidationException",
                f'Cannot update in-progress endpoint "{_endpoint_arn(call.account, call.region, name)}".'
                if endpoint.endpoint_status in IN_PROGRESS
                else f'Cannot update failed endpoint "{_endpoint_arn(call.account, call.region, name)}". '
                "Delete it and create it again.",
            )
        new_config = backend.endpoint_configs.get(config_name)
        if new_config is None:
            raise AwsError(
                "ValidationException",
                f'Could not find endpoint configuration "{_config_arn(call.account, call.region, config_name)}".',
            )
        old_config = backend.endpoint_configs.get(endpoint.endpoint_config_name)
        old_variants = {v["VariantName"]: v for v in getattr(old_config, "production_variants", None) or []}
        _check_hosting_change(call, name, old_variants, new_config.production_variants)
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        endpoint.last_modified_time = _now()
        retain = bool(call.params.get("RetainAllVariantProperties"))
    _bump()
    _later(PACE.seconds(UPDATE_AWS_S), _finish_update, call.account, call.region, name, endpoint, config_name, retain)
    return _json_reply({"EndpointArn": endpoint.arn})


def _check_hosting_change(call: Call, name: str, old: dict, new: list[dict]) -> None:
    scaled = _scalable_variants(call.account, call.region, name)
    for variant in new:
        before = old.get(variant["VariantName"])
        if before is None:
            continue
        if bool(before.get("ServerlessConfig")) != bool(variant.get("ServerlessConfig")):
            # Source: SageMaker Developer Guide, serverless-endpoints-update: updating a real-time
            # (instance) endpoint to serverless "is currently not supported". The way back is not
            # documented either way; refusing it too is the stricter choice.
            raise AwsError(
                "ValidationException",
                f"Cannot update endpoint {name}: variant {variant['VariantName']} changes between instance-based and "
                "serverless hosting, which UpdateEndpoint does not support. Create a new endpoint instead.",
            )
        if variant["VariantName"] in scaled and before.get("InstanceType") != variant.get("InstanceType"):
            raise AwsError(
                "ValidationException",
                f'The variant(s) "[{variant["VariantName"]}]" of endpoint {name} are registered as scalable targets '
                "with Application Auto Scaling and cannot have their instance type updated. Deregister them with "
                "DeregisterScalableTarget first.",
            )


def _scalable_variants(account: str, region: str, endpoint: str) -> set[str]:
    from moto.applicationautoscaling.models import applicationautoscaling_backends

    targets = applicationautoscaling_backends[account][region].targets
    prefix = f"endpoint/{endpoint}/variant/"
    return {
        resource_id[len(prefix) :]
        for by_resource in targets.values()
        for resource_id in by_resource
        if resource_id.startswith(prefix)
    }


def _finish_update(account: str, region: str, name: str, endpoint, config_name: str, retain: bool) -> None:
    backend = _backend(account, region)
    if backend.endpoints.get(name) is not endpoint or endpoint.endpoint_status != "Updating":
        return
    outcome = start_instances(account, region, name, config_name)
    if outcome.ok:
        # The new config first, then the status: no reader sees InService on the old one.
        endpoint.production_variants = _variants_after_update(backend, endpoint, config_name, retain)
        endpoint.endpoint_config_name = config_name
        endpoint.failure_reason = None
    else:
        endpoint.failure_reason = outcome.reason  # rolled back: still on the old config
    endpoint.last_modified_time = _now()
    endpoint.endpoint_status = "InService"


def _variants_after_update(backend, endpoint, config_name: str, retain: bool) -> list[dict]:
    live = {v["VariantName"]: v for v in endpoint.production_variants}
    variants = endpoint._process_production_variants(backend.endpoint_configs[config_name].production_variants)
    if retain:
        for variant in variants:
            kept = live.get(variant["VariantName"], {})
            for key in ("CurrentInstanceCount", "DesiredInstanceCount", "CurrentWeight", "DesiredWeight"):
                if key in kept:
                    variant[key] = kept[key]
    return variants


@RULES.before(
    "sagemaker",
    "DeleteEndpoint",
    id="sagemaker.endpoint-delete",
    test="tests/integration/test_rules_sagemaker.py::test_delete_is_refused_while_creating_then_deleting_then_gone",
    source="SageMaker API Reference, DeleteEndpoint; amazon-sagemaker-examples PR #3188 and issue #3432 (an endpoint "
    "in progress cannot be deleted); the message 'Cannot update in-progress endpoint' that DeleteEndpoint "
    "answers then, as aws/amazon-sagemaker-operator-for-k8s's SageMaker client wrapper matches it",
    summary="Refused while Creating/Updating/SystemUpdating/RollingBack/Deleting; allowed when InService or Failed: "
    "the endpoint is Deleting for ~90 AWS seconds, then gone.",
)
def delete_endpoint(call: Call):
    name = call.params.get("EndpointName", "")
    with _lock:
        endpoint = _existing(call, name)
        if endpoint.endpoint_status in IN_PROGRESS:
            raise AwsError(
                "ValidationException",
                f'Cannot update in-progress endpoint "{_endpoint_arn(call.account, call.region, name)}".',
            )
        endpoint.endpoint_status = "Deleting"
        endpoint.last_modified_time = _now()
    _bump()
    _later(PACE.seconds(DELETE_AWS_S), _finish_delete, call.account, call.region, name, endpoint)
    return _json_reply({})


def _finish_delete(account: str, region: str, name: str, endpoint) -> None:
    backend = _backend(account, region)
    if backend.endpoints.get(name) is endpoint:
        del backend.endpoints[name]


# --------------------------------------------------------------------------- models


@RULES.before(
    "sagemaker",
    "CreateModel",
    id="sagemaker.model-role",
    test="tests/integration/test_rules_sagemaker.py::test_create_model_with_a_role_iam_has_not_propagated_yet",
    source="IAM User Guide, troubleshoot 'changes are not always immediately visible'; the CreateModel/"
    "CreateTransformJob ValidationException text in awslabs/predictive-maintenance-using-machine-learning#3; "
    "propagation delays in hashicorp/terraform-provider-aws#6566",
    summary="The execution role must exist, be older than IAM's propagation delay (~10 AWS seconds) and trust "
    "sagemaker.amazonaws.com for this account's model (Conditions on aws:SourceAccount and aws:SourceArn are "
    "judged against the account and the model's ARN); otherwise ValidationException 'Could not assume role <arn>. Please ensure that "
    "the role exists and allows principal 'sagemaker.amazonaws.com' to assume the role.'",
)
def create_model_role(call: Call):
    arn = call.params.get("ExecutionRoleArn", "")
    role = iam_rules.find_role(call.account, arn)
    # SageMaker assumes the role for this account's model (its ARN in lower case, as SageMaker
    # writes them): the trust policy's confused-deputy conditions are judged against that.
    model_arn = (
        f"arn:{iam_rules.partition_of(call.region)}:sagemaker:{call.region}:{call.account}:model/"
        + str(call.params.get("ModelName", "")).lower()
    )
    context = iam_rules.service_context(call.account, model_arn)
    if (
        role is None
        or not iam_rules.is_propagated(role)
        or not iam_rules.trusts_service(role, SAGEMAKER_PRINCIPAL, context)
    ):
        raise AwsError(
            "ValidationException",
            f"Could not assume role {arn}. Please ensure that the role exists and allows principal "
            f"'{SAGEMAKER_PRINCIPAL}' to assume the role.",
        )


# --------------------------------------------------------------------------- shapes


def _without_empty(document: dict, empty: tuple = ({}, [])) -> dict:
    return {key: value for key, value in document.items() if value not in empty}


@RULES.after(
    "sagemaker",
    "DescribeEndpoint",
    "DescribeEndpointConfig",
    "DescribeModel",
    id="sagemaker.describe-shapes",
    test="tests/integration/test_rules_sagemaker.py::test_describes_leave_out_what_aws_leaves_out_and_sagemaker_core_reads_them",
    source="botocore sagemaker model: DataCaptureConfig, VpcConfig, Containers, AsyncInferenceConfig are optional "
    "members AWS leaves out when unset",
    summary="Optional members moto answers as {} or [] (DataCaptureConfig, VpcConfig, Containers, ...) are left "
    "out, as AWS leaves them out, so typed clients (sagemaker-core) parse the answer.",
)
def describe_shapes(call: Call, reply: Reply):
    return reply.with_json(_without_empty(reply.json()))


@RULES.after(
    "sagemaker",
    "ListEndpoints",
    "ListEndpointConfigs",
    "ListModels",
    id="sagemaker.list-shapes",
    test="tests/integration/test_rules_sagemaker.py::test_describes_leave_out_what_aws_leaves_out_and_sagemaker_core_reads_them",
    source="botocore sagemaker model: EndpointSummary, EndpointConfigSummary, ModelSummary",
    summary="Summaries carry only the members AWS gives (empty optional ones left out).",
)
def list_shapes(call: Call, reply: Reply):
    document = reply.json()
    for key, value in document.items():
        if isinstance(value, list):
            document[key] = [_without_empty(item) if isinstance(item, dict) else item for item in value]
    return reply.with_json(document)


# --------------------------------------------------------------------------- Service Quotas


def _quota(call: Call, instance_type: str) -> dict:
    code = quota_code(instance_type)
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaArn": f"arn:aws:servicequotas:{call.region}:{call.account}:sagemaker/{code}",
        "QuotaCode": code,
        "QuotaName": quota_name(instance_type),
        "Value": float(QUOTAS.limit(instance_type)),
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


@RULES.before(
    "service-quotas",
    "ListServiceQuotas",
    "GetServiceQuota",
    id="servicequotas.sagemaker-endpoint-instances",
    test="tests/integration/test_rules_sagemaker.py::test_service_quotas_answers_from_the_same_table",
    source="Service Quotas API Reference, GetServiceQuota / ListServiceQuotas (ServiceQuota shape); SageMaker quota "
    "names '<instance type> for endpoint usage' as the Service Quotas console lists them",
    summary="For ServiceCode sagemaker, answered from the same table CreateEndpoint enforces (QuotaName "
    "'<type> for endpoint usage'); other services go to moto.",
)
def service_quotas(call: Call):
    if call.params.get("ServiceCode") != "sagemaker":
        return None
    with _lock:
        configs = _backend(call.account, call.region).endpoint_configs.values()
        in_use = {v.get("InstanceType") for c in configs for v in c.production_variants if v.get("InstanceType")}
        quotas = [_quota(call, instance_type) for instance_type in QUOTAS.known_types(in_use)]
    if call.operation == "ListServiceQuotas":
        code = call.params.get("QuotaCode")
        return _json_reply({"Quotas": [q for q in quotas if code in (None, q["QuotaCode"])]})
    code = call.params.get("QuotaCode", "")
    for quota in quotas:
        if quota["QuotaCode"] == code:
            return _json_reply({"Quota": quota})
    raise AwsError("NoSuchResourceException", f"The request failed because the specified quota {code} doesn't exist.")
