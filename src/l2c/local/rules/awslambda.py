"""AWS rules for Lambda (see :mod:`l2c.local.rules`): what a function goes through after a change.

moto makes a function ``Active`` with ``LastUpdateStatus: Successful`` the moment it is created
or updated. On AWS (Lambda Developer Guide, "Lambda function states") a new function is
``Pending`` for a few seconds, and an updated one ``InProgress``; meanwhile Invoke and further
updates are refused with ``ResourceConflictException``, and botocore's ``function_active_v2`` /
``function_updated_v2`` waiters poll GetFunction until the state moves. The lifecycle is kept
here, by function ARN, and laid over moto's answers; a timer moves it on, scaled by the pace.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from urllib.parse import unquote

from l2c.local.pace import PACE
from l2c.local.rules import RULES, AwsError, Call, Reply
from l2c.local.rules import iam as iam_rules

# How long AWS keeps a new function Pending, and an update InProgress, for a zip package
# without VPC (seconds; observed: a few seconds).
CREATE_AWS_S = 5.0
UPDATE_AWS_S = 5.0
# Lambda's limit on the environment, all variables together (Lambda quotas page).
ENVIRONMENT_LIMIT_BYTES = 4096
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
_FUNCTIONS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html"


@dataclass
class Lifecycle:
    state: str = "Active"
    state_reason: str | None = None
    state_reason_code: str | None = None
    update: str = "Successful"
    update_reason: str | None = None
    update_reason_code: str | None = None

    def fields(self) -> dict:
        found = {
            "State": self.state,
            "StateReason": self.state_reason,
            "StateReasonCode": self.state_reason_code,
            "LastUpdateStatus": self.update,
            "LastUpdateStatusReason": self.update_reason,
            "LastUpdateStatusReasonCode": self.update_reason_code,
        }
        return {key: value for key, value in found.items() if value is not None}


_lifecycles: dict[str, Lifecycle] = {}
_lock = threading.Lock()


def lifecycle(function_arn: str) -> Lifecycle:
    with _lock:
        return _lifecycles.get(unqualified(function_arn), Lifecycle())


def unqualified(function_arn: str) -> str:
    return ":".join(function_arn.split(":")[:7])


def with_lifecycle(config: dict) -> dict:
    """A FunctionConfiguration as AWS shows it: moto's fields, with the function's real state."""
    shown = {key: value for key, value in config.items() if not key.startswith(("State", "LastUpdateStatus"))}
    return shown | lifecycle(config.get("FunctionArn", "")).fields()


def _busy_for(aws_seconds: float, config: dict, busy: Lifecycle) -> dict:
    """The function is ``busy`` now and settles after ``aws_seconds``; its configuration as shown now."""
    with _lock:
        _lifecycles[unqualified(config["FunctionArn"])] = busy
    _settle_later(aws_seconds, config["FunctionArn"], busy)
    return with_lifecycle(config)


def _settle_later(aws_seconds: float, function_arn: str, busy: Lifecycle) -> None:
    """After ``aws_seconds`` (paced) the function is Active and Successful, unless it changed again since."""

    def fire():
        with _lock:
            key = unqualified(function_arn)
            if _lifecycles.get(key) is not busy:
                return
            _lifecycles[key] = Lifecycle()
        from l2c.local.change_count import changes

        changes.bump()  # cached GetFunction answers are stale now

    timer = threading.Timer(PACE.seconds(aws_seconds), fire)
    timer.daemon = True
    timer.start()


# --------------------------------------------------------------------------- finding functions


def split_function_name(value: str) -> tuple[str, str | None]:
    """Name and qualifier of a FunctionName: a name, a full ARN or a partial ARN, maybe qualified."""
    value = unquote(value)
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 7:
        return parts[6], (parts[7] if len(parts) > 7 else None)
    if len(parts) >= 3 and parts[1] == "function":  # 123456789012:function:name[:qualifier]
        return parts[2], (parts[3] if len(parts) > 3 else None)
    return parts[0], (parts[1] if len(parts) > 1 else None)


def function_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


def find_function(account: str, region: str, function_name: str):
    """moto's function for a FunctionName as Lambda takes it, or None."""
    from moto.awslambda.models import lambda_backends

    name, _ = split_function_name(function_name)
    try:
        return lambda_backends[account][region].get_function(name)
    except Exception:  # moto's UnknownFunctionException and kin: no such function
        return None


