"""Calling a deployed stack: straight to its SageMaker endpoint (``invoke``, as boto3 does) or
over HTTPS through its API with its key (``call_api``, as Postman and a web page do)."""

from __future__ import annotations

import json

from l2c.cloud import apigateway, functions, sagemaker
from l2c.cloud.session import AUTO, CloudError, CloudSession, connect


def api_access(session: CloudSession, name: str) -> tuple[str, str | None]:
    """The invoke URL of a deployed stack and the key it needs (None when public)."""
    api = apigateway.find_rest_api(session)
    path = apigateway.resource_path(name)
    if api is None or f"/{path}" not in apigateway.routed_paths(session, api["id"]):
        raise CloudError(f"stack {name} has no API route; deploy it first")
    method = next(
        item["resourceMethods"]["POST"]
        for item in apigateway.resources(session, api["id"])
        if item["path"] == f"/{path}"
    )
    key = apigateway.find_api_key(session) if method.get("apiKeyRequired") else None
    return f"{apigateway.invoke_url(session, api['id'])}/{path}", key["value"] if key else None


def invoke(name: str, rows, session: CloudSession | None = None, target: str = AUTO) -> dict:
    """Call the stack's endpoint directly (as the notebook's boto3 step does): CSV in, JSON out."""
    session = session or connect(target)
    body = rows if isinstance(rows, str) else "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    _check_row_widths(body, deployed_feature_names(session, name))
    response = session.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=sagemaker.endpoint_name(name), ContentType="text/csv", Accept="application/json", Body=body
    )
    return json.loads(response["Body"].read())


def deployed_feature_names(session: CloudSession, name: str) -> list[str] | None:
    """The columns the deployed model takes, as the stack's function was told at deploy time."""
    from botocore.exceptions import ClientError

    try:
        config = session.client("lambda").get_function_configuration(FunctionName=functions.function_name(name))
    except ClientError:
        return None  # an endpoint deployed without its function: nothing to check against
    variables = config.get("Environment", {}).get("Variables", {})
    names = variables.get("FEATURE_NAMES", "")
    if names:
        return names.split(",")
    count = variables.get("FEATURE_COUNT", "")
    # Names too many for the environment travel in the zip; the count is what the check needs.
    return [f"column {index}" for index in range(1, int(count) + 1)] if count.isdigit() else None


def _check_row_widths(body: str, feature_names: list[str] | None) -> None:
    # The container predicts a short row as if the missing columns were missing values, and
    # answers with a plausible number: the caller's mistake must be caught before it.
    if not feature_names:
        return
    for number, line in enumerate(body.strip().splitlines(), start=1):
        width = len(line.split(","))
        if width != len(feature_names):
            shown = ", ".join(feature_names[:20]) + (", ..." if len(feature_names) > 20 else "")
            raise CloudError(f"row {number} has {width} values but the model expects {len(feature_names)} ({shown})")


# A fresh deploy's key and stage take seconds to work on AWS (403 meanwhile), and its
# endpoint may answer 5xx while it warms up: call_api keeps trying for this long.
API_READY_WAIT_S = 60.0


def call_api(
    name: str, body: dict, session: CloudSession | None = None, target: str = AUTO, wait_s: float = API_READY_WAIT_S
) -> tuple[int, dict]:
    """POST a JSON body to the stack's API over HTTP, with its key, the way Postman does.

    A 403 or 5xx is retried with back-off for up to ``wait_s`` seconds (scaled to the local
    cloud's pace) before it is returned: right after a deploy, they mean "not ready yet"."""
    import httpx

    from l2c.cloud import retries

    session = session or connect(target)
    url, key = api_access(session, name)
    headers = {"x-api-key": key} if key else {}

    def post() -> httpx.Response:
        try:
            return httpx.post(url, json=body, headers=headers, timeout=60)
        except httpx.TransportError as err:  # refused, timed out, or not HTTP at all: the caller's URL or network
            raise CloudError(f"cannot call the API at {url}: {err or type(err).__name__}") from None

    def not_ready(response: httpx.Response) -> bool:
        return response.status_code == 403 or response.status_code >= 500

    response = retries.repeat_while(
        post,
        not_ready,
        session.poll_seconds(wait_s) if wait_s > 0 else 0,
        session.poll_seconds(retries.FIRST_DELAY_S),
        session.poll_seconds(retries.MAX_DELAY_S),
    )
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"raw": response.text}
