"""CORS on the API a deploy creates, against the test session's local cloud, over loopback HTTP:
the preflight a browser sends (no key), the POST's answer, and the gateway's own errors (403,
413, 415, 429, 5xx) all carry the configured origin; another origin shows after a redeploy, and
`none` leaves no CORS header anywhere.

A stack of its own (`iris-cors`) keeps these tests apart from the other modules' stacks; it is
destroyed at the end and checked gone.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest
from aws_helpers import error_of, unique
from botocore.exceptions import ClientError

from l2c.cloud import apigateway, functions, inventory, plan, stack, teardown
from l2c.cloud.apigateway import Limits
from l2c.cloud.progress import Reporter
from l2c.cloud.session import LOCAL, connect
from l2c.local.tutorial import TUTORIAL_BODIES

NAME = "iris-cors"
BODY = TUTORIAL_BODIES["iris"]
OTHER_ORIGIN = "https://predictions.example.com"


@pytest.fixture(scope="module")
def cloud_env(local_cloud):
    """The session cloud's variables, set before this module's own fixtures run (the folder's
    conftest sets them too); Postman environments go to the cloud's state folder."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in local_cloud.env.items():
            patch.setenv(name, value)
        yield local_cloud


@pytest.fixture(scope="module")
def cloud_session(cloud_env):
    """A session on the session cloud, opened once its variables are set (the shared fixture of
    that name is session-wide, so would be opened before them)."""
    return connect(LOCAL)


@pytest.fixture(scope="module")
def page_origin(local_cloud) -> str:
    """Where the local cloud serves its pages: its edge, AWS_ENDPOINT_URL (http://127.0.0.1:<port>)."""
    edge = urlsplit(local_cloud.env["AWS_ENDPOINT_URL"])
    return f"http://127.0.0.1:{edge.port}"


@pytest.fixture(scope="module")
def deployed(cloud_session, trained_models):
    def deploy(**options) -> stack.Deployment:
        return stack.deploy(
            NAME,
            trained_models["iris"],
            session=cloud_session,
            options=plan.DeployOptions(**options),
            reporter=Reporter(),
        )

    deploy.first = deploy()
    yield deploy
    teardown.destroy(NAME, session=cloud_session, reporter=Reporter())
    assert inventory.inventory(cloud_session, NAME) == []


def preflight(url: str, origin: str) -> httpx.Response:
    """What Chromium sends before a fetch() with a JSON body and an x-api-key header."""
    return httpx.options(
        url,
        timeout=30,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )


