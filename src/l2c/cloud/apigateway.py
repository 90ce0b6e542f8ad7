"""The REST API in front of the Lambda functions: the tutorial's URL, made safe to publish.

One REST API (``l2c``) per account and region holds a resource per model (``/irisprediction``,
``/housepriceprediction``), so one base URL and one API key serve every model, as the Postman
environment expects. Each resource has a POST method with a Lambda proxy integration; the
stage ``test`` is redeployed only when the routes changed, which the deployment's description
records as a fingerprint. An API key and a usage plan (throttle and quota) guard the stage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

from l2c.cloud import functions, s3, tags
from l2c.cloud.retries import retry_while_throttled
from l2c.cloud.session import CloudError, CloudSession, delete_if_present, get_if_present

NOT_FOUND = {"NotFoundException"}

API_NAME = "l2c"
STAGE = "test"
KEY_NAME = "l2c-key"
PLAN_NAME = "l2c-usage-plan"
_FINGERPRINT_PREFIX = "l2c routes "


@dataclass(frozen=True)
class Limits:
    """The usage plan: steady requests per second, burst, and a quota per period."""

    rate_limit: float = 20.0
    burst_limit: int = 40
    quota_limit: int = 10_000
    quota_period: str = "DAY"

    def throttle(self) -> dict:
        return {"rateLimit": float(self.rate_limit), "burstLimit": int(self.burst_limit)}

    def quota(self) -> dict:
        return {"limit": int(self.quota_limit), "period": self.quota_period}


def resource_path(stack: str) -> str:
    """The tutorial's names: iris -> irisprediction, house-price -> housepriceprediction."""
    return stack.replace("-", "").replace("_", "") + "prediction"


def _metered(session: CloudSession, operation: str, call):
    """An operation with a control-plane quota, on a client without botocore's own retries."""
    client = session.client("apigateway", attempts=1)
    return retry_while_throttled(operation, lambda: call(client), session)


def integration_uri(session: CloudSession, function_arn: str) -> str:
    return (
        f"arn:{session.partition}:apigateway:{session.region}:lambda:path/2015-03-31/functions/"
        f"{function_arn}/invocations"
    )


def method_arn(session: CloudSession, api_id: str, path: str, stage: str = STAGE, method: str = "POST") -> str:
    """The execute-api ARN of one method on one stage: what the Lambda permission allows."""
    return session.arn("execute-api", f"{api_id}/{stage}/{method}/{path}")


def invoke_url(session: CloudSession, api_id: str, stage: str = STAGE) -> str:
    if session.execute_api_url:
        return f"{session.execute_api_url.rstrip('/')}/{stage}"
    suffix = "amazonaws.com.cn" if session.partition == "aws-cn" else "amazonaws.com"
    return f"https://{api_id}.execute-api.{session.region}.{suffix}/{stage}"


# --------------------------------------------------------------------------- the API and its routes


def find_rest_api(session: CloudSession) -> dict | None:
    client = session.client("apigateway")
    for page in client.get_paginator("get_rest_apis").paginate():
        for api in page["items"]:
            if api["name"] == API_NAME and tags.SHARED_TAG in (api.get("tags") or {}):
                return api
    return None


def ensure_rest_api(session: CloudSession) -> tuple[str, bool]:
    api = find_rest_api(session)
    if api is not None:
        return api["id"], False
    api = _metered(session, "CreateRestApi", lambda client: client.create_rest_api(
        name=API_NAME,
        description="l2c: prediction APIs in front of SageMaker endpoints",
        endpointConfiguration={"types": ["REGIONAL"]},
        apiKeySource="HEADER",
        tags=tags.shared_tags(),
    ))
    return api["id"], True


def resources(session: CloudSession, api_id: str) -> list[dict]:
    paginator = session.client("apigateway").get_paginator("get_resources")
    return [item for page in paginator.paginate(restApiId=api_id, embed=["methods"]) for item in page["items"]]


def ensure_resource(session: CloudSession, api_id: str, path_part: str) -> str:
    items = resources(session, api_id)
    for item in items:
        if item["path"] == f"/{path_part}":
            return item["id"]
    root = next(item["id"] for item in items if item["path"] == "/")
    created = session.client("apigateway").create_resource(restApiId=api_id, parentId=root, pathPart=path_part)
    return created["id"]


