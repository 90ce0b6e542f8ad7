"""AWS rules for API Gateway (see :mod:`l2c.local.rules`): refusals, quotas and delays moto lacks.

- DeleteUsagePlan is refused while API stages are attached to the plan;
- the control plane's fixed rate quotas (API Gateway quotas page, "API Gateway quotas for
  creating, deploying and managing an API") answer TooManyRequestsException 429 past them;
- a new API key, or a key newly added to a usage plan, works at the gateway only a few seconds
  later (403 Forbidden meanwhile): :func:`key_is_usable`, asked by the local gateway;
- PutIntegrationResponse refuses header mappings its method response does not declare, and
  values that are neither a quoted static value nor a mapping expression.
"""

from __future__ import annotations

import math
import re
import threading
import time

from l2c.local.pace import PACE
from l2c.local.rules import RULES, AwsError, Call, Reply

_QUOTAS_DOC = "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
# Seconds between two accepted calls, per account and Region (the quotas page's "1 request every N seconds").
RATE_QUOTAS_AWS_S = {
    "CreateDeployment": 5.0,
    "DeleteRestApi": 30.0,
    "UpdateUsagePlan": 20.0,
    "CreateRestApi": 3.0,
}
# How long AWS takes before a new key (or key-to-plan association) is honoured by the gateway.
KEY_PROPAGATION_AWS_S = 5.0

_last_accepted: dict[tuple, float] = {}
_key_usable_at: dict[str, float] = {}
_lock = threading.Lock()


# --------------------------------------------------------------------------- usage plans


def _backend(call: Call):
    from moto.apigateway.models import apigateway_backends

    return apigateway_backends[call.account][call.region]


@RULES.before(
    "apigateway",
    "DeleteUsagePlan",
    id="apigateway.usage-plan-stages-attached",
    test="tests/integration/test_rules_apigateway.py::test_a_usage_plan_with_api_stages_cannot_be_deleted_until_they_are_removed",
    source="aws/aws-sdk-js#3841; boto/boto3#2629 (BadRequestException: Cannot delete Usage Plan ... because there "
    "are API Stages associated with it)",
    summary="DeleteUsagePlan while API stages are attached is refused with BadRequestException naming the first "
    "<api>:<stage>; remove them with UpdateUsagePlan (op remove, path /apiStages) first.",
)
def no_delete_with_stages(call: Call) -> None:
    # Source: aws/aws-sdk-js#3841, boto/boto3#2629.
    plan_id = call.params.get("usageplanId") or call.params.get("usagePlanId", "")
    plan = _backend(call).usage_plans.get(plan_id)
    stages = list(getattr(plan, "api_stages", None) or [])
    if stages:
        first = stages[0]
        raise AwsError(
            "BadRequestException",
            f"Cannot delete Usage Plan {plan_id} because there are API Stages associated with it, including "
            f"{first['apiId']}:{first['stage']}",
            400,
        )


# --------------------------------------------------------------------------- control-plane quotas


@RULES.before(
    "apigateway",
    *RATE_QUOTAS_AWS_S,
    id="apigateway.control-plane-rate",
    test="tests/integration/test_rules_apigateway.py::test_control_plane_calls_past_their_rate_quota_are_too_many_requests",
    source=f"{_QUOTAS_DOC} (CreateDeployment 1/5 s, DeleteRestApi 1/30 s, UpdateUsagePlan 1/20 s, "
    "CreateRestApi regional 1/3 s); botocore apigateway model, TooManyRequestsException (Retry-After header)",
    summary="Past its rate quota (paced) a call is refused with TooManyRequestsException 429 'Too Many Requests' "
    "and a Retry-After header in seconds; botocore's retry handler retries it.",
)
def control_plane_rate(call: Call) -> Reply | None:
    # Source: API Gateway quotas page, fixed control-plane quotas.
    interval = PACE.seconds(RATE_QUOTAS_AWS_S[call.operation])
    key = (call.account, call.region, call.operation)
    now = time.monotonic()
    with _lock:
        last = _last_accepted.get(key)
        if last is None or now - last >= interval:
            _last_accepted[key] = now
            return None
        wait = interval - (now - last)
    refusal = AwsError("TooManyRequestsException", "Too Many Requests", 429).reply("rest-json", "apigateway")
    refusal.headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
    return refusal


