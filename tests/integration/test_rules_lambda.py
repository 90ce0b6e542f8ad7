"""Lambda as AWS runs it, through AWS_ENDPOINT_URL only: states, refusals, Invoke and the function's role.

Functions are made here with plain boto3, as any tool would make them; each test checks the error
code, status and message AWS gives (Lambda API reference, "Lambda function states").
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from aws_helpers import LAMBDA_TRUST, SAGEMAKER_TRUST, error_of, unique, zipped
from botocore.exceptions import ClientError

from l2c.cloud.retries import retry, retry_while_role_propagates, role_not_ready

HANDLER = """
    import json, os, time
    import boto3

    def handler(event, context):
        if event.get("print"):
            print(event["print"])
        if event.get("raise"):
            raise ValueError(event["raise"])
        if event.get("exit"):
            os._exit(event["exit"])
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("whoami"):
            return boto3.client("sts").get_caller_identity()["Arn"]
        return {"got": event, "key": os.environ["AWS_ACCESS_KEY_ID"],
                "token": bool(os.environ.get("AWS_SESSION_TOKEN"))}
"""
CANNOT_ASSUME = "The role defined for the function cannot be assumed by Lambda."


@pytest.fixture(scope="module")
def lam(cloud_session):
    return cloud_session.client("lambda")


@pytest.fixture(scope="module")
def role(cloud_session):
    iam = cloud_session.client("iam")
    name = unique("rules-lambda")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    yield {"name": name, "arn": arn}
    iam.delete_role(RoleName=name)


@pytest.fixture(scope="module")
def function(lam, role, cloud_session):
    """One active function running HANDLER (timeout 1 s)."""
    name = unique("rules-fn")
    created = retry_while_role_propagates(
        lambda: lam.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role["arn"],
            Handler="app.handler",
            Code={"ZipFile": zipped(HANDLER)},
            Timeout=1,
        ),
        cloud_session,
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05})
    yield {"name": name, "arn": created["FunctionArn"]}
    lam.delete_function(FunctionName=name)


def invoke(lam, function, event: dict, **kwargs) -> tuple[dict, object]:
    answer = lam.invoke(FunctionName=function["name"], Payload=json.dumps(event).encode(), **kwargs)
    return answer, json.loads(answer["Payload"].read())


# --------------------------------------------------------------------------- CreateFunction's role


def test_a_role_created_seconds_ago_cannot_be_assumed_by_lambda_yet(lam, cloud_session, paced):
    paced(0.1)  # IAM propagation: 10 AWS seconds, here 1 s
    iam = cloud_session.client("iam")
    name = unique("young-role")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    function = unique("young-fn")
    try:
        with pytest.raises(ClientError) as refused:
            lam.create_function(
                FunctionName=function,
                Runtime="python3.13",
                Role=arn,
                Handler="app.handler",
                Code={"ZipFile": zipped(HANDLER)},
            )
        assert error_of(refused) == ("InvalidParameterValueException", 400, CANNOT_ASSUME)
        time.sleep(1.1)
        created = lam.create_function(
            FunctionName=function,
            Runtime="python3.13",
            Role=arn,
            Handler="app.handler",
            Code={"ZipFile": zipped(HANDLER)},
        )
        assert created["State"] == "Pending"
    finally:
        try:
            lam.delete_function(FunctionName=function)
        except ClientError:
            pass
        iam.delete_role(RoleName=name)


@pytest.mark.parametrize("trust", ["sagemaker", "missing"])
def test_a_role_lambda_may_not_assume_is_refused(lam, cloud_session, trust):
    iam = cloud_session.client("iam")
    name = unique("not-lambda")
    if trust == "sagemaker":
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST))["Role"]["Arn"]
    else:
        arn = f"arn:aws:iam::{cloud_session.account}:role/{name}"
    time.sleep(0.1)  # older than the suite's propagation delay: only the trust (or absence) refuses it
    try:
        with pytest.raises(ClientError) as refused:
            lam.create_function(
                FunctionName=unique("untrusted"),
                Runtime="python3.13",
                Role=arn,
                Handler="app.handler",
                Code={"ZipFile": zipped(HANDLER)},
            )
        assert error_of(refused) == ("InvalidParameterValueException", 400, CANNOT_ASSUME)
    finally:
        if trust == "sagemaker":
            iam.delete_role(RoleName=name)


# --------------------------------------------------------------------------- states


def test_a_new_function_is_pending_then_active_and_the_waiter_really_waits(lam, role, paced):
    paced(0.2)  # Pending for 5 AWS seconds, here 1 s (and the role needs 10 AWS seconds, 2 s, to propagate)
    name = unique("pending-fn")
    created = retry(
        lambda: lam.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role["arn"],
            Handler="app.handler",
            Code={"ZipFile": zipped(HANDLER)},
        ),
        role_not_ready,
        budget_s=5,
        first_delay_s=0.2,
        max_delay_s=0.2,
    )
    try:
        assert (created["State"], created["StateReason"], created["StateReasonCode"]) == (
            "Pending",
            "The function is being created.",
            "Creating",
        )
        assert lam.get_function(FunctionName=name)["Configuration"]["State"] == "Pending"
        with pytest.raises(ClientError) as refused:
            lam.invoke(FunctionName=name, Payload=b"{}")
        assert error_of(refused) == (
            "ResourceConflictException",
            409,
            "The operation cannot be performed at this time. The function is currently in the following state: Pending",
        )
        with pytest.raises(ClientError) as refused:
            lam.update_function_configuration(FunctionName=name, Timeout=5)
        assert error_of(refused)[:2] == ("ResourceConflictException", 409)
        started = time.monotonic()
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})
        assert time.monotonic() - started > 0.5
        config = lam.get_function_configuration(FunctionName=name)
        assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Successful")
        assert "StateReason" not in config
    finally:
        lam.delete_function(FunctionName=name)


def test_an_update_while_one_is_in_progress_is_a_conflict_until_it_succeeds(lam, function, paced):
    paced(0.2)  # InProgress for 5 AWS seconds, here 1 s
    updated = lam.update_function_configuration(FunctionName=function["name"], Timeout=2)
    assert updated["LastUpdateStatus"] == "InProgress"
    assert lam.get_function(FunctionName=function["name"])["Configuration"]["LastUpdateStatus"] == "InProgress"
    with pytest.raises(ClientError) as refused:
        lam.update_function_code(FunctionName=function["name"], ZipFile=zipped(HANDLER + "\n# v2\n"))
    assert error_of(refused) == (
        "ResourceConflictException",
        409,
        f"The operation cannot be performed at this time. An update is in progress for resource: {function['arn']}",
    )
    started = time.monotonic()
    lam.get_waiter("function_updated_v2").wait(FunctionName=function["name"], WaiterConfig={"Delay": 0.1})
    assert time.monotonic() - started > 0.5
    assert lam.get_function_configuration(FunctionName=function["name"])["LastUpdateStatus"] == "Successful"
    lam.update_function_configuration(FunctionName=function["name"], Timeout=1)
    lam.get_waiter("function_updated_v2").wait(FunctionName=function["name"], WaiterConfig={"Delay": 0.1})


def test_environment_variables_over_4_kb_are_refused_with_the_string_measured(lam, function):
    variables = {"BIG": "x" * 4100}
    with pytest.raises(ClientError) as refused:
        lam.update_function_configuration(FunctionName=function["name"], Environment={"Variables": variables})
    code, status, message = error_of(refused)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message == (
        "Lambda was unable to configure your environment variables because the environment variables you have "
        f"provided exceeded the 4KB limit. String measured: {json.dumps(variables, separators=(',', ':'))}"
    )
    assert "BIG" not in (lam.get_function_configuration(FunctionName=function["name"]).get("Environment") or {}).get(
        "Variables", {}
    )


# --------------------------------------------------------------------------- Invoke


def test_invoke_returns_the_handlers_result_and_the_executed_version(lam, function):
    answer, payload = invoke(lam, function, {"a": 1})
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    assert payload["got"] == {"a": 1}


@pytest.mark.parametrize("form", ["arn", "partial-arn", "qualified-arn"])
def test_a_function_is_found_by_its_arn_or_partial_arn(lam, function, form):
    account, name = function["arn"].split(":")[4], function["name"]
    value = {
        "arn": function["arn"],
        "partial-arn": f"{account}:function:{name}",
        "qualified-arn": f"{function['arn']}:$LATEST",
    }[form]
    answer = lam.invoke(FunctionName=value, Payload=b'{"b": 2}')
    assert json.loads(answer["Payload"].read())["got"] == {"b": 2}


def test_a_handler_exception_is_a_200_with_unhandled_and_lambdas_error_object(lam, function):
    answer, payload = invoke(lam, function, {"raise": "no good"})
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError" and payload["errorMessage"] == "no good"
    assert isinstance(payload["stackTrace"], list) and "in handler" in payload["stackTrace"][-1]


def test_a_function_past_its_timeout_is_an_unhandled_error(lam, function):
    answer, payload = invoke(lam, function, {"sleep": 3})
    assert answer["FunctionError"] == "Unhandled"
    assert payload["errorMessage"].endswith("Task timed out after 1.00 seconds")


def test_a_runtime_that_exits_is_an_unhandled_runtime_exit_error_and_the_next_call_works(lam, function):
    answer, payload = invoke(lam, function, {"exit": 3})
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert payload["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")
    assert invoke(lam, function, {"c": 3})[1]["got"] == {"c": 3}


def test_log_type_tail_returns_the_last_4_kb_of_the_invocations_log(lam, function):
    answer, _ = invoke(lam, function, {"print": "marker-" + "y" * 6000}, LogType="Tail")
    tail = base64.b64decode(answer["LogResult"])
    assert len(tail) == 4096
    text = tail.decode()
    assert "REPORT RequestId:" in text and "y" * 100 in text and "marker-" not in text
    short, _ = invoke(lam, function, {"print": "short-marker"}, LogType="Tail")
    assert "short-marker" in base64.b64decode(short["LogResult"]).decode()
    assert "LogResult" not in invoke(lam, function, {})[0]


def test_event_invocations_answer_202_and_run_in_the_background(lam, function, cloud_session):
    marker = unique("event-marker")
    answer = lam.invoke(
        FunctionName=function["name"], InvocationType="Event", Payload=json.dumps({"print": marker}).encode()
    )
    assert answer["StatusCode"] == 202 and answer["Payload"].read() == b""
    logs = cloud_session.client("logs")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{function['name']}")["events"]
        if any(marker in event["message"] for event in events):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the Event invocation never ran")


def test_dry_run_answers_204_and_runs_nothing(lam, function):
    answer = lam.invoke(FunctionName=function["name"], InvocationType="DryRun")
    assert answer["StatusCode"] == 204 and answer["Payload"].read() == b""


def test_an_unknown_function_is_resource_not_found_with_its_arn(lam, cloud_session):
    with pytest.raises(ClientError) as refused:
        lam.invoke(FunctionName="no-such-function", Payload=b"{}")
    arn = f"arn:aws:lambda:{cloud_session.region}:{cloud_session.account}:function:no-such-function"
    assert error_of(refused) == ("ResourceNotFoundException", 404, f"Function not found: {arn}")


def test_a_payload_over_6_mb_is_request_entity_too_large(lam, function):
    with pytest.raises(ClientError) as refused:
        lam.invoke(FunctionName=function["name"], Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert error_of(refused) == (
        "RequestEntityTooLargeException",
        413,
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
    )


def test_a_payload_that_is_not_json_is_invalid_request_content(lam, function):
    with pytest.raises(ClientError) as refused:
        lam.invoke(FunctionName=function["name"], Payload=b"not json")
    code, status, message = error_of(refused)
    assert (code, status) == ("InvalidRequestContentException", 400)
    assert message.startswith("Could not parse request body into json")


# --------------------------------------------------------------------------- the function's identity


def test_the_function_runs_with_temporary_credentials_of_its_role(lam, function, role, cloud_session):
    _, payload = invoke(lam, function, {})
    assert payload["key"] != "testing" and payload["key"].startswith("ASIA") and payload["token"] is True
    _, identity = invoke(lam, function, {"whoami": True})
    assert identity.startswith(f"arn:aws:sts::{cloud_session.account}:assumed-role/{role['name']}/")
