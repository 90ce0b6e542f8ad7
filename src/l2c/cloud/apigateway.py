"""The REST API in front of the Lambda functions: the tutorial's URL, made safe to publish.

One REST API (``l2c``) per account and region holds a resource per model (``/irisprediction``,
``/housepriceprediction``), so one base URL and one API key serve every model, as the Postman
environment expects. Each resource has a POST method with a Lambda proxy integration; the
stage ``test`` is redeployed only when the routes changed, which the deployment's description
records as a fingerprint. An API key and a usage plan (throttle and quota) guard the stage.

For browsers on one allowed origin (CORS), each resource also has an OPTIONS method answering the
preflight, and the API's own errors carry the CORS headers: see :func:`ensure_cors_method`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

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
    api = _metered(
        session,
        "CreateRestApi",
        lambda client: client.create_rest_api(
            name=API_NAME,
            description="l2c: prediction APIs in front of SageMaker endpoints",
            endpointConfiguration={"types": ["REGIONAL"]},
            apiKeySource="HEADER",
            tags=tags.shared_tags(),
        ),
    )
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


def ensure_post_method(session: CloudSession, api_id: str, resource_id: str, uri: str, api_key_required: bool) -> bool:
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
    """What the stage must serve: the routes, the static headers of MOCK answers, and the API's
    customised gateway responses. A stage serves its deployment's snapshot of all three until
    the API is deployed again ("After you enable CORS support on your resource, you must deploy
    or redeploy the API for the new settings to take effect": API Gateway Developer Guide,
    "Enable CORS on a resource using the API Gateway console", how-to-cors-console.html)."""
    routes = []
    for item in resources(session, api_id):
        for verb, method in sorted((item.get("resourceMethods") or {}).items()):
            integration = method.get("methodIntegration") or {}
            route = [
                item["path"],
                verb,
                bool(method.get("apiKeyRequired")),
                integration.get("type"),
                integration.get("uri"),
            ]
            answers = integration.get("integrationResponses") or {}
            if answers:  # only MOCK methods have them here: routes without keep their earlier fingerprint
                route.append(
                    sorted(
                        (status, sorted((answer.get("responseParameters") or {}).items()))
                        for status, answer in answers.items()
                    )
                )
            routes.append(route)
    for response in customised_gateway_responses(session, api_id):
        routes.append(
            [
                "gateway response",
                response["responseType"],
                response.get("statusCode"),
                sorted((response.get("responseParameters") or {}).items()),
            ]
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
        session,
        "CreateDeployment",
        lambda metered: metered.create_deployment(restApiId=api_id, description=description),
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
        for name, value in wanted.items()
        if current[name] is None or float(current[name]) != float(value)
    ]
    if patches:
        session.client("apigateway").update_stage(restApiId=api_id, stageName=stage, patchOperations=patches)
    return bool(patches)


def get_stage(session: CloudSession, api_id: str, stage: str = STAGE) -> dict | None:
    return get_if_present(lambda: session.client("apigateway").get_stage(restApiId=api_id, stageName=stage), NOT_FOUND)


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


# --------------------------------------------------------------------------- CORS
#
# A page on another origin that POSTs JSON with an x-api-key header makes the browser send a
# preflight OPTIONS first, without the key or any custom header. For a Lambda proxy route, AWS's
# recipe (API Gateway Developer Guide, "CORS for REST APIs in API Gateway",
# https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-cors.html, and "Enable CORS
# on a resource using the API Gateway console", how-to-cors-console.html) is what the console's
# "Enable CORS" makes: an OPTIONS method with a MOCK integration whose 200 method response declares
# the Access-Control-Allow-* headers and whose integration response maps them to static values,
# passthrough NEVER; the POST's own answers carry Access-Control-Allow-Origin from the function
# (CORS_ALLOW_ORIGIN); and the gateway responses DEFAULT_4XX / DEFAULT_5XX carry the headers
# too, so a browser shows the gateway's 403 or 429 instead of "Failed to fetch" ("Gateway
# response types", supported-gateway-response-types.html: every 4XX and 5XX type not customised
# falls back to them).

NO_CORS = "none"  # --cors-origin none: no OPTIONS method, no CORS headers anywhere
ANY_ORIGIN = "*"
# What the page sends besides the CORS-safelisted headers, and the console's default list; the
# function's answers name the same (src/l2c/lambda/lambda_function.py, CORS_HEADERS).
CORS_ALLOW_HEADERS = "Content-Type,X-Api-Key,Authorization,X-Amz-Date,X-Amz-Security-Token"
CORS_ALLOW_METHODS = "OPTIONS,POST"
# Seconds a browser may reuse a preflight's answer (Chromium caps it at 7200): a changed origin
# reaches browsers within this, and a page's repeated calls cost one request each, not two.
CORS_MAX_AGE = "600"
PREFLIGHT_TEMPLATE = {"application/json": '{"statusCode": 200}'}
# The body of API Gateway's default gateway responses, {"message": "..."}: a customised response
# without a template of its own would lose it.
GATEWAY_RESPONSE_TEMPLATE = {"application/json": '{"message": $context.error.messageString}'}
CORS_GATEWAY_RESPONSES = ("DEFAULT_4XX", "DEFAULT_5XX")

# An origin as a browser serialises it (RFC 6454 section 6.2; Fetch, "origin"): lower-case scheme
# and host, a port only when it is not the scheme's default, no path, query or trailing slash.
# The header is compared with it character for character, so anything else would never match.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_ORIGIN = re.compile(
    rf"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_ORIGIN_EXAMPLE = "e.g. https://example.com or http://127.0.0.1:8000"


def check_cors_origin(origin: str) -> str:
    """The origin a browser will send, or CloudError in one line saying what to give instead."""
    if origin in (NO_CORS, ANY_ORIGIN):
        return origin
    if origin == "null":
        raise CloudError(
            "--cors-origin null is the origin of pages opened from a file or sandboxed, which any page can "
            f"claim: serve the page over HTTP and give that origin ({_ORIGIN_EXAMPLE})"
        )
    found = _ORIGIN.fullmatch(origin)
    if found is None:
        raise CloudError(_not_an_origin(origin))
    port = found["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        raise CloudError(f"--cors-origin {origin}: port {port} is out of range (1 to 65535)")
    if port is not None and _DEFAULT_PORTS.get(found["scheme"]) == port:
        plain = f"{found['scheme']}://{found['host']}"
        raise CloudError(f"--cors-origin {origin}: browsers send this origin as {plain} (no default port); give that")
    return origin


def _not_an_origin(origin: str) -> str:
    lowered = origin.lower()
    if lowered != origin and _ORIGIN.fullmatch(lowered):
        return f"--cors-origin {origin}: browsers send origins in lower case ({lowered}); give that"
    parts = urlsplit(origin)
    if parts.scheme and parts.netloc and (parts.path or parts.query or parts.fragment):
        bare = f"{parts.scheme}://{parts.netloc}"
        if _ORIGIN.fullmatch(bare.lower()):
            return f"--cors-origin {origin} has a path: an origin is scheme://host[:port] only, here {bare.lower()}"
    return f"--cors-origin {origin!r} is not an origin: give scheme://host[:port] without a path, {_ORIGIN_EXAMPLE}"


def origin_of(url: str) -> str:
    """The origin of a URL, as a page served from it has (``http://127.0.0.1:4566/x`` -> ``http://127.0.0.1:4566``)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    port = parts.port
    shown = "" if port is None or _DEFAULT_PORTS.get(scheme) == str(port) else f":{port}"
    return f"{scheme}://{host}{shown}"


def cors_method_headers(origin: str) -> dict[str, str]:
    """The preflight's headers as the integration response maps them: static values, single-quoted."""
    values = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
        "Access-Control-Max-Age": CORS_MAX_AGE,
    }
    return {f"method.response.header.{name}": f"'{value}'" for name, value in values.items()}