# --------------------------------------------------------------------------- new keys


@RULES.after(
    "apigateway",
    "CreateApiKey",
    "CreateUsagePlanKey",
    id="apigateway.new-key-propagates",
    test="tests/integration/test_rules_apigateway.py::test_a_new_api_key_is_forbidden_for_a_few_seconds_then_works",
    source="API Gateway developer guide, api-gateway-api-usage-plans (a new key or plan association takes effect "
    "after a short delay; 403 meanwhile)",
    summary="A new API key, or one just added to a usage plan, is answered 403 Forbidden at the gateway for a few "
    "paced seconds, then works.",
)
def key_propagates(call: Call, reply: Reply) -> None:
    # Source: API Gateway usage plans documentation (keys are not usable at once).
    document = reply.json()
    key_id = document.get("id") if call.operation == "CreateApiKey" else call.params.get("keyId")
    if key_id:
        with _lock:
            _key_usable_at[key_id] = time.monotonic() + PACE.seconds(KEY_PROPAGATION_AWS_S)


def key_is_usable(key_id: str) -> bool:
    """Whether the gateway honours this key yet (keys made before the cloud started always are)."""
    with _lock:
        usable_at = _key_usable_at.get(key_id)
    return usable_at is None or time.monotonic() >= usable_at


# --------------------------------------------------------------------------- integration response mappings

_MAPPING_PREFIX = "Invalid mapping expression specified: Validation Result: warnings : [], errors : "
# What a method response header may be mapped from: a static 'value', or a value of the
# integration's answer, the context or a stage variable (developer guide, "Parameter mapping
# source reference for REST APIs", rest-api-parameter-mapping-sources.html).
_MAPPING_SOURCE = re.compile(
    r"'[^']*'|integration\.response\.(header|multivalueheader)\.[^\s]+|integration\.response\.body(\.[^\s]+)?"
    r"|context\.[A-Za-z0-9_.]+|stageVariables\.[A-Za-z0-9_]+"
)


@RULES.before(
    "apigateway",
    "PutIntegrationResponse",
    id="apigateway.integration-response-mappings",
    test="tests/integration/test_cors.py::test_an_integration_response_may_map_only_headers_its_method_response_declares",
    source="BadRequestException texts in amazon-archives/aws-apigateway-importer#121 ('No method response exists for "
    "method.') and #209, awslabs/aws-solutions-constructs#1130 ('Invalid mapping expression parameter specified: "
    "method.response.header.Access-Control-Allow-Origin'), awsdocs/amazon-api-gateway-developer-guide#7 (an "
    "unquoted static value); developer guide, rest-api-parameter-mapping-sources.html",
    summary="An integration response whose responseParameters map a header is refused with BadRequestException 400 "
    "'Invalid mapping expression specified: ...' when the method has no method response for that status, "
    "when the method response does not declare the header, or when the value is neither a single-quoted "
    "static value nor a mapping expression (moto accepts all three).",
)
def integration_response_mappings(call: Call) -> None:
    # Sources: aws-apigateway-importer#121 and #209, aws-solutions-constructs#1130, the developer guide's mapping sources.
    parameters = call.params.get("responseParameters") or {}
    if not parameters:
        return
    try:
        method = _backend(call).get_method(
            call.params.get("restapi_id", ""), call.params.get("resource_id", ""), call.params.get("http_method", "")
        )
    except Exception:  # no such API, resource or method: moto answers with its own NotFoundException
        return
    response = (method.method_responses or {}).get(call.params.get("status_code", ""))
    if response is None:
        raise AwsError("BadRequestException", _MAPPING_PREFIX + "[No method response exists for method.]", 400)
    declared = response.response_parameters or {}
    for name, value in parameters.items():
        if name.startswith("method.response.header.") and name not in declared:
            raise AwsError(
                "BadRequestException",
                _MAPPING_PREFIX + f"[Invalid mapping expression parameter specified: {name}]",
                400,
            )
        if not isinstance(value, str) or not _MAPPING_SOURCE.fullmatch(value):
            raise AwsError(
                "BadRequestException", _MAPPING_PREFIX + f"[Invalid mapping expression specified: {value}]", 400
            )