def ensure_post_method(
    session: CloudSession, api_id: str, resource_id: str, uri: str, api_key_required: bool
) -> bool:
    """POST with a Lambda proxy integration; True when anything had to change."""
    client = session.client("apigateway")
    try:
        method = client.get_method(restApiId=api_id, resourceId=resource_id, httpMethod="POST")
    except ClientError as err:
        if err.response["Error"]["Code"] != "NotFoundException":
            raise
        method = None
    if method is not None and method.get("apiKeyRequired", False) != api_key_required:
        # Replaced rather than patched: PATCH on a method is missing from moto, and the stage
        # keeps serving its deployed snapshot until the redeploy below anyway.
        client.delete_method(restApiId=api_id, resourceId=resource_id, httpMethod="POST")
        method = None
    if method is None:
        client.put_method(
            restApiId=api_id,
            resourceId=resource_id,
            httpMethod="POST",
            authorizationType="NONE",
            apiKeyRequired=api_key_required,
        )
    integration = (method or {}).get("methodIntegration") or {}
    if integration.get("type") == "AWS_PROXY" and integration.get("uri") == uri and method is not None:
        return False
    client.put_integration(
        restApiId=api_id,
        resourceId=resource_id,
        httpMethod="POST",
        type="AWS_PROXY",
        integrationHttpMethod="POST",  # Lambda is always invoked with POST, whatever the client used
        uri=uri,
    )
    return True


def routes_fingerprint(session: CloudSession, api_id: str) -> str:
    routes = []
    for item in resources(session, api_id):
        for verb, method in sorted((item.get("resourceMethods") or {}).items()):
            integration = method.get("methodIntegration") or {}
            routes.append(
                [item["path"], verb, bool(method.get("apiKeyRequired")), integration.get("type"), integration.get("uri")]
            )
    return hashlib.sha256(json.dumps(sorted(routes)).encode()).hexdigest()[:16]


def ensure_stage_deployed(session: CloudSession, api_id: str, stage: str = STAGE) -> bool:
    """Deploy the routes to the stage unless it already serves them; True when it redeployed."""
    client = session.client("apigateway")
    description = _FINGERPRINT_PREFIX + routes_fingerprint(session, api_id)
    current = get_stage(session, api_id, stage)
    if current is not None and _deployment_description(session, api_id, current["deploymentId"]) == description:
        return False
    deployment = _metered(
        session, "CreateDeployment", lambda metered: metered.create_deployment(restApiId=api_id, description=description)
    )["id"]
    if current is None:
        client.create_stage(restApiId=api_id, stageName=stage, deploymentId=deployment, tags=tags.shared_tags())
    else:
        client.update_stage(
            restApiId=api_id,
            stageName=stage,
            patchOperations=[{"op": "replace", "path": "/deploymentId", "value": deployment}],
        )
        _delete_deployment(session, api_id, current["deploymentId"])
    return True


def ensure_stage_throttling(session: CloudSession, api_id: str, limits: Limits, stage: str = STAGE) -> bool:
    """Stage-wide throttling of every method (method settings ``*/*``); True when it changed.

    A usage plan throttles only requests that carry its key, and AWS calls those limits best
    effort (API Gateway Developer Guide, "Throttle requests to your REST APIs"): a public API
    would have no limit at all but the account's. The stage-wide one holds for every caller
    together, with or without a key."""
    settings = ((get_stage(session, api_id, stage) or {}).get("methodSettings") or {}).get("*/*") or {}
    wanted = {"rateLimit": float(limits.rate_limit), "burstLimit": int(limits.burst_limit)}
    current = {"rateLimit": settings.get("throttlingRateLimit"), "burstLimit": settings.get("throttlingBurstLimit")}
    patches = [
        {"op": "replace", "path": f"/*/*/throttling/{name}", "value": str(value)}
        for name, value in wanted.items() if current[name] is None or float(current[name]) != float(value)
    ]
    if patches:
        session.client("apigateway").update_stage(restApiId=api_id, stageName=stage, patchOperations=patches)
    return bool(patches)


def get_stage(session: CloudSession, api_id: str, stage: str = STAGE) -> dict | None:
    return get_if_present(
        lambda: session.client("apigateway").get_stage(restApiId=api_id, stageName=stage), NOT_FOUND
    )


