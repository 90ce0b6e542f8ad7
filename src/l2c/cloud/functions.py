"""The Lambda function between API Gateway and the endpoint (``src/l2c/lambda/`` zipped, python3.13).

The zip is built byte-for-byte reproducibly (fixed timestamps and modes, sorted entries), so
its SHA-256 says whether the deployed code is already the working tree's and a second deploy
uploads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from l2c.cloud import tags
from l2c.cloud.retries import retry_while_role_propagates
from l2c.cloud.session import CloudError, CloudSession, delete_if_present, get_if_present
from l2c.config import LAMBDA_DIR, LAMBDA_DIR_ENV
from l2c.versions import LAMBDA_RUNTIME

NOT_FOUND = {"ResourceNotFoundException"}

HANDLER = "lambda_function.lambda_handler"
# API Gateway gives up on an integration after 29 s; the handler derives its own endpoint
# read timeout from the function's, so a slow endpoint yields a JSON 504, not a cut connection.
DEFAULT_TIMEOUT_S = 29
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1, 900  # Lambda API reference, CreateFunction: Timeout
DEFAULT_MEMORY_MB = 256
DEFAULT_MAX_ROWS = 1000
LOG_RETENTION_DAYS = 14
# Lambda's quota on environment variables: 4 KB for all of them together, measured on their
# JSON form (Lambda quotas page; the local cloud's lambda.environment-4kb rule measures the same).
ENVIRONMENT_LIMIT_BYTES = 4096
# The model's column names, shipped in the zip when they do not fit the environment; the handler
# reads this file when FEATURE_NAMES is not set.
FEATURE_NAMES_FILE = "feature_names.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# botocore's FunctionActiveV2 / FunctionUpdatedV2 waiters poll every second, 300 times.
STATE_POLL_S = 1.0
STATE_MAX_POLLS = 300


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    role_arn: str
    code: bytes
    environment: dict[str, str]
    timeout: int = DEFAULT_TIMEOUT_S
    memory: int = DEFAULT_MEMORY_MB

    @property
    def code_sha256(self) -> str:
        return code_sha256(self.code)


def function_name(stack: str) -> str:
    return f"l2c-{stack}"


def log_group_name(function: str) -> str:
    return f"/aws/lambda/{function}"


def lambda_source_dir() -> Path:
    """The handler shipped in the package (``l2c/lambda/``), or the folder ``L2C_LAMBDA_DIR`` names."""
    configured = os.environ.get(LAMBDA_DIR_ENV)
    folder = Path(configured) if configured else LAMBDA_DIR
    if not (folder / "lambda_function.py").is_file():
        raise CloudError(f"no lambda_function.py in {folder}; set {LAMBDA_DIR_ENV} to the folder holding it")
    return folder


def build_zip(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The folder's Python files (and ``extra`` files, by name), zipped reproducibly."""
    buffer = io.BytesIO()
    files = sorted(p for p in Path(folder).rglob("*.py") if "__pycache__" not in p.parts)
    entries = {path.relative_to(folder).as_posix(): path.read_bytes() for path in files} | dict(extra or {})
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def code_sha256(code: bytes) -> str:
    """The digest in Lambda's own form (base64 of the raw SHA-256), as ``CodeSha256`` reports it."""
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


def environment_from_card(
    card: dict, endpoint: str, max_rows: int = DEFAULT_MAX_ROWS, cors_origin: str | None = None
) -> dict[str, str]:
    """What the handler needs to know about the model, taken from its model card.

    The column names go in FEATURE_NAMES while the environment stays within Lambda's 4 KB; a
    wider model (hundreds of CSV columns) gets FEATURE_COUNT instead, and its names travel in
    the zip (:func:`bundled_files`).

    CORS_ALLOW_ORIGIN is the origin the API's preflight allows: with a Lambda proxy integration
    the function's own answers (2xx and its errors) must carry Access-Control-Allow-Origin
    (API Gateway Developer Guide, "CORS for REST APIs in API Gateway", proxy integrations). Set
    but empty when there is no CORS: the handler then sends no CORS headers (unset, it would
    allow ``*``)."""
    environment = {
        "ENDPOINT_NAME": endpoint,
        "FEATURE_NAMES": ",".join(card["feature_names"]),
        "MAX_ROWS": str(max_rows),
        "CORS_ALLOW_ORIGIN": cors_origin or "",
    }
    if card.get("class_labels"):
        environment["CLASS_LABELS"] = ",".join(str(label) for label in card["class_labels"])
    if environment_size(environment) > ENVIRONMENT_LIMIT_BYTES:
        del environment["FEATURE_NAMES"]
        environment["FEATURE_COUNT"] = str(len(card["feature_names"]))
    return environment


