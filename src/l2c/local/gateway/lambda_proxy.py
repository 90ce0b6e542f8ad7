"""Lambda proxy integrations (AWS_PROXY): the function's permission, the REST proxy event, its answer as HTTP.

The function's resource policy must allow API Gateway to invoke it from this method's ARN (else
500, as on AWS); the REST proxy event is built, the deployed function runs in its worker, and its
answer is checked: not a proxy response -> 502 (``Malformed Lambda proxy response``), handler
error or crash -> 502, timeout -> 504. A function already at its concurrency (Lambda throttles
the call) -> 500 at once: nothing waits for a function's executions, so a slow one holds up only
its own callers.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

from l2c.local.gateway.messages import (
    ApiRoute,
    GatewayError,
    Request,
    Response,
    configuration_error,
    gateway_headers,
    internal_error,
)
from l2c.local.gateway.quotas import INTEGRATION_TIMEOUT_S
from l2c.local.gateway.trace import Trace
from l2c.local.lambdas import InvocationCrashed, InvocationThrottled, InvocationTimeout, LambdaHost

_PROXY_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
# One logger for the whole gateway: its warnings are counted and filtered by this name.
log = logging.getLogger("l2c.local.gateway")


def invoke(
    lambdas: LambdaHost, route: ApiRoute, request: Request, request_id: str, key: dict | None, trace: Trace
) -> Response:
    """Run the method's Lambda function on the request and answer with what it returns, as API Gateway does."""
    integration = route.method.get("methodIntegration") or {}
    config = lambdas.configuration(function_arn(route.method))
    check_permission(lambdas, route, config, trace)
    if config.get("State") == "Pending":
        # Lambda refuses Invoke (ResourceConflictException) until the function is Active; the
        # gateway cannot reach the function and answers the caller with its own 500.
        trace.add(
            "Execution failed due to configuration error: the function is currently in the following state: Pending"
        )
        raise configuration_error()
    event = proxy_event(route, request, request_id, key)
    timeout = min(float(config.get("Timeout", 3)), INTEGRATION_TIMEOUT_S)
    endpoint = _lambda_endpoint(integration.get("uri", ""))
    trace.add(f"Endpoint request URI: {endpoint}")
    trace.add(f"Endpoint request body after transformations: {json.dumps(event)[:1000]}")
    trace.add(f"Sending request to {endpoint}")
    started = time.monotonic()
    try:
        invocation = lambdas.invoke(config, event, timeout)
    except InvocationThrottled:
        # What API Gateway answers when Lambda throttles the call (429 TooManyRequestsException
        # "Rate Exceeded."): 500 Internal server error (AWS knowledge center, "How do I
        # troubleshoot issues for API Gateway endpoints that integrate with Lambda?",
        # "Throttling occurs").
        log.warning("%s throttled: its concurrency is in use", config["FunctionName"])
        trace.add("Lambda invocation failed with status: 429")
        trace.add("Execution failed due to configuration error: Rate Exceeded.")
        raise configuration_error() from None
    except InvocationTimeout:
        trace.add("Execution failed due to a timeout error")
        raise GatewayError(504, "Endpoint request timed out", "IntegrationTimeout", "INTEGRATION_TIMEOUT") from None
    except InvocationCrashed as crash:
        log.warning("%s crashed: %s", config["FunctionName"], crash)
        trace.add(f"Lambda execution failed with status 200 due to customer function error: {crash}")
        raise internal_error() from None
    trace.add(f"Received response. Status: 200, Integration latency: {(time.monotonic() - started) * 1000:.0f} ms")
    trace.add(f"Endpoint response body before transformations: {json.dumps(invocation.payload)[:1000]}")
    if not invocation.ok:
        log.warning("%s failed: %s", config["FunctionName"], invocation.payload)
        trace.add(
            f"Lambda execution failed with status 200 due to customer function error: "
            f"{invocation.payload.get('errorMessage')}"
        )
        raise internal_error()
    try:
        return proxy_response(invocation.payload, request_id)
    except GatewayError:
        trace.add("Execution failed due to configuration error: Malformed Lambda proxy response")
        raise


# --------------------------------------------------------------------------- permission


