"""The local cloud's execute-api gateway and Lambda workers, with functions made for the purpose.

A REST API is built here with plain boto3, as any tool would build it, so these tests check the
gateway against API Gateway's behaviour rather than against l2c's own deploy code.
"""

from __future__ import annotations

import json
import textwrap
import time

import httpx
import pytest
from aws_helpers import LAMBDA_TRUST, zipped

from l2c.cloud.retries import retry_while_role_propagates
from l2c.cloud.session import CloudError
from l2c.local.cloud import LocalCloud, Ports

STAGE = "dev"
HANDLERS = {
    "echo": """
        import json, os
        calls = 0
        def handler(event, context):
            global calls
            calls += 1
            body = {"env": dict(os.environ), "event": event, "calls": calls,
                    "remaining_ms": context.get_remaining_time_in_millis(), "request_id": context.aws_request_id}
            return {"statusCode": 201, "headers": {"X-Echo": "yes"}, "body": json.dumps(body)}
    """,
    "sleepy": """
        import time
        def handler(event, context):
            time.sleep(float(event.get("queryStringParameters", {}).get("s", "0")))
            return {"statusCode": 200, "body": "awake"}
    """,
    "crash": """
        import os
        def handler(event, context):
            os._exit(3)
    """,
    "raises": """
        def handler(event, context):
            raise ValueError("no good")
    """,
    "malformed": """
        def handler(event, context):
            return {"statusCode": 200, "body": {"not": "a string"}}
    """,
}
TIMEOUTS = {"sleepy": 1}
FUNCTION_ENV = {"GREETING": "hello", "ENDPOINT_NAME": "not-used"}


@pytest.fixture(scope="module")
def api(cloud_session, local_cloud):
    """A REST API with one POST route per handler (plus one whose function grants no permission)."""
    gateway, lam, iam = (cloud_session.client(name) for name in ("apigateway", "lambda", "iam"))
    role = iam.create_role(
        RoleName="gateway-test-role",
        AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
    )["Role"]["Arn"]
    api_id = gateway.create_rest_api(name="gateway-test")["id"]
    root = gateway.get_resources(restApiId=api_id)["items"][0]["id"]
    routes = {name: name for name in HANDLERS} | {"noperm": "echo-noperm", "limited": "echo"}
    functions = {}
    for path, handler in routes.items():
        name = f"gateway-test-{handler}"
        if name not in functions:
            source = HANDLERS[handler.removesuffix("-noperm")]
            functions[name] = retry_while_role_propagates(
                lambda: lam.create_function(
                    FunctionName=name,
                    Runtime="python3.13",
                    Role=role,
                    Handler="app.handler",
                    Code={"ZipFile": zipped(source)},
                    Timeout=TIMEOUTS.get(handler, 10),
                    Environment={"Variables": FUNCTION_ENV},
                ),
                cloud_session,
            )["FunctionArn"]
            lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05})
        resource = gateway.create_resource(restApiId=api_id, parentId=root, pathPart=path)["id"]
        gateway.put_method(
            restApiId=api_id,
            resourceId=resource,
            httpMethod="POST",
            authorizationType="NONE",
            apiKeyRequired=(path == "limited"),
        )
        uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{functions[name]}/invocations"
        gateway.put_integration(
            restApiId=api_id,
            resourceId=resource,
            httpMethod="POST",
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=uri,
        )
        if path != "noperm":
            lam.add_permission(
                FunctionName=name,
                StatementId=f"api-{path}",
                Action="lambda:InvokeFunction",
                Principal="apigateway.amazonaws.com",
                SourceArn=f"arn:aws:execute-api:us-east-1:{cloud_session.account}:{api_id}/{STAGE}/POST/{path}",
            )
    gateway.create_deployment(restApiId=api_id, stageName=STAGE)
    yield {"id": api_id, "url": f"{local_cloud.api_url}/{STAGE}", "role": role}
    gateway.delete_rest_api(restApiId=api_id)
    for name in functions:
        lam.delete_function(FunctionName=name)
    iam.delete_role(RoleName="gateway-test-role")


def call(api, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{api['url']}/{path}", timeout=60, **kwargs)


def test_the_function_gets_a_rest_proxy_event(api, cloud_session):
    body = '{"data": "5.1,3.5"}'
    response = call(api, "echo", params={"q": "1"}, content=body, headers={"X-Caller": "tests"})
    assert response.status_code == 201 and response.headers["X-Echo"] == "yes"
    event = response.json()["event"]
    assert event["httpMethod"] == "POST" and event["resource"] == "/echo" and event["path"] == "/echo"
    assert event["body"] == body and event["isBase64Encoded"] is False
    assert event["headers"]["X-Caller"] == "tests" and event["queryStringParameters"] == {"q": "1"}
    context = event["requestContext"]
    assert (context["stage"], context["apiId"], context["path"]) == (STAGE, api["id"], f"/{STAGE}/echo")
    assert context["accountId"] == cloud_session.account and context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]


def test_the_function_runs_with_exactly_its_environment(api, local_cloud):
    answer = call(api, "echo", json={}).json()
    env = answer["env"]
    runtime_set = {
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_EXECUTION_ENV",
        "LAMBDA_TASK_ROOT",
        "LANG",
        "TZ",
        "PATH",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
        "LC_CTYPE",
    }
    assert set(env) - runtime_set == set(FUNCTION_ENV)
    assert {key: env[key] for key in FUNCTION_ENV} == FUNCTION_ENV
    assert env["AWS_ENDPOINT_URL"] == local_cloud.env["AWS_ENDPOINT_URL"]
    assert env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == local_cloud.env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "gateway-test-echo"
    assert 0 < answer["remaining_ms"] <= 10_000