def _deployment_description(session: CloudSession, api_id: str, deployment: str) -> str | None:
    found = get_if_present(
        lambda: session.client("apigateway").get_deployment(restApiId=api_id, deploymentId=deployment), NOT_FOUND
    )
    return found.get("description") if found else None


def _delete_deployment(session: CloudSession, api_id: str, deployment: str) -> None:
    delete_if_present(
        lambda: session.client("apigateway").delete_deployment(restApiId=api_id, deploymentId=deployment),
        {"NotFoundException", "BadRequestException"},
    )


def deployments(session: CloudSession, api_id: str) -> list[dict]:
    paginator = session.client("apigateway").get_paginator("get_deployments")
    return [item for page in paginator.paginate(restApiId=api_id) for item in page["items"]]


# --------------------------------------------------------------------------- key and usage plan


def ensure_usage_plan(session: CloudSession, api_id: str, limits: Limits, stage: str = STAGE) -> str:
    client = session.client("apigateway")
    plan = find_usage_plan(session)
    if plan is None:
        return client.create_usage_plan(
            name=PLAN_NAME,
            description="l2c: throttle and quota for the prediction APIs",
            apiStages=[{"apiId": api_id, "stage": stage}],
            throttle=limits.throttle(),
            quota=limits.quota(),
            tags=tags.shared_tags(),
        )["id"]
    patches = _usage_plan_patches(plan, api_id, stage, limits)
    if patches:
        _update_usage_plan(session, plan["id"], patches)
    return plan["id"]


def _update_usage_plan(session: CloudSession, plan_id: str, patches: list[dict]) -> None:
    # One call for every change: UpdateUsagePlan is metered at one call per 20 s per account.
    _metered(session, "UpdateUsagePlan", lambda client: client.update_usage_plan(usagePlanId=plan_id, patchOperations=patches))


def _usage_plan_patches(plan: dict, api_id: str, stage: str, limits: Limits) -> list[dict]:
    patches = []
    stages = {(item["apiId"], item["stage"]) for item in plan.get("apiStages", [])}
    if (api_id, stage) not in stages:
        patches.append({"op": "add", "path": "/apiStages", "value": f"{api_id}:{stage}"})
    throttle = plan.get("throttle") or {}
    if float(throttle.get("rateLimit", -1)) != float(limits.rate_limit):
        patches.append({"op": "replace", "path": "/throttle/rateLimit", "value": str(float(limits.rate_limit))})
    if int(throttle.get("burstLimit", -1)) != int(limits.burst_limit):
        patches.append({"op": "replace", "path": "/throttle/burstLimit", "value": str(int(limits.burst_limit))})
    quota = plan.get("quota") or {}
    if int(quota.get("limit", -1)) != int(limits.quota_limit):
        patches.append({"op": "replace", "path": "/quota/limit", "value": str(int(limits.quota_limit))})
    if quota.get("period") != limits.quota_period:
        patches.append({"op": "replace", "path": "/quota/period", "value": limits.quota_period})
    return patches


def find_usage_plan(session: CloudSession) -> dict | None:
    paginator = session.client("apigateway").get_paginator("get_usage_plans")
    for page in paginator.paginate():
        for plan in page["items"]:
            if plan["name"] == PLAN_NAME and tags.SHARED_TAG in (plan.get("tags") or {}):
                return plan
    return None


def ensure_api_key(session: CloudSession, plan_id: str, value: str | None = None) -> tuple[str, str]:
    """The shared API key, linked to the usage plan; returns its id and value.

    ``value`` only applies when the key is created; None lets API Gateway generate one.
    """
    client = session.client("apigateway")
    key = find_api_key(session)
    if key is None:
        extra = {"value": value} if value else {}
        key = client.create_api_key(
            name=KEY_NAME, description="l2c: key for the prediction APIs", enabled=True, tags=tags.shared_tags(), **extra
        )
    linked = {item["id"] for item in _usage_plan_keys(session, plan_id)}
    if key["id"] not in linked:
        client.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
    return key["id"], key["value"]