def check_permission(lambdas: LambdaHost, route: ApiRoute, config: dict, trace: Trace) -> None:
    arn_parts = config["FunctionArn"].split(":")
    partition, region, account = arn_parts[1], arn_parts[3], arn_parts[4]
    source = (
        f"arn:{partition}:execute-api:{region}:{account}:{route.api_id}/"
        f"{route.stage['stageName']}/{route.verb}{route.resource['path']}"
    )
    for statement in lambdas.resource_policy(config["FunctionArn"]):
        if _allows_api_gateway(statement, source):
            return
    log.warning("no permission lets API Gateway invoke %s from %s", config["FunctionName"], source)
    trace.add("Execution failed due to configuration error: Invalid permissions on Lambda function")
    raise configuration_error()


def function_arn(method: dict) -> str:
    integration = method.get("methodIntegration") or {}
    uri = integration.get("uri", "")
    if integration.get("type") != "AWS_PROXY" or "/functions/" not in uri:
        log.warning("integration %s %s is not a Lambda proxy integration", integration.get("type"), uri)
        raise configuration_error()
    return uri.split("/functions/", 1)[1].rsplit("/invocations", 1)[0]


def _allows_api_gateway(statement: dict, source_arn: str) -> bool:
    principal = statement.get("Principal")
    service = principal.get("Service") if isinstance(principal, dict) else principal
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else actions or []
    if statement.get("Effect") != "Allow" or service not in ("apigateway.amazonaws.com", "*"):
        return False
    if not {"lambda:InvokeFunction", "lambda:*", "*"} & set(actions):
        return False
    conditions = statement.get("Condition", {}).get("ArnLike", {})
    allowed = conditions.get("AWS:SourceArn") or conditions.get("aws:SourceArn")
    return allowed is None or _arn_like(allowed, source_arn)


def _arn_like(pattern: str, arn: str) -> bool:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, arn) is not None


def _lambda_endpoint(uri: str) -> str:
    """``arn:aws:apigateway:{region}:lambda:path/{path}`` as the HTTPS URL API Gateway calls."""
    parts = uri.split(":", 5)
    if len(parts) < 6 or not parts[5].startswith("path/"):
        return uri
    return f"https://lambda.{parts[3]}.amazonaws.com/{parts[5].removeprefix('path/')}"


# --------------------------------------------------------------------------- the event and the answer


def proxy_event(route: ApiRoute, request: Request, request_id: str, key: dict | None) -> dict:
    """The REST API (v1) Lambda proxy event, field for field as API Gateway sends it."""
    query = parse_qsl(urlsplit(request.path).query, keep_blank_values=True)
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        multi_query.setdefault(name, []).append(value)
    body, is_base64 = _event_body(request.body)
    now = time.time()
    host = request.header("host") or ""
    stage = route.stage["stageName"]
    return {
        "resource": route.resource["path"],
        "path": route.path,
        "httpMethod": route.verb,
        "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": route.path_parameters or None,
        "stageVariables": route.stage.get("variables") or None,
        "requestContext": {
            "resourceId": route.resource["id"],
            "resourcePath": route.resource["path"],
            "httpMethod": route.verb,
            "extendedRequestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{route.path}",
            "accountId": _account_of(route.method),
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "cognitoIdentityId": None,
                "apiKey": key["value"] if key else None,
                "apiKeyId": key["id"] if key else None,
                "principalOrgId": None,
                "cognitoAuthenticationType": None,
                "userArn": None,
                "userAgent": request.header("user-agent"),
                "accountId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "accessKey": None,
                "cognitoAuthenticationProvider": None,
                "user": None,
            },
            "domainName": host,
            "deploymentId": route.stage.get("deploymentId"),
            "apiId": route.api_id,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _event_body(raw: bytes) -> tuple[str | None, bool]:
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), True


def _account_of(method: dict) -> str:
    return function_arn(method).split(":")[4]


def proxy_response(result, request_id: str) -> Response:
    """Check a Lambda proxy answer as API Gateway does and turn it into the HTTP response."""
    if not isinstance(result, dict) or not set(result) <= _PROXY_KEYS:
        log.warning("Malformed Lambda proxy response: %.200r", result)
        raise internal_error()
    status = result.get("statusCode")
    body = result.get("body")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or not 100 <= status <= 599 or not isinstance(body, (str, type(None))):
        log.warning("Malformed Lambda proxy response: %.200r", result)
        raise internal_error()
    headers = {"Content-Type": "application/json"}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ",".join(str(value) for value in values)
    headers.update({name: str(value) for name, value in (result.get("headers") or {}).items()})
    headers.update(gateway_headers(request_id))
    payload = (body or "").encode()
    if result.get("isBase64Encoded"):
        payload = base64.b64decode(payload)
    return Response(status, headers, payload)