def test_a_worker_stays_warm_until_its_code_is_redeployed(api, cloud_session):
    first, second = (call(api, "echo", json={}).json()["calls"] for _ in range(2))
    assert second == first + 1
    lam = cloud_session.client("lambda")
    lam.update_function_code(
        FunctionName="gateway-test-echo", ZipFile=zipped(textwrap.dedent(HANDLERS["echo"]) + "# v2\n")
    )
    assert call(api, "echo", json={}).json()["calls"] == 1


def test_a_function_past_its_timeout_is_a_504_and_the_next_call_works(api, cloud_session):
    started = time.monotonic()
    response = call(api, "sleepy", params={"s": "5"}, json={})
    assert response.status_code == 504 and response.json() == {"message": "Endpoint request timed out"}
    assert time.monotonic() - started < 4
    assert call(api, "sleepy", params={"s": "0"}, json={}).text == "awake"
    logs = cloud_session.client("logs").filter_log_events(logGroupName="/aws/lambda/gateway-test-sleepy")
    assert any("Task timed out after 1.00 seconds" in event["message"] for event in logs["events"])


@pytest.mark.parametrize("path", ["crash", "raises", "malformed"])
def test_a_failing_function_is_a_502(api, path):
    response = call(api, path, json={})
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_a_function_that_grants_api_gateway_no_permission_is_not_invoked(api):
    response = call(api, "noperm", json={})
    assert response.status_code == 500


def test_a_route_the_api_does_not_have_is_missing_authentication_token(api):
    for url in (f"{api['url']}/nope", api["url"].replace(f"/{STAGE}", "/nostage") + "/echo"):
        response = httpx.post(url, json={}, timeout=30)
        assert response.status_code == 403 and response.json() == {"message": "Missing Authentication Token"}


def test_the_explicit_restapis_url_reaches_the_same_route(api, local_cloud):
    url = f"{local_cloud.api_url}/restapis/{api['id']}/{STAGE}/_user_request_/echo"
    assert httpx.post(url, json={}, timeout=30).status_code == 201


@pytest.fixture
def key_in_plan(api, cloud_session):
    """Makes an API key in a usage plan of the test stage with the given limits; returns its value."""
    gateway = cloud_session.client("apigateway")
    made = []

    def make(**limits) -> str:
        number = len(made)
        key = gateway.create_api_key(name=f"gateway-test-key-{number}", enabled=True)
        plan = gateway.create_usage_plan(
            name=f"gateway-test-plan-{number}", apiStages=[{"apiId": api["id"], "stage": STAGE}], **limits
        )
        gateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
        made.append((plan["id"], key["id"]))
        return key["value"]

    yield make
    for plan_id, key_id in made:
        stage = {"op": "remove", "path": "/apiStages", "value": f"{api['id']}:{STAGE}"}
        gateway.update_usage_plan(usagePlanId=plan_id, patchOperations=[stage])
        gateway.delete_usage_plan(usagePlanId=plan_id)
        gateway.delete_api_key(apiKey=key_id)


def test_the_usage_plan_throttles_past_its_burst(api, key_in_plan):
    headers = {"x-api-key": key_in_plan(throttle={"rateLimit": 0.01, "burstLimit": 2})}
    statuses = [call(api, "limited", json={}, headers=headers).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    over = call(api, "limited", json={}, headers=headers)
    assert over.status_code == 429 and over.json() == {"message": "Too Many Requests"}


def test_the_usage_plan_enforces_its_quota(api, key_in_plan):
    headers = {"x-api-key": key_in_plan(quota={"limit": 2, "period": "DAY"})}
    statuses = [call(api, "limited", json={}, headers=headers).status_code for _ in range(2)]
    over = call(api, "limited", json={}, headers=headers)
    assert statuses == [201, 201]
    assert over.status_code == 429 and over.json() == {"message": "Limit Exceeded"}


def test_a_key_outside_any_plan_of_the_stage_or_disabled_is_forbidden(api, key_in_plan, cloud_session):
    gateway = cloud_session.client("apigateway")
    loose = gateway.create_api_key(name="gateway-test-loose-key", enabled=True)
    try:
        assert call(api, "limited", json={}, headers={"x-api-key": loose["value"]}).status_code == 403
    finally:
        gateway.delete_api_key(apiKey=loose["id"])
    value = key_in_plan(throttle={"rateLimit": 100.0, "burstLimit": 100})
    assert call(api, "limited", json={}, headers={"x-api-key": value}).status_code == 201
    key_id = next(k["id"] for k in gateway.get_api_keys(includeValues=True)["items"] if k["value"] == value)
    gateway.update_api_key(apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
    response = call(api, "limited", json={}, headers={"x-api-key": value})
    assert response.status_code == 403 and response.json() == {"message": "Forbidden"}
    assert call(api, "limited", json={}).status_code == 403


def test_a_port_in_use_is_a_clear_error(local_cloud):
    taken = int(local_cloud.api_url.rsplit(":", 1)[1])
    ports = Ports.free()
    with pytest.raises(CloudError, match=f"port {taken} .* is in use"):
        LocalCloud(Ports(ports.control_plane, ports.runtime, taken)).start()