def bundled_files(card: dict, environment: dict[str, str]) -> dict[str, bytes]:
    """Files the zip carries besides the code: the column names when the environment lacks them."""
    if "FEATURE_NAMES" in environment:
        return {}
    return {FEATURE_NAMES_FILE: json.dumps(list(card["feature_names"])).encode()}


def environment_size(environment: dict[str, str]) -> int:
    """The bytes Lambda counts against its 4 KB: the variables' compact JSON form."""
    return len(json.dumps(environment, separators=(",", ":")).encode())


def check_environment(environment: dict[str, str]) -> None:
    """Refuse, before anything is created, an environment Lambda would refuse at CreateFunction."""
    size = environment_size(environment)
    if size > ENVIRONMENT_LIMIT_BYTES:
        largest = max(environment, key=lambda name: len(environment[name]))
        raise CloudError(
            f"the function's environment variables take {size} bytes, over Lambda's limit of "
            f"{ENVIRONMENT_LIMIT_BYTES} bytes for all of them together ({largest} is the largest, "
            f"{len(environment[largest])} characters); nothing was created. Shorten the model's "
            "class labels or column names and train again"
        )


# --------------------------------------------------------------------------- create


def ensure_log_group(session: CloudSession, function: str, wanted_tags: dict) -> bool:
    """Create the function's log group ahead of Lambda, so it is tagged and expires."""
    return ensure_expiring_log_group(session, log_group_name(function), wanted_tags)


def ensure_expiring_log_group(session: CloudSession, group: str, wanted_tags: dict) -> bool:
    """Create (or tag) the log group and give it l2c's retention; True when it was created.

    A group the service creates by itself (Lambda, SageMaker) keeps its events forever and bills
    for their storage: created first, it expires them after LOG_RETENTION_DAYS."""
    logs = session.client("logs")
    try:
        logs.create_log_group(logGroupName=group, tags=wanted_tags)
        created = True
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
        logs.tag_log_group(logGroupName=group, tags=wanted_tags)
        created = False
    logs.put_retention_policy(logGroupName=group, retentionInDays=LOG_RETENTION_DAYS)
    return created


def ensure_function(session: CloudSession, spec: FunctionSpec, wanted_tags: dict) -> tuple[str, str]:
    """Create or update the function; returns its ARN and 'created', 'updated' or 'unchanged'."""
    client = session.client("lambda")
    current = get_configuration(session, spec.name)
    if current is None:
        arn = retry_while_role_propagates(
            lambda: client.create_function(
                FunctionName=spec.name,
                Runtime=LAMBDA_RUNTIME,
                Role=spec.role_arn,
                Handler=HANDLER,
                Code={"ZipFile": spec.code},
                Timeout=spec.timeout,
                MemorySize=spec.memory,
                Environment={"Variables": spec.environment},
                Description="l2c: prediction API in front of a SageMaker endpoint",
                Tags=wanted_tags,
            )["FunctionArn"],
            session,
        )
        _wait(session, "function_active_v2", spec.name)
        return arn, "created"
    change = "unchanged"
    code_differs, configuration_differs = (
        current["CodeSha256"] != spec.code_sha256,
        _configuration_differs(current, spec),
    )
    if code_differs or configuration_differs:
        # A function still Pending (just created) or InProgress (another update) refuses an
        # update with ResourceConflictException: wait until it is Active and its last update done.
        _wait(session, "function_active_v2", spec.name)
        _wait(session, "function_updated_v2", spec.name)
    if code_differs:
        client.update_function_code(FunctionName=spec.name, ZipFile=spec.code)
        _wait(session, "function_updated_v2", spec.name)
        change = "updated"
    if configuration_differs:
        retry_while_role_propagates(
            lambda: client.update_function_configuration(
                FunctionName=spec.name,
                Runtime=LAMBDA_RUNTIME,
                Role=spec.role_arn,
                Handler=HANDLER,
                Timeout=spec.timeout,
                MemorySize=spec.memory,
                Environment={"Variables": spec.environment},
            ),
            session,
        )
        _wait(session, "function_updated_v2", spec.name)
        change = "updated"
    present = client.list_tags(Resource=current["FunctionArn"])["Tags"]
    missing = tags.missing_tags(wanted_tags, present)
    if missing:
        client.tag_resource(Resource=current["FunctionArn"], Tags=missing)
    return current["FunctionArn"], change