def post(deployment: stack.Deployment, origin: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Origin": origin, "x-api-key": deployment.api_key if key is None else key}
    return httpx.post(deployment.url, json=kwargs.pop("json", BODY), headers=headers, timeout=60, **kwargs)


def allows(response: httpx.Response, origin: str) -> bool:
    """Whether a browser on ``origin`` may read this answer: exactly its origin in the header."""
    return response.headers.get("access-control-allow-origin") == origin


def no_cors(response: httpx.Response) -> bool:
    return not any(name.lower().startswith("access-control-") for name in response.headers)


# --------------------------------------------------------------------------- the default: the local cloud's own pages


def test_the_local_default_origin_is_the_edge_the_pages_are_served_from(deployed, page_origin, cloud_session):
    assert deployed.first.cors_origin == page_origin
    variables = functions.get_configuration(cloud_session, deployed.first.function)["Environment"]["Variables"]
    assert variables["CORS_ALLOW_ORIGIN"] == page_origin


def test_the_preflight_needs_no_key_and_allows_the_origin_the_method_and_the_headers(deployed, page_origin):
    answer = preflight(deployed.first.url, page_origin)
    assert answer.status_code == 200 and answer.content == b""
    assert allows(answer, page_origin)
    assert answer.headers["access-control-allow-methods"] == "OPTIONS,POST"
    allowed = {name.strip().lower() for name in answer.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-api-key"} <= allowed
    assert answer.headers["access-control-max-age"] == "600"


def test_what_deploy_made_is_the_consoles_enable_cors(deployed, cloud_session):
    api_id = deployed.first.api_id
    route = next(
        item
        for item in apigateway.resources(cloud_session, api_id)
        if item["path"] == f"/{apigateway.resource_path(NAME)}"
    )
    options = route["resourceMethods"]["OPTIONS"]
    assert options["apiKeyRequired"] is False and options["authorizationType"] == "NONE"
    integration = options["methodIntegration"]
    assert integration["type"] == "MOCK" and integration["passthroughBehavior"] == "NEVER"
    assert integration["requestTemplates"] == {"application/json": '{"statusCode": 200}'}
    assert route["resourceMethods"]["POST"]["apiKeyRequired"] is True  # the key still guards predictions
    types = {item["responseType"] for item in apigateway.customised_gateway_responses(cloud_session, api_id)}
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= types


def test_a_post_with_the_key_is_answered_for_the_configured_origin(deployed, page_origin):
    answer = post(deployed.first, page_origin)
    assert answer.status_code == 200 and answer.json()["prediction"] == "setosa"
    assert allows(answer, page_origin)


def test_a_wrong_key_no_key_and_an_unknown_route_are_403s_a_browser_can_read(deployed, page_origin):
    deployment = deployed.first
    wrong = post(deployment, page_origin, key="not-the-key-but-long-enough-0123456789")
    missing = httpx.post(deployment.url, json=BODY, headers={"Origin": page_origin}, timeout=30)
    for answer in (wrong, missing):
        assert answer.status_code == 403 and answer.json() == {"message": "Forbidden"}
        assert allows(answer, page_origin)
        assert "X-Api-Key" in answer.headers["access-control-allow-headers"]
    nowhere = preflight(deployment.url.replace("iriscorsprediction", "nosuchprediction"), page_origin)
    assert nowhere.status_code == 403 and nowhere.json() == {"message": "Missing Authentication Token"}
    assert allows(nowhere, page_origin)


def test_a_callers_mistake_answered_by_the_function_carries_the_origin_too(deployed, page_origin):
    answer = post(deployed.first, page_origin, json={"data": "5.1,3.5,1.4"})
    assert answer.status_code == 400 and answer.json()["error"] == "wrong_feature_count"
    assert allows(answer, page_origin)


def test_a_body_over_10_mb_is_a_413_a_browser_can_read(deployed, page_origin):
    address = urlsplit(deployed.first.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sender:
        sender.sendall(
            f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nOrigin: {page_origin}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10 * 1024 * 1024 + 1}\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sender.recv(4096):  # the gateway closes after refusing
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 413") and answer.endswith(b'{"message": "Request Too Long"}')
    assert f"access-control-allow-origin: {page_origin}" in head.splitlines()
    assert "connection: close" in head.splitlines()


def test_an_unmapped_content_type_on_the_preflight_is_a_415_a_browser_can_read(deployed, page_origin):
    # Passthrough NEVER, as AWS recommends for the preflight's MOCK: only the JSON template's type is taken.
    answer = httpx.request(
        "OPTIONS",
        deployed.first.url,
        headers={"Origin": page_origin, "Content-Type": "text/plain"},
        content=b"hello",
        timeout=30,
    )
    assert answer.status_code == 415 and answer.json() == {"message": "Unsupported Media Type"}
    assert allows(answer, page_origin)


def test_a_gateway_5xx_carries_the_cors_headers(deployed, page_origin, cloud_session):
    # Without its permission API Gateway cannot call the function: 500, an API_CONFIGURATION_ERROR.
    deployment = deployed.first
    lam = cloud_session.client("lambda")
    lam.remove_permission(FunctionName=deployment.function, StatementId=f"l2c-{NAME}-apigateway")
    try:
        answer = post(deployment, page_origin)
        assert answer.status_code == 500 and answer.json() == {"message": "Internal server error"}
        assert allows(answer, page_origin)
    finally:
        source = apigateway.method_arn(cloud_session, deployment.api_id, apigateway.resource_path(NAME))
        functions.allow_invoke_from(cloud_session, deployment.function, f"l2c-{NAME}-apigateway", source)
    assert post(deployment, page_origin).status_code == 200


def test_throttled_calls_and_preflights_are_429s_a_browser_can_read(deployed, page_origin, cloud_session):
    tight = deployed(limits=Limits(rate_limit=1.0, burst_limit=2, quota_limit=100_000))
    try:
        answers = [post(tight, page_origin) for _ in range(4)] + [preflight(tight.url, page_origin) for _ in range(2)]
        throttled = [answer for answer in answers if answer.status_code == 429]
        assert len(throttled) >= 3, [answer.status_code for answer in answers]
        for answer in throttled:
            assert answer.json() == {"message": "Too Many Requests"} and allows(answer, page_origin)
    finally:
        deployed()  # the default limits again
        apigateway.ensure_stage_throttling(cloud_session, tight.api_id, Limits())


# --------------------------------------------------------------------------- redeploys


def test_deploying_again_changes_nothing_and_duplicates_nothing(deployed, cloud_session):
    api_id = deployed.first.api_id
    before = len(cloud_session.client("apigateway").get_deployments(restApiId=api_id)["items"])
    again = deployed()
    assert again.changes == []
    assert len(cloud_session.client("apigateway").get_deployments(restApiId=api_id)["items"]) == before == 1
    methods = [
        verb
        for item in apigateway.resources(cloud_session, api_id)
        if item["path"] == f"/{apigateway.resource_path(NAME)}"
        for verb in item["resourceMethods"]
    ]
    assert sorted(methods) == ["OPTIONS", "POST"]


def test_another_origin_is_served_after_a_redeploy_and_the_old_one_no_longer(deployed, page_origin, cloud_session):
    try:
        moved = deployed(cors_origin=OTHER_ORIGIN)
        assert moved.cors_origin == OTHER_ORIGIN
        assert any(change.startswith("OPTIONS /iriscorsprediction") for change in moved.changes)
        assert "stage test deployed" in moved.changes  # the new values reach the stage only with a deployment
        for answer in (
            preflight(moved.url, OTHER_ORIGIN),
            post(moved, OTHER_ORIGIN),
            post(moved, OTHER_ORIGIN, key="not-the-key-but-long-enough-0123456789"),
        ):
            assert allows(answer, OTHER_ORIGIN), answer.headers
            assert not allows(answer, page_origin)
        assert apigateway.gateway_cors_origin(cloud_session, moved.api_id) == OTHER_ORIGIN
        assert (
            len(cloud_session.client("apigateway").get_deployments(restApiId=moved.api_id)["items"]) == 1
        )  # replaced, not added
    finally:
        back = deployed()
    assert back.cors_origin == page_origin and allows(preflight(back.url, page_origin), page_origin)


def test_none_leaves_no_cors_header_anywhere_and_the_default_brings_it_back(deployed, page_origin, cloud_session):
    try:
        closed = deployed(cors_origin=apigateway.NO_CORS)
        assert closed.cors_origin is None
        refused = preflight(closed.url, page_origin)
        # No OPTIONS method: API Gateway's 403, as a browser's preflight met before l2c made CORS.
        assert refused.status_code == 403 and refused.json() == {"message": "Missing Authentication Token"}
        answered = post(closed, page_origin)
        assert answered.status_code == 200
        forbidden = post(closed, page_origin, key="not-the-key-but-long-enough-0123456789")
        assert forbidden.status_code == 403
        assert no_cors(refused) and no_cors(answered) and no_cors(forbidden)
        variables = functions.get_configuration(cloud_session, closed.function)["Environment"]["Variables"]
        assert variables["CORS_ALLOW_ORIGIN"] == ""
        assert apigateway.gateway_cors_origin(cloud_session, closed.api_id) is None
    finally:
        back = deployed()
    assert allows(post(back, page_origin), page_origin)


# --------------------------------------------------------------------------- the rule behind the OPTIONS method


def test_an_integration_response_may_map_only_headers_its_method_response_declares(cloud_session):
    gateway = cloud_session.client("apigateway")
    api_id = gateway.create_rest_api(name=unique("cors-rule"))["id"]
    try:
        root = gateway.get_resources(restApiId=api_id)["items"][0]["id"]
        where = {"restApiId": api_id, "resourceId": root, "httpMethod": "OPTIONS"}
        gateway.put_method(**where, authorizationType="NONE")
        gateway.put_integration(**where, type="MOCK", requestTemplates={"application/json": '{"statusCode": 200}'})
        origin = {"method.response.header.Access-Control-Allow-Origin": "'https://example.com'"}

        with pytest.raises(ClientError) as no_response:
            gateway.put_integration_response(**where, statusCode="200", responseParameters=origin)
        assert error_of(no_response) == (
            "BadRequestException",
            400,
            "Invalid mapping expression specified: Validation Result: warnings : [], errors : "
            "[No method response exists for method.]",
        )
        gateway.put_method_response(
            **where, statusCode="200", responseParameters={"method.response.header.Access-Control-Allow-Headers": False}
        )
        with pytest.raises(ClientError) as undeclared:
            gateway.put_integration_response(**where, statusCode="200", responseParameters=origin)
        assert error_of(undeclared)[:2] == ("BadRequestException", 400)
        assert error_of(undeclared)[2].endswith(
            "[Invalid mapping expression parameter specified: method.response.header.Access-Control-Allow-Origin]"
        )
        unquoted = {"method.response.header.Access-Control-Allow-Headers": "Content-Type"}
        with pytest.raises(ClientError) as bare:
            gateway.put_integration_response(**where, statusCode="200", responseParameters=unquoted)
        assert error_of(bare)[2].endswith("[Invalid mapping expression specified: Content-Type]")

        quoted = {"method.response.header.Access-Control-Allow-Headers": "'Content-Type'"}
        gateway.put_integration_response(**where, statusCode="200", responseParameters=quoted)
        stored = gateway.get_integration_response(**where, statusCode="200")
        assert stored["responseParameters"] == quoted
    finally:
        gateway.delete_rest_api(restApiId=api_id)