def find_api_key(session: CloudSession) -> dict | None:
    paginator = session.client("apigateway").get_paginator("get_api_keys")
    for page in paginator.paginate(nameQuery=KEY_NAME, includeValues=True):
        for key in page["items"]:
            if key["name"] == KEY_NAME and tags.SHARED_TAG in (key.get("tags") or {}):
                return key
    return None


def _usage_plan_keys(session: CloudSession, plan_id: str) -> list[dict]:
    paginator = session.client("apigateway").get_paginator("get_usage_plan_keys")
    return [item for page in paginator.paginate(usagePlanId=plan_id) for item in page["items"]]


# --------------------------------------------------------------------------- remove


def remove_resource(session: CloudSession, api_id: str, path_part: str) -> bool:
    for item in resources(session, api_id):
        if item["path"] == f"/{path_part}":
            session.client("apigateway").delete_resource(restApiId=api_id, resourceId=item["id"])
            return True
    return False


def routed_paths(session: CloudSession, api_id: str) -> list[str]:
    return sorted(item["path"] for item in resources(session, api_id) if item["path"] != "/")


def delete_shared(session: CloudSession) -> list[str]:
    """Delete the usage plan, the key and the API (when no model uses them any more)."""
    client = session.client("apigateway")
    deleted = []
    plan = find_usage_plan(session)
    if plan is not None:
        for key in _usage_plan_keys(session, plan["id"]):
            client.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
        detach_stages(session, plan)
        delete_if_present(lambda: client.delete_usage_plan(usagePlanId=plan["id"]), NOT_FOUND)
        deleted.append(f"usage plan {PLAN_NAME}")
    key = find_api_key(session)
    if key is not None:
        client.delete_api_key(apiKey=key["id"])
        deleted.append(f"API key {KEY_NAME}")
    api = find_rest_api(session)
    if api is not None:
        _metered(session, "DeleteRestApi", lambda metered: delete_if_present(
            lambda: metered.delete_rest_api(restApiId=api["id"]), NOT_FOUND
        ))
        deleted.append(f"REST API {API_NAME} ({api['id']})")
    return deleted


def detach_stages(session: CloudSession, plan: dict) -> bool:
    """Take every API stage off the plan: AWS refuses to delete a usage plan that still has one
    (BadRequestException "Cannot delete Usage Plan ... because there are API Stages associated",
    aws/aws-sdk-js#3841, boto/boto3#2629). One call removes them all: the quota is per call."""
    stages = [f"{item['apiId']}:{item['stage']}" for item in plan.get("apiStages") or []]
    if stages:
        _update_usage_plan(
            session, plan["id"], [{"op": "remove", "path": "/apiStages", "value": stage} for stage in stages]
        )
    return bool(stages)


# --------------------------------------------------------------------------- one route per stack


def refuse_route_collision(session: CloudSession, stack: str) -> None:
    """Refuse a stack whose route another stack already has (``iris-v2`` and ``irisv2`` both
    route to ``/irisv2prediction``), before anything is created for it."""
    path = resource_path(stack)
    others = sorted(name for name in _known_stacks(session) if name != stack and resource_path(name) == path)
    owner = _route_owner(session, path)
    if owner is not None and owner != stack:
        others = sorted({*others, owner})
    if others:
        raise CloudError(
            f"stack {stack} would route to /{path}, which stack {others[0]} already uses "
            f"(hyphens and underscores are dropped from routes); pick another name, or destroy {others[0]} first"
        )


def _known_stacks(session: CloudSession) -> set[str]:
    """Stacks that got past their first step (the artifact upload) or have a function."""
    names = {key.split("/", 1)[0] for key in s3.list_keys(session, s3.bucket_name(session))}
    names |= {tags.stack_of(function["tags"]) for function in functions.list_functions(session)}
    return {name for name in names if name}


def _route_owner(session: CloudSession, path: str) -> str | None:
    """The stack whose function the route's POST integration calls (its name is ``l2c-<stack>``)."""
    api = find_rest_api(session)
    if api is None:
        return None
    for item in resources(session, api["id"]):
        if item["path"] == f"/{path}":
            uri = ((item.get("resourceMethods") or {}).get("POST", {}).get("methodIntegration") or {}).get("uri", "")
            function = uri.split(":function:", 1)[1].split("/", 1)[0] if ":function:" in uri else ""
            return function.removeprefix("l2c-") or None
    return None
