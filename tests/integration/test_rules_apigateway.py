"""API Gateway as AWS runs it: control-plane refusals and quotas, MOCK integrations, gateway responses,
new keys, header limits and TestInvokeMethod, through AWS_ENDPOINT_URL only.

The REST APIs are built here with plain boto3, as the console or any tool would build them.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from aws_helpers import LAMBDA_TRUST, error_of, unique, zipped
from botocore.exceptions import ClientError

from l2c.cloud.retries import retry, retry_while_role_propagates, role_not_ready

STAGE = "test"
CORS_HEADERS = {
    "method.response.header.Access-Control-Allow-Headers": "'Content-Type,X-Amz-Date,Authorization,X-Api-Key'",
    "method.response.header.Access-Control-Allow-Methods": "'GET,OPTIONS'",
    "method.response.header.Access-Control-Allow-Origin": "'*'",
}
ECHO = """
    import json
    def handler(event, context):
        return {"statusCode": 201, "headers": {"X-Echo": "yes"}, "body": json.dumps(event)}
"""


@pytest.fixture(scope="module")
def gateway(cloud_session):
    return cloud_session.client("apigateway")


def add_mock_method(
    gateway, api_id, resource_id, verb, *, template='{"statusCode": 200}', responses=None, key_required=False
):
    """A MOCK method; ``responses`` maps status -> (selectionPattern, responseParameters, responseTemplates)."""
    gateway.put_method(
        restApiId=api_id, resourceId=resource_id, httpMethod=verb, authorizationType="NONE", apiKeyRequired=key_required
    )
    gateway.put_integration(
        restApiId=api_id,
        resourceId=resource_id,
        httpMethod=verb,
        type="MOCK",
        requestTemplates={"application/json": template},
    )
    for status, (pattern, parameters, templates) in (responses or {}).items():
        gateway.put_method_response(
            restApiId=api_id,
            resourceId=resource_id,
            httpMethod=verb,
            statusCode=status,
            responseParameters={name: False for name in parameters},
        )
        extra = {"selectionPattern": pattern} if pattern else {}
        gateway.put_integration_response(
            restApiId=api_id,
            resourceId=resource_id,
            httpMethod=verb,
            statusCode=status,
            responseParameters=parameters,
            responseTemplates=templates,
            **extra,
        )


def make_api(gateway, with_cors: bool) -> dict:
    api_id = gateway.create_rest_api(name=unique("rules-apigw"))["id"]
    root = gateway.get_resources(restApiId=api_id)["items"][0]["id"]
    resources = {}
    for path in ("hello", "status", "keyed", "nodefault"):
        resources[path] = gateway.create_resource(restApiId=api_id, parentId=root, pathPart=path)["id"]
    origin = {"method.response.header.Access-Control-Allow-Origin": "'*'"}
    add_mock_method(
        gateway,
        api_id,
        resources["hello"],
        "GET",
        responses={"200": (None, origin, {"application/json": '{"hello": "world"}'})},
    )
    if with_cors:  # what the console's "Enable CORS" makes
        add_mock_method(
            gateway,
            api_id,
            resources["hello"],
            "OPTIONS",
            responses={"200": (None, CORS_HEADERS, {"application/json": ""})},
        )
    add_mock_method(
        gateway,
        api_id,
        resources["status"],
        "GET",
        template='{"statusCode": 404}',
        responses={
            "200": (None, {}, {"application/json": '{"found": true}'}),
            "404": ("404", {}, {"application/json": '{"found": false}'}),
        },
    )
    add_mock_method(
        gateway,
        api_id,
        resources["keyed"],
        "GET",
        key_required=True,
        responses={"200": (None, {}, {"application/json": '{"keyed": true}'})},
    )
    add_mock_method(gateway, api_id, resources["nodefault"], "GET", template='{"statusCode": 200}')
    gateway.create_deployment(restApiId=api_id, stageName=STAGE)
    return {"id": api_id, "resources": resources}


@pytest.fixture(scope="module")
def cors_api(gateway):
    api = make_api(gateway, with_cors=True)
    yield api
    gateway.delete_rest_api(restApiId=api["id"])


@pytest.fixture(scope="module")
def plain_api(gateway):
    api = make_api(gateway, with_cors=False)
    yield api
    gateway.delete_rest_api(restApiId=api["id"])


def url(local_cloud, api: dict, path: str) -> str:
    return f"{local_cloud.env['AWS_ENDPOINT_URL']}/restapis/{api['id']}/{STAGE}/_user_request_/{path}"


@pytest.fixture
def usage_plans(gateway):
    """Makes usage plans on a stage; removes their stages and keys, then deletes them, as AWS requires."""
    made = []

    def make(api_id: str, **limits) -> dict:
        plan = gateway.create_usage_plan(
            name=unique("rules-plan"), apiStages=[{"apiId": api_id, "stage": STAGE}], **limits
        )
        made.append(plan["id"])
        return plan

    yield make
    for plan_id in made:
        plan = gateway.get_usage_plan(usagePlanId=plan_id)
        for stage in plan.get("apiStages", []):
            gateway.update_usage_plan(
                usagePlanId=plan_id,
                patchOperations=[{"op": "remove", "path": "/apiStages", "value": f"{stage['apiId']}:{stage['stage']}"}],
            )
        for key in gateway.get_usage_plan_keys(usagePlanId=plan_id)["items"]:
            gateway.delete_usage_plan_key(usagePlanId=plan_id, keyId=key["id"])
            gateway.delete_api_key(apiKey=key["id"])
        gateway.delete_usage_plan(usagePlanId=plan_id)


def key_in(gateway, plan: dict) -> str:
    key = gateway.create_api_key(name=unique("rules-key"), enabled=True)
    gateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return key["value"]


# --------------------------------------------------------------------------- usage plans


def test_a_usage_plan_with_api_stages_cannot_be_deleted_until_they_are_removed(gateway, plain_api):
    plan = gateway.create_usage_plan(name=unique("rules-plan"), apiStages=[{"apiId": plain_api["id"], "stage": STAGE}])
    with pytest.raises(ClientError) as refused:
        gateway.delete_usage_plan(usagePlanId=plan["id"])
    assert error_of(refused) == (
        "BadRequestException",
        400,
        f"Cannot delete Usage Plan {plan['id']} because there are API Stages associated with it, including "
        f"{plain_api['id']}:{STAGE}",
    )
    gateway.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[{"op": "remove", "path": "/apiStages", "value": f"{plain_api['id']}:{STAGE}"}],
    )
    gateway.delete_usage_plan(usagePlanId=plan["id"])
    assert plan["id"] not in {item["id"] for item in gateway.get_usage_plans()["items"]}


# --------------------------------------------------------------------------- control-plane quotas


def assert_too_many_requests(call) -> list:
    """Calls in quick succession: one is accepted (the first may reach a cold moto late), the next refused."""
    accepted = []
    for _ in range(3):
        try:
            accepted.append(call())
        except ClientError as err:
            response = err.response
            assert (
                response["Error"]["Code"],
                response["ResponseMetadata"]["HTTPStatusCode"],
                response["Error"]["Message"],
            ) == ("TooManyRequestsException", 429, "Too Many Requests")
            assert int(response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
            assert len(accepted) <= 2
            return accepted
    pytest.fail("three calls in a row were all accepted")


def test_control_plane_calls_past_their_rate_quota_are_too_many_requests(
    cloud_session, gateway, plain_api, usage_plans, paced, local_cloud
):
    suite_pace = httpx.get(f"{local_cloud.env['AWS_ENDPOINT_URL']}/_l2c/pace").json()["pace"]
    once = cloud_session.client("apigateway", attempts=1)  # no retries: see the refusal itself
    spare = [gateway.create_rest_api(name=unique("rules-rate"))["id"] for _ in range(3)]
    plan = usage_plans(plain_api["id"])
    paced(0.5)  # 1 per 3 s, 5 s, 20 s and 30 s become 1.5 s, 2.5 s, 10 s and 15 s
    made = [api["id"] for api in assert_too_many_requests(lambda: once.create_rest_api(name=unique("rules-rate")))]
    assert_too_many_requests(lambda: once.create_deployment(restApiId=plain_api["id"], stageName=STAGE))
    describe = [{"op": "replace", "path": "/description", "value": "one"}]
    assert_too_many_requests(lambda: once.update_usage_plan(usagePlanId=plan["id"], patchOperations=describe))

    def delete_next():
        once.delete_rest_api(restApiId=spare[0])
        return spare.pop(0)

    assert_too_many_requests(delete_next)
    paced(suite_pace)  # botocore's own retries then get past the (suite-paced) quota
    for api_id in made + spare:
        gateway.delete_rest_api(restApiId=api_id)
    assert not {api["id"] for api in gateway.get_rest_apis(limit=500)["items"]} & set(made + spare)


# --------------------------------------------------------------------------- MOCK integrations and CORS


def test_a_mock_integration_answers_with_its_integration_response(local_cloud, plain_api):
    response = httpx.get(url(local_cloud, plain_api, "hello"))
    assert response.status_code == 200 and response.json() == {"hello": "world"}
    assert response.headers["access-control-allow-origin"] == "*"


def test_the_request_templates_status_code_selects_the_integration_response(local_cloud, plain_api):
    response = httpx.get(url(local_cloud, plain_api, "status"))
    assert response.status_code == 404 and response.json() == {"found": False}


def test_a_mock_without_a_matching_or_default_response_is_a_500(local_cloud, plain_api):
    response = httpx.get(url(local_cloud, plain_api, "nodefault"))
    assert response.status_code == 500 and response.json() == {"message": "Internal server error"}


def test_the_consoles_enable_cors_options_method_answers_a_preflight(local_cloud, cors_api):
    preflight = {"Origin": "https://example.com", "Access-Control-Request-Method": "GET"}
    response = httpx.options(url(local_cloud, cors_api, "hello"), headers=preflight)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET,OPTIONS"
    assert "X-Api-Key" in response.headers["access-control-allow-headers"]


def test_an_api_without_an_options_method_refuses_a_preflight_with_403_and_no_cors(local_cloud, plain_api):
    preflight = {"Origin": "https://example.com", "Access-Control-Request-Method": "GET"}
    response = httpx.options(url(local_cloud, plain_api, "hello"), headers=preflight)
    assert response.status_code == 403 and response.json() == {"message": "Missing Authentication Token"}
    assert not any(name.startswith("access-control-") for name in response.headers)


# --------------------------------------------------------------------------- gateway responses


@pytest.fixture(scope="module")
def shaped_api(gateway):
    """An API whose own errors are reshaped: DEFAULT_4XX adds CORS, INVALID_API_KEY and QUOTA_EXCEEDED
    have their own status and templates."""
    api = make_api(gateway, with_cors=False)
    gateway.put_gateway_response(
        restApiId=api["id"],
        responseType="DEFAULT_4XX",
        responseParameters={"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
    )
    gateway.put_gateway_response(
        restApiId=api["id"],
        responseType="INVALID_API_KEY",
        statusCode="401",
        responseParameters={"gatewayresponse.header.WWW-Authenticate": "'ApiKey'"},
        responseTemplates={
            "application/json": '{"error": $context.error.messageString, "type": "$context.error.responseType"}'
        },
    )
    gateway.put_gateway_response(
        restApiId=api["id"],
        responseType="QUOTA_EXCEEDED",
        responseTemplates={"application/json": '{"quota": $context.error.messageString}'},
    )
    yield api
    gateway.delete_rest_api(restApiId=api["id"])


def test_default_4xx_gateway_response_headers_apply_to_the_gateways_own_errors(local_cloud, shaped_api):
    response = httpx.get(url(local_cloud, shaped_api, "nowhere"))
    assert response.status_code == 403 and response.json() == {"message": "Missing Authentication Token"}
    assert response.headers["access-control-allow-origin"] == "*"


def test_a_specific_gateway_response_sets_status_headers_and_template(local_cloud, shaped_api):
    response = httpx.get(url(local_cloud, shaped_api, "keyed"))
    assert response.status_code == 401 and response.headers["www-authenticate"] == "ApiKey"
    assert response.json() == {"error": "Forbidden", "type": "INVALID_API_KEY"}


def test_quota_exceeded_uses_its_gateway_response(local_cloud, shaped_api, gateway, usage_plans):
    value = key_in(gateway, usage_plans(shaped_api["id"], quota={"limit": 1, "period": "DAY"}))
    deadline = time.monotonic() + 5
    while (first := httpx.get(url(local_cloud, shaped_api, "keyed"), headers={"x-api-key": value})).status_code == 401:
        assert time.monotonic() < deadline, "the new key never became usable"
        time.sleep(0.05)
    assert first.status_code == 200 and first.json() == {"keyed": True}
    over = httpx.get(url(local_cloud, shaped_api, "keyed"), headers={"x-api-key": value})
    assert over.status_code == 429 and over.json() == {"quota": "Limit Exceeded"}


# --------------------------------------------------------------------------- new keys and header limits


def test_a_new_api_key_is_forbidden_for_a_few_seconds_then_works(local_cloud, plain_api, gateway, usage_plans, paced):
    paced(0.2)  # 5 AWS seconds, here 1 s
    value = key_in(gateway, usage_plans(plain_api["id"]))
    early = httpx.get(url(local_cloud, plain_api, "keyed"), headers={"x-api-key": value})
    assert early.status_code == 403 and early.json() == {"message": "Forbidden"}
    time.sleep(1.1)
    later = httpx.get(url(local_cloud, plain_api, "keyed"), headers={"x-api-key": value})
    assert later.status_code == 200 and later.json() == {"keyed": True}


def test_request_headers_over_10_kb_are_refused(local_cloud, plain_api):
    over = httpx.get(url(local_cloud, plain_api, "hello"), headers={"X-Big": "a" * 10300})
    assert over.status_code == 431 and over.json() == {"message": "Request Header Fields Too Large"}
    under = httpx.get(url(local_cloud, plain_api, "hello"), headers={"X-Big": "a" * 9000})
    assert under.status_code == 200


def test_the_gateway_port_applies_the_same_header_limit(local_cloud, plain_api):
    direct = f"{local_cloud.api_url}/restapis/{plain_api['id']}/{STAGE}/_user_request_/hello"
    assert httpx.get(direct, headers={"X-Big": "a" * 10300}).status_code == 431


# --------------------------------------------------------------------------- TestInvokeMethod


@pytest.fixture(scope="module")
def proxy_api(gateway, cloud_session):
    """A Lambda proxy method whose permission allows every stage (as TestInvokeMethod needs), and one
    whose permission names only the deployed stage."""
    iam, lam = cloud_session.client("iam"), cloud_session.client("lambda")
    role_name = unique("rules-apigw-role")
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    function = unique("rules-apigw-echo")
    arn = retry_while_role_propagates(
        lambda: lam.create_function(
            FunctionName=function,
            Runtime="python3.13",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": zipped(ECHO)},
        ),
        cloud_session,
    )["FunctionArn"]
    lam.get_waiter("function_active_v2").wait(FunctionName=function, WaiterConfig={"Delay": 0.05})
    api_id = gateway.create_rest_api(name=unique("rules-proxy"))["id"]
    root = gateway.get_resources(restApiId=api_id)["items"][0]["id"]
    resources = {}
    for path, stage in (("echo", "*"), ("stageonly", STAGE)):
        resource = resources[path] = gateway.create_resource(restApiId=api_id, parentId=root, pathPart=path)["id"]
        gateway.put_method(restApiId=api_id, resourceId=resource, httpMethod="POST", authorizationType="NONE")
        gateway.put_integration(
            restApiId=api_id,
            resourceId=resource,
            httpMethod="POST",
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=f"arn:aws:apigateway:{cloud_session.region}:lambda:path/2015-03-31/functions/{arn}/invocations",
        )
        lam.add_permission(
            FunctionName=function,
            StatementId=f"api-{path}",
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=cloud_session.arn("execute-api", f"{api_id}/{stage}/POST/{path}"),
        )
    gateway.create_deployment(restApiId=api_id, stageName=STAGE)
    yield {"id": api_id, "resources": resources, "role": role, "root": root, "code": zipped(ECHO)}
    gateway.delete_rest_api(restApiId=api_id)
    lam.delete_function(FunctionName=function)
    iam.delete_role(RoleName=role_name)


def test_test_invoke_method_runs_a_mock_and_returns_api_gateways_log(gateway, plain_api):
    answer = gateway.test_invoke_method(
        restApiId=plain_api["id"],
        resourceId=plain_api["resources"]["hello"],
        httpMethod="GET",
        pathWithQueryString="/hello",
    )
    assert answer["status"] == 200 and json.loads(answer["body"]) == {"hello": "world"}
    assert answer["headers"]["Access-Control-Allow-Origin"] == "*"
    assert answer["multiValueHeaders"]["Access-Control-Allow-Origin"] == ["*"]
    log = answer["log"]
    assert log.startswith("Execution log for request ")
    assert " : Starting execution for request: " in log and " : HTTP Method: GET, Resource Path: /hello" in log
    assert log.rstrip().endswith("Method completed with status: 200")
    assert isinstance(answer["latency"], int) and answer["latency"] >= 0


def test_test_invoke_method_runs_the_lambda_proxy_without_key_or_stage(gateway, proxy_api):
    answer = gateway.test_invoke_method(
        restApiId=proxy_api["id"],
        resourceId=proxy_api["resources"]["echo"],
        httpMethod="POST",
        pathWithQueryString="/echo?q=1",
        body='{"data": "5.1,3.5,1.4,0.2"}',
        headers={"Content-Type": "application/json"},
    )
    assert answer["status"] == 201 and answer["headers"]["X-Echo"] == "yes"
    event = json.loads(answer["body"])
    assert event["body"] == '{"data": "5.1,3.5,1.4,0.2"}' and event["queryStringParameters"] == {"q": "1"}
    assert event["requestContext"]["stage"] == "test-invoke-stage" and event["path"] == "/echo"
    assert "Endpoint request URI: https://lambda." in answer["log"]
    assert "Method completed with status: 201" in answer["log"]


def test_test_invoke_method_is_refused_by_a_permission_for_another_stage(gateway, proxy_api):
    answer = gateway.test_invoke_method(
        restApiId=proxy_api["id"], resourceId=proxy_api["resources"]["stageonly"], httpMethod="POST", body="{}"
    )
    assert answer["status"] == 500 and json.loads(answer["body"]) == {"message": "Internal server error"}
    assert "Execution failed due to configuration error: Invalid permissions on Lambda function" in answer["log"]


def test_test_invoke_method_on_an_unknown_resource_or_method_is_not_found(gateway, plain_api):
    with pytest.raises(ClientError) as refused:
        gateway.test_invoke_method(restApiId=plain_api["id"], resourceId="nosuch", httpMethod="GET")
    assert error_of(refused) == ("NotFoundException", 404, "Invalid Resource identifier specified")
    with pytest.raises(ClientError) as refused:
        gateway.test_invoke_method(
            restApiId=plain_api["id"], resourceId=plain_api["resources"]["hello"], httpMethod="DELETE"
        )
    assert error_of(refused) == ("NotFoundException", 404, "Invalid Method identifier specified")


def test_a_function_still_pending_is_not_invoked_by_the_gateway(gateway, proxy_api, cloud_session, paced):
    lam = cloud_session.client("lambda")
    function = unique("rules-apigw-pending")
    arn = cloud_session.arn("lambda", f"function:{function}")
    resource = gateway.create_resource(restApiId=proxy_api["id"], parentId=proxy_api["root"], pathPart="pending")["id"]
    gateway.put_method(restApiId=proxy_api["id"], resourceId=resource, httpMethod="POST", authorizationType="NONE")
    gateway.put_integration(
        restApiId=proxy_api["id"],
        resourceId=resource,
        httpMethod="POST",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{cloud_session.region}:lambda:path/2015-03-31/functions/{arn}/invocations",
    )
    paced(0.2)  # Pending for 5 AWS seconds, here 1 s (the role needs 2 s, hence the retries)
    retry(
        lambda: lam.create_function(
            FunctionName=function,
            Runtime="python3.13",
            Role=proxy_api["role"],
            Handler="app.handler",
            Code={"ZipFile": proxy_api["code"]},
        ),
        role_not_ready,
        budget_s=5,
        first_delay_s=0.2,
        max_delay_s=0.2,
    )
    try:
        lam.add_permission(
            FunctionName=function,
            StatementId="api-pending",
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=cloud_session.arn("execute-api", f"{proxy_api['id']}/*/POST/pending"),
        )
        early = gateway.test_invoke_method(restApiId=proxy_api["id"], resourceId=resource, httpMethod="POST", body="{}")
        assert early["status"] == 500 and "Pending" in early["log"]
        lam.get_waiter("function_active_v2").wait(FunctionName=function, WaiterConfig={"Delay": 0.1})
        later = gateway.test_invoke_method(restApiId=proxy_api["id"], resourceId=resource, httpMethod="POST", body="{}")
        assert later["status"] == 201
    finally:
        lam.delete_function(FunctionName=function)