def cors_gateway_headers(origin: str) -> dict[str, str]:
    values = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS}
    return {f"gatewayresponse.header.{name}": f"'{value}'" for name, value in values.items()}


def _get_method(session: CloudSession, api_id: str, resource_id: str, verb: str) -> dict | None:
    return get_if_present(
        lambda: session.client("apigateway").get_method(restApiId=api_id, resourceId=resource_id, httpMethod=verb),
        NOT_FOUND,
    )


def _is_cors_method(method: dict, origin: str) -> bool:
    """Whether the OPTIONS method is exactly the preflight l2c makes for this origin."""
    integration = method.get("methodIntegration") or {}
    declared = ((method.get("methodResponses") or {}).get("200") or {}).get("responseParameters") or {}
    mapped = ((integration.get("integrationResponses") or {}).get("200") or {}).get("responseParameters") or {}
    wanted = cors_method_headers(origin)
    return (
        method.get("authorizationType") == "NONE"
        and not method.get("apiKeyRequired", False)
        and integration.get("type") == "MOCK"
        and integration.get("requestTemplates") == PREFLIGHT_TEMPLATE
        and integration.get("passthroughBehavior") == "NEVER"
        and list(method.get("methodResponses") or {}) == ["200"]
        and set(declared) == set(wanted)
        and mapped == wanted
    )