def not_found(account: str, region: str, function_name: str) -> AwsError:
    name, _ = split_function_name(function_name)
    message = f"Function not found: {function_arn(account, region, name)}"
    return AwsError("ResourceNotFoundException", message, 404, Type="User", Message=message)


def conflict_while_busy(arn: str) -> AwsError | None:
    """The refusal AWS gives while a function is being created or updated, or None."""
    life = lifecycle(arn)
    if life.state == "Pending":
        return AwsError(
            "ResourceConflictException",
            "The operation cannot be performed at this time. The function is currently in the following state: Pending",
            409,
            Type="User",
        )
    if life.update == "InProgress":
        return AwsError(
            "ResourceConflictException",
            f"The operation cannot be performed at this time. An update is in progress for resource: {unqualified(arn)}",
            409,
            Type="User",
        )
    return None


# --------------------------------------------------------------------------- before moto


@RULES.before(
    "lambda",
    "CreateFunction",
    "UpdateFunctionConfiguration",
    id="lambda.role-assumable",
    test="tests/integration/test_rules_lambda.py::test_a_role_created_seconds_ago_cannot_be_assumed_by_lambda_yet",
    source="Lambda API reference, CreateFunction errors (InvalidParameterValueException); IAM User Guide, "
    "troubleshooting eventual consistency; hashicorp/terraform-provider-aws#6566",
    summary="A role that does not exist, was created less than a few (paced) seconds ago, or whose trust policy "
    "does not trust lambda.amazonaws.com for this account's function (Conditions on aws:SourceAccount and "
    "aws:SourceArn are judged against the account and the function's ARN) is refused with InvalidParameterValueException "
    "'The role defined for the function cannot be assumed by Lambda.'",
)
def role_must_be_assumable(call: Call) -> None:
    # Source: Lambda API reference (CreateFunction); IAM is eventually consistent (IAM User Guide).
    role_arn = call.params.get("Role")
    if call.operation == "UpdateFunctionConfiguration" and not role_arn:
        return
    role = iam_rules.find_role(call.account, role_arn or "")
    # Lambda assumes the role for this account's function: the trust policy's confused-deputy
    # conditions (aws:SourceAccount, aws:SourceArn) are judged against that.
    function_arn = (
        f"arn:{iam_rules.partition_of(call.region)}:lambda:{call.region}:{call.account}:function:"
        + str(call.params.get("FunctionName", "")).rsplit(":", 1)[-1]
    )
    context = iam_rules.service_context(call.account, function_arn)
    if (
        role is None
        or not iam_rules.is_propagated(role)
        or not iam_rules.trusts_service(role, LAMBDA_PRINCIPAL, context)
    ):
        raise AwsError(
            "InvalidParameterValueException",
            "The role defined for the function cannot be assumed by Lambda.",
            400,
            Type="User",
        )


@RULES.before(
    "lambda",
    "CreateFunction",
    "UpdateFunctionConfiguration",
    id="lambda.environment-4kb",
    test="tests/integration/test_rules_lambda.py::test_environment_variables_over_4_kb_are_refused_with_the_string_measured",
    source="Lambda quotas page (environment variables: 4 KB, all together); Lambda Developer Guide, "
    "configuration-envvars",
    summary="Environment variables whose JSON form is over 4 KB are refused with InvalidParameterValueException "
    "and AWS's message, quoting the string measured.",
)
def environment_within_4kb(call: Call) -> None:
    # Source: Lambda quotas (4 KB for all environment variables together).
    variables = (call.params.get("Environment") or {}).get("Variables")
    if not variables:
        return
    measured = json.dumps(variables, separators=(",", ":"))
    if len(measured.encode()) > ENVIRONMENT_LIMIT_BYTES:
        raise AwsError(
            "InvalidParameterValueException",
            "Lambda was unable to configure your environment variables because the environment variables you have "
            f"provided exceeded the 4KB limit. String measured: {measured}",
            400,
            Type="User",
        )