def _configuration_differs(current: dict, spec: FunctionSpec) -> bool:
    wanted = (LAMBDA_RUNTIME, spec.role_arn, HANDLER, spec.timeout, spec.memory, spec.environment)
    present = (
        current.get("Runtime"),
        current.get("Role"),
        current.get("Handler"),
        current.get("Timeout"),
        current.get("MemorySize"),
        current.get("Environment", {}).get("Variables", {}),
    )
    return wanted != present


def get_configuration(session: CloudSession, function: str) -> dict | None:
    return get_if_present(lambda: session.client("lambda").get_function_configuration(FunctionName=function), NOT_FOUND)


def _wait(session: CloudSession, waiter: str, function: str) -> None:
    """botocore's waiter, polling at AWS's interval there and at the local cloud's pace here."""
    session.client("lambda").get_waiter(waiter).wait(
        FunctionName=function,
        WaiterConfig={"Delay": session.poll_seconds(STATE_POLL_S), "MaxAttempts": STATE_MAX_POLLS},
    )


def allow_invoke_from(session: CloudSession, function: str, statement_id: str, source_arn: str) -> bool:
    """Let API Gateway invoke the function from exactly one method; True when the policy changed."""
    client = session.client("lambda")
    existing = _statement(session, function, statement_id)
    if existing is not None:
        if _source_arn(existing) == source_arn:
            return False
        client.remove_permission(FunctionName=function, StatementId=statement_id)
    client.add_permission(
        FunctionName=function,
        StatementId=statement_id,
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=source_arn,
    )
    return True


def resource_policy(session: CloudSession, function: str) -> list[dict]:
    policy = get_if_present(lambda: session.client("lambda").get_policy(FunctionName=function)["Policy"], NOT_FOUND)
    return json.loads(policy).get("Statement", []) if policy else []


def _statement(session: CloudSession, function: str, statement_id: str) -> dict | None:
    return next((s for s in resource_policy(session, function) if s.get("Sid") == statement_id), None)


def _source_arn(statement: dict) -> str | None:
    condition = statement.get("Condition", {}).get("ArnLike", {})
    return condition.get("AWS:SourceArn") or condition.get("aws:SourceArn")


# --------------------------------------------------------------------------- delete / list


def delete_function(session: CloudSession, function: str) -> bool:
    return delete_if_present(lambda: session.client("lambda").delete_function(FunctionName=function), NOT_FOUND)


def delete_log_group(session: CloudSession, group: str) -> bool:
    return delete_if_present(lambda: session.client("logs").delete_log_group(logGroupName=group), NOT_FOUND)


def list_functions(session: CloudSession) -> list[dict]:
    client = session.client("lambda")
    found = []
    for page in client.get_paginator("list_functions").paginate():
        for function in page["Functions"]:
            if function["FunctionName"].startswith("l2c-"):
                function_tags = client.list_tags(Resource=function["FunctionArn"])["Tags"]
                found.append({"name": function["FunctionName"], "arn": function["FunctionArn"], "tags": function_tags})
    return found


def list_log_groups(session: CloudSession) -> list[str]:
    """Log groups of l2c's functions and endpoints (SageMaker writes its own on AWS)."""
    paginator = session.client("logs").get_paginator("describe_log_groups")
    groups = []
    for prefix in ("/aws/lambda/l2c-", "/aws/sagemaker/Endpoints/l2c-"):
        for page in paginator.paginate(logGroupNamePrefix=prefix):
            groups.extend(group["logGroupName"] for group in page["logGroups"])
    return groups