def ensure_cors_method(session: CloudSession, api_id: str, resource_id: str, origin: str) -> bool:
    """The resource's OPTIONS preflight for ``origin``; True when anything had to change.

    No key and no authorizer: the browser's preflight carries neither, and a 403 to it blocks the
    real request. An OPTIONS that is not exactly this one (another origin, say) is replaced whole:
    the stage keeps serving its deployed snapshot until the redeploy that follows."""
    client = session.client("apigateway")
    current = _get_method(session, api_id, resource_id, "OPTIONS")
    if current is not None and _is_cors_method(current, origin):
        return False
    if current is not None:
        client.delete_method(restApiId=api_id, resourceId=resource_id, httpMethod="OPTIONS")
    where = {"restApiId": api_id, "resourceId": resource_id, "httpMethod": "OPTIONS"}
    headers = cors_method_headers(origin)
    client.put_method(**where, authorizationType="NONE", apiKeyRequired=False)
    # The method response declares the headers first: AWS refuses an integration response that maps
    # a header the method response lacks ("Invalid mapping expression parameter specified").
    client.put_method_response(**where, statusCode="200", responseParameters={name: False for name in headers})
    client.put_integration(**where, type="MOCK", requestTemplates=PREFLIGHT_TEMPLATE, passthroughBehavior="NEVER")
    client.put_integration_response(
        **where, statusCode="200", responseParameters=headers, responseTemplates={"application/json": ""}
    )
    return True


def remove_cors_method(session: CloudSession, api_id: str, resource_id: str) -> bool:
    """No preflight on the resource (an API without CORS); True when one was deleted."""
    return delete_if_present(
        lambda: session.client("apigateway").delete_method(
            restApiId=api_id, resourceId=resource_id, httpMethod="OPTIONS"
        ),
        NOT_FOUND,
    )


def customised_gateway_responses(session: CloudSession, api_id: str) -> list[dict]:
    """The API's gateway responses that differ from API Gateway's defaults. AWS lists every type,
    its defaults marked ``defaultResponse`` (API reference, GetGatewayResponses)."""
    paginator = session.client("apigateway").get_paginator("get_gateway_responses")
    return [
        item
        for page in paginator.paginate(restApiId=api_id)
        for item in page["items"]
        if not item.get("defaultResponse")
    ]


def gateway_cors_origin(session: CloudSession, api_id: str) -> str | None:
    """The origin the API's DEFAULT_4XX response allows now, None without CORS headers."""
    for response in customised_gateway_responses(session, api_id):
        if response["responseType"] == "DEFAULT_4XX":
            value = (response.get("responseParameters") or {}).get("gatewayresponse.header.Access-Control-Allow-Origin")
            return value.strip("'") if value else None
    return None


def _allows_an_origin(response: dict | None) -> bool:
    return "gatewayresponse.header.Access-Control-Allow-Origin" in ((response or {}).get("responseParameters") or {})


def ensure_cors_gateway_responses(session: CloudSession, api_id: str, origin: str | None) -> bool:
    """DEFAULT_4XX and DEFAULT_5XX with the CORS headers of ``origin`` (None: API Gateway's own
    defaults back); True when anything changed. Their status is left unset, so each error keeps
    its own (403, 429, 502...): a status on DEFAULT_4XX would become every 4XX's."""
    client = session.client("apigateway")
    current = {item["responseType"]: item for item in customised_gateway_responses(session, api_id)}
    changed = False
    for response_type in CORS_GATEWAY_RESPONSES:
        present = current.get(response_type)
        if origin is None:
            if _allows_an_origin(present):
                delete_if_present(
                    lambda: client.delete_gateway_response(restApiId=api_id, responseType=response_type), NOT_FOUND
                )
                changed = True
            continue
        wanted = cors_gateway_headers(origin)
        if (
            present is not None
            and (present.get("responseParameters") or {}) == wanted
            and not present.get("statusCode")
            and present.get("responseTemplates") == GATEWAY_RESPONSE_TEMPLATE
        ):
            continue
        client.put_gateway_response(
            restApiId=api_id,
            responseType=response_type,
            responseParameters=wanted,
            responseTemplates=GATEWAY_RESPONSE_TEMPLATE,
        )
        changed = True
    return changed


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
    _metered(
        session,
        "UpdateUsagePlan",
        lambda client: client.update_usage_plan(usagePlanId=plan_id, patchOperations=patches),
    )


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
            name=KEY_NAME,
            description="l2c: key for the prediction APIs",
            enabled=True,
            tags=tags.shared_tags(),
            **extra,
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
        _metered(
            session,
            "DeleteRestApi",
            lambda metered: delete_if_present(lambda: metered.delete_rest_api(restApiId=api["id"]), NOT_FOUND),
        )
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