@RULES.before(
    "lambda",
    "UpdateFunctionCode",
    "UpdateFunctionConfiguration",
    id="lambda.update-conflict",
    test="tests/integration/test_rules_lambda.py::test_an_update_while_one_is_in_progress_is_a_conflict_until_it_succeeds",
    source=f"{_FUNCTIONS_DOC}; Lambda API reference, UpdateFunctionCode errors (ResourceConflictException)",
    summary="An update while the function is Pending or its last update is InProgress is refused with "
    "ResourceConflictException 409 and AWS's message.",
)
def one_update_at_a_time(call: Call) -> None:
    # Source: Lambda function states (updates are refused while one is in progress).
    function = find_function(call.account, call.region, call.params.get("FunctionName", ""))
    if function is None:
        return  # moto answers ResourceNotFoundException as AWS does
    refusal = conflict_while_busy(function.function_arn)
    if refusal is not None:
        raise refusal


# --------------------------------------------------------------------------- after moto


@RULES.after(
    "lambda",
    "CreateFunction",
    id="lambda.create-pending",
    test="tests/integration/test_rules_lambda.py::test_a_new_function_is_pending_then_active_and_the_waiter_really_waits",
    source=f"{_FUNCTIONS_DOC}; botocore lambda waiters-2.json (FunctionActiveV2)",
    summary="A new function is State Pending ('The function is being created.', Creating) for a few paced "
    "seconds, then Active.",
)
def created_pending(call: Call, reply: Reply) -> Reply:
    # Source: Lambda function states (Pending after CreateFunction, then Active).
    busy = Lifecycle(
        state="Pending",
        state_reason="The function is being created.",
        state_reason_code="Creating",
        update="InProgress",
        update_reason="The function is being created.",
        update_reason_code="Creating",
    )
    shown = _busy_for(CREATE_AWS_S, reply.json(), busy)
    shown.pop("LastUpdateStatus", None)  # CreateFunction's own answer has no update status yet
    shown.pop("LastUpdateStatusReason", None)
    shown.pop("LastUpdateStatusReasonCode", None)
    return reply.with_json(shown)


@RULES.after(
    "lambda",
    "UpdateFunctionCode",
    "UpdateFunctionConfiguration",
    id="lambda.update-in-progress",
    test="tests/integration/test_rules_lambda.py::test_an_update_while_one_is_in_progress_is_a_conflict_until_it_succeeds",
    source=f"{_FUNCTIONS_DOC}; botocore lambda waiters-2.json (FunctionUpdatedV2)",
    summary="After an update the function's LastUpdateStatus is InProgress for a few paced seconds, then Successful.",
)
def updated_in_progress(call: Call, reply: Reply) -> Reply:
    # Source: Lambda function states (LastUpdateStatus InProgress, then Successful).
    busy = Lifecycle(update="InProgress", update_reason="The function is being created.", update_reason_code="Creating")
    return reply.with_json(_busy_for(UPDATE_AWS_S, reply.json(), busy))


@RULES.after(
    "lambda",
    "GetFunction",
    "GetFunctionConfiguration",
    "ListFunctions",
    id="lambda.states-shown",
    test="tests/integration/test_rules_lambda.py::test_a_new_function_is_pending_then_active_and_the_waiter_really_waits",
    source=f"{_FUNCTIONS_DOC}; Lambda API reference, FunctionConfiguration (State, LastUpdateStatus)",
    summary="GetFunction, GetFunctionConfiguration and ListFunctions show the function's real State and "
    "LastUpdateStatus (with their reasons), so the botocore waiters wait.",
)
def show_states(call: Call, reply: Reply) -> Reply:
    # Source: Lambda API reference, FunctionConfiguration.
    document = reply.json()
    if call.operation == "GetFunction" and "Configuration" in document:
        document["Configuration"] = with_lifecycle(document["Configuration"])
    elif call.operation == "ListFunctions":
        document["Functions"] = [with_lifecycle(item) for item in document.get("Functions", [])]
    else:
        document = with_lifecycle(document)
    return reply.with_json(document)
