"""Prediction API in front of an XGBoost model hosted on a SageMaker endpoint.

Client -> API Gateway (REST or HTTP API, Lambda proxy integration) -> this function ->
sagemaker-runtime InvokeEndpoint (text/csv in, application/json out) -> JSON answer.

The file stands alone (standard library and boto3 only) so it can be pasted into the Lambda
console: runtime python3.13, handler ``lambda_function.lambda_handler``.

Environment variables
    ENDPOINT_NAME           required: the SageMaker endpoint to call.
    CLASS_LABELS            comma list, e.g. ``setosa,versicolor,virginica``: names the classes
                            of a classifier. Without it classes are numbered from 0.
    FEATURE_NAMES           comma list, e.g. ``CRIM,ZN,...,LSTAT``: the model's columns in
                            order. Enables ``{"features": {...}}`` and the column-count check.
    FEATURE_COUNT           integer: the column-count check without names.
                            (Names too many for the environment's 4 KB may instead come in
                            ``feature_names.json`` next to this file, a JSON list.)
    MAX_ROWS                rows per request (default 1000).
    MAX_BODY_BYTES          request body size in bytes (default 1048576).
    INVOKE_TIMEOUT_SECONDS  read timeout of one endpoint call (default: derived from the
                            function's own timeout, see _read_timeout).
    CORS_ALLOW_ORIGIN       Access-Control-Allow-Origin of every answer (default ``*``;
                            set but empty: no CORS headers at all).

Requests: the JSON body of a proxy event (REST API, HTTP API 1.0 or 2.0, base64 or not), or
the event itself when the function is invoked directly (console test, non-proxy integration):
    {"data": "5.1,3.3,1.7,0.5"}                       one row; spaces and 3.77E-02 are fine
    {"data": "5.1,3.3,1.7,0.5\\n6.2,2.9,4.3,1.3"}      one row per line
    {"instances": [[5.1, 3.3, 1.7, 0.5], [...]]}       a list of rows (a flat list is one row)
    {"features": {"CRIM": 0.0377, ...}}                named columns (needs FEATURE_NAMES);
                                                       also a list of such objects
A proxy request with ``Content-Type: text/csv`` may send the CSV rows as the raw body.

Answers (proxy: JSON string body with Content-Type and CORS headers; direct: the dict itself):
    classifier  {"predictions": [{"label": "setosa", "class_index": 0,
                  "probabilities": {"setosa": 0.98, "versicolor": 0.01, "virginica": 0.01}}],
                 "prediction": "setosa"}
    regressor   {"predictions": [{"value": 28.42}], "prediction": 28.42}
``prediction`` is present only when the request held exactly one row.

Errors: {"error": "<code>", "message": "<what is wrong>", "requestId": "<id>"}; a direct
invocation gets the same dict with "statusCode" added (it never raises, so a console test
shows the message). 400 for every caller mistake (bad JSON, missing or empty data, wrong
column count, non-numeric or non-ASCII digits, NaN or infinite, beyond float32's range, too
many rows, body too large, rows the container refused with a 4xx); 405 for a method other than
POST; 503 (Retry-After) when the endpoint does not exist, is not ready or cannot be reached;
429 (Retry-After) when throttled; 502 when the model fails or its output is unusable; 504 on a
timeout; 500 with the request id for anything else, never a stack trace. The container's own
error text is logged, never answered.
"""

import base64
import binascii
import json
import math
import os
import re
import time
import traceback
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
INPUT_KEYS = ("data", "instances", "features")
# Keys under which SageMaker's XGBoost container (and SAGEMAKER_INFERENCE_OUTPUT) put a score.
SCORE_KEYS = ("score", "probabilities", "predicted_score", "probability")
THROTTLING_CODES = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
}
UNAVAILABLE_CODES = {"ModelNotReadyException", "ServiceUnavailable"}
# A plain decimal or scientific number in ASCII digits. float() alone would also take "1_0",
# "nan", "inf" and the digits of other scripts ("\uff11", "\u0663"): those are not in the
# container's text/csv, and lookalike digits usually mean text pasted from a document.
# No two parts of the pattern can match the same characters, so a failed match costs one pass
# over the cell: the earlier `\d+\.?\d*` tried every split of a run of digits, and one 40 KB
# cell ending in "x" held the function for its whole timeout.
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
NON_FINITE_WORDS = {"nan", "inf", "infinity"}
# What str.strip() would also remove (no-break and ideographic spaces...) is not a CSV blank.
ASCII_BLANKS = " \t\r\n\x0b\x0c"
# XGBoost computes in float32 (the container's DMatrix converts every value to it): a double at
# or beyond the midpoint between float32's largest value (3.4028235e38) and 2**128 rounds to
# infinity there, and the container refuses the whole request ("Input data contains `inf`").
# Source: sagemaker-xgboost-container, src/sagemaker_xgboost_container/encoder.py (csv_to_dmatrix).
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
CORS_HEADERS = {
    "Access-Control-Allow-Headers": "Content-Type,X-Api-Key,Authorization,X-Amz-Date,X-Amz-Security-Token",
    "Access-Control-Allow-Methods": "OPTIONS,POST",
}

_client = None


class ApiError(Exception):
    """A request that ends with an HTTP error status and a message for the caller."""

    def __init__(self, status, code, message, retry_after=None, log_detail=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.log_detail = log_detail


def bad_request(code, message):
    return ApiError(400, code, message)


def misconfigured(message):
    return ApiError(500, "misconfigured", message)


def bad_model_output(message):
    return ApiError(502, "bad_model_output", message)


# --------------------------------------------------------------------------- settings


class Settings:
    """The function's environment, read per request so a console edit takes effect at once."""

    def __init__(self, environ):
        self.endpoint_name = (environ.get("ENDPOINT_NAME") or "").strip()
        if not self.endpoint_name:
            raise misconfigured("the function has no ENDPOINT_NAME environment variable")
        self.class_labels = _comma_list(environ, "CLASS_LABELS")
        self.feature_names = _comma_list(environ, "FEATURE_NAMES") or _bundled_feature_names()
        count = _positive_number(environ, "FEATURE_COUNT", None, int)
        if self.feature_names and count is not None and count != len(self.feature_names):
            raise misconfigured("FEATURE_COUNT disagrees with the number of FEATURE_NAMES")
        self.feature_count = len(self.feature_names) or count
        self.max_rows = _positive_number(environ, "MAX_ROWS", DEFAULT_MAX_ROWS, int)
        self.max_body_bytes = _positive_number(environ, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, int)
        self.invoke_timeout = _positive_number(environ, "INVOKE_TIMEOUT_SECONDS", None, float)


# --- l2c deploy: column names shipped in the zip (too many for Lambda's 4 KB environment) ---
FEATURE_NAMES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "feature_names.json")
_BUNDLED_NAMES = []


def _bundled_feature_names():
    """The names in feature_names.json next to this file (a JSON list), read once; [] without it."""
    if not _BUNDLED_NAMES and os.path.isfile(FEATURE_NAMES_FILE):
        with open(FEATURE_NAMES_FILE, encoding="utf-8") as handle:
            names = json.load(handle)
        if not isinstance(names, list) or len(set(map(str, names))) != len(names):
            raise misconfigured("feature_names.json must be a JSON list of distinct column names")
        _BUNDLED_NAMES.extend(str(name) for name in names)
    return list(_BUNDLED_NAMES)


# --- end of the bundled column names ---


def _comma_list(environ, name):
    items = [item.strip() for item in (environ.get(name) or "").split(",") if item.strip()]
    if len(set(items)) != len(items):
        raise misconfigured(f"{name} names the same item twice")
    return items


def _positive_number(environ, name, default, kind):
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not value > 0 or not math.isfinite(value):
        raise misconfigured(f"{name} must be a positive number, not {raw!r}")
    return value


# --------------------------------------------------------------------------- entry point


def lambda_handler(event, context=None):
    started = time.monotonic()
    request_id = _request_id(event, context)
    kind = event_kind(event)
    rows = 0
    log_fields = {}
    try:
        if kind != "direct" and _method(event, kind) == "OPTIONS":
            status, payload, extra_headers = 204, None, {}
        else:
            settings = Settings(os.environ)
            table = rows_from_request(request_object(event, kind, settings), settings)
            rows = len(table)
            log_fields["endpoint"] = settings.endpoint_name
            status, payload, extra_headers = 200, predict(table, settings, context), {}
    except ApiError as err:
        status, payload, extra_headers = _error_parts(err, request_id)
        log_fields.update(error=err.code, detail=err.log_detail)
    except Exception as exc:  # the caller gets an id to quote, the log gets the trace
        err = ApiError(500, "internal_error", f"internal error; quote request id {request_id}")
        status, payload, extra_headers = _error_parts(err, request_id)
        log_fields.update(error=err.code, detail=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
    _log_request(request_id, kind, status, rows, started, log_fields)
    return _respond(kind, status, payload, extra_headers)


def event_kind(event):
    """'rest' (REST API or HTTP API 1.0), 'http' (HTTP API 2.0) or 'direct' (the event is the request)."""
    if not isinstance(event, dict):
        return "direct"
    if event.get("version") == "2.0" and ("rawPath" in event or "requestContext" in event):
        return "http"
    if "httpMethod" in event or "requestContext" in event:
        return "rest"
    if "body" in event and not any(key in event for key in INPUT_KEYS):
        return "rest"
    return "direct"


def _method(event, kind):
    method = _dig(event, "requestContext", "http", "method") if kind == "http" else event.get("httpMethod")
    return method.upper() if isinstance(method, str) else None


def _dig(value, *keys):
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _request_id(event, context):
    request_id = getattr(context, "aws_request_id", None)
    if not isinstance(request_id, str) or not request_id:
        request_id = _dig(event, "requestContext", "requestId")
    if not isinstance(request_id, str) or not request_id:
        request_id = str(uuid.uuid4())
    return request_id[:128]


# --------------------------------------------------------------------------- responses


def _error_parts(err, request_id):
    payload = {"error": err.code, "message": err.message, "requestId": request_id}
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else {}
    if err.status == 405:
        headers["Allow"] = "OPTIONS, POST"
    return err.status, payload, headers


def _respond(kind, status, payload, extra_headers):
    if kind == "direct":
        if status >= 400:
            return {"statusCode": status, **payload}
        return payload
    headers = {"Content-Type": "application/json", **_cors_headers(), **extra_headers}
    # API Gateway answers 502 "Malformed Lambda proxy response" unless body is a string.
    body = "" if payload is None else json.dumps(payload)
    return {"statusCode": status, "headers": headers, "body": body, "isBase64Encoded": False}


def _cors_headers():
    # Empty, not unset, is an API no browser page on another origin may call: no header allows it.
    origin = os.environ.get("CORS_ALLOW_ORIGIN", "*")
    return {"Access-Control-Allow-Origin": origin, **CORS_HEADERS} if origin else {}


def _log_request(request_id, kind, status, rows, started, fields):
    # One JSON line per request, never the payload: CloudWatch Logs Insights can query it.
    line = {
        "message": "prediction request",
        "requestId": request_id,
        "source": kind,
        "status": status,
        "rows": rows,
        "latencyMs": round((time.monotonic() - started) * 1000, 1),
    }
    line.update({key: value for key, value in fields.items() if value is not None})
    print(json.dumps(line, default=str), flush=True)


# --------------------------------------------------------------------------- reading the request


def request_object(event, kind, settings):
    """The request as a dict, whatever wrapped it."""
    if kind != "direct":
        method = _method(event, kind)
        if method is not None and method != "POST":
            raise ApiError(405, "method_not_allowed", f"use POST, not {method[:20]}")
        event = _proxy_body(event, settings)
    if not isinstance(event, dict):
        raise bad_request("invalid_body", 'the request must be a JSON object such as {"data": "5.1,3.3,1.7,0.5"}')
    return event


def _proxy_body(event, settings):
    body = event.get("body")
    if isinstance(body, dict):  # a hand-made test event that skipped the JSON encoding
        return body
    if body is None or body == "":
        raise _empty_body()
    if not isinstance(body, str):
        raise bad_request("invalid_body", "the request body must be a string")
    text = _decode_body(body, event.get("isBase64Encoded") in (True, "true"), settings.max_body_bytes)
    if _content_type(event).startswith("text/csv"):
        return {"data": text}
    return _parse_json(text)


def _decode_body(body, is_base64, limit):
    if is_base64:
        if len(body) > limit * 4 // 3 + 4:
            raise _too_large(limit)
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("invalid_body", "the body is marked base64 but is not valid base64") from None
        if len(raw) > limit:
            raise _too_large(limit)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("invalid_body", "the request body is not UTF-8 text") from None
    size = len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _too_large(limit)
    return body


def _empty_body():
    return bad_request("missing_data", 'the request body is empty; send {"data": "<comma-separated values>"}')


def _too_large(limit):
    return bad_request("body_too_large", f"the request body is larger than {limit} bytes (MAX_BODY_BYTES)")


def _content_type(event):
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return ""
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "content-type" and isinstance(value, str):
            return value.strip().lower()
    return ""


def _parse_json(text):
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise _empty_body()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise bad_request(
            "invalid_json", f"the request body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except (ValueError, RecursionError):
        raise bad_request("invalid_json", "the request body is not valid JSON") from None


# --------------------------------------------------------------------------- rows of numbers


def rows_from_request(request, settings):
    """The request's rows as lists of finite floats, checked against the model's columns."""
    present = [key for key in INPUT_KEYS if key in request]
    if not present:
        raise bad_request(
            "missing_data",
            'the request needs "data" (comma-separated values, one row per line), '
            '"instances" (a list of rows) or "features" (an object of named values)',
        )
    if len(present) > 1:
        raise bad_request("ambiguous_input", f"send only one of {', '.join(present)}")
    key = present[0]
    value = request[key]
    if key == "data" and isinstance(value, str):
        return _rows_from_csv(value, settings)
    if key == "features" and isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise bad_request("invalid_body", f'"{key}" must be a list of rows' + (" or a string" if key == "data" else ""))
    return _rows_from_list(value, key, settings)


def _rows_from_csv(text, settings):
    lines = [line.strip(ASCII_BLANKS) for line in text.splitlines() if line.strip(ASCII_BLANKS)]
    if not lines:
        raise bad_request("empty_data", '"data" holds no values')
    _check_row_count(len(lines), settings)
    table = []
    for row_number, line in enumerate(lines, 1):
        cells = line.split(",")
        _check_width(len(cells), row_number, table, settings)
        table.append([number(cell, f"row {row_number}, value {col}") for col, cell in enumerate(cells, 1)])
    return table


def _rows_from_list(value, key, settings):
    if not value:
        raise bad_request("empty_data", f'"{key}" holds no rows')
    if not any(isinstance(item, (list, dict)) for item in value):
        value = [value]  # a flat list of numbers is one row
    _check_row_count(len(value), settings)
    table = []
    for row_number, row in enumerate(value, 1):
        if isinstance(row, dict):
            table.append(_named_row(row, row_number, settings))
        elif isinstance(row, list) and key != "features":
            _check_width(len(row), row_number, table, settings)
            table.append([number(cell, f"row {row_number}, value {col}") for col, cell in enumerate(row, 1)])
        else:
            expected = "an object of named features" if key == "features" else "a list of numbers"
            raise bad_request("invalid_body", f'row {row_number} of "{key}" must be {expected}')
    return table


def _named_row(row, row_number, settings):
    names = settings.feature_names
    if not names:
        raise bad_request(
            "named_features_unavailable",
            'this API was deployed without FEATURE_NAMES; send the values in order with "data"',
        )
    index = {_plain_name(name): position for position, name in enumerate(names)}
    values = {}
    unknown = []
    for key, cell in row.items():
        position = index.get(_plain_name(key))
        if position is None:
            unknown.append(str(key)[:40])
        elif position in values:
            raise bad_request("wrong_features", f"row {row_number} names {names[position]} twice")
        else:
            values[position] = number(cell, f"row {row_number}, feature {names[position]}")
    missing = [name for position, name in enumerate(names) if position not in values]
    if unknown or missing:
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if unknown:
            problems.append("unknown " + ", ".join(unknown[:10]))
        raise bad_request(
            "wrong_features", f"row {row_number}: {'; '.join(problems)}; the model expects {', '.join(names)}"
        )
    return [values[position] for position in range(len(names))]


def _plain_name(name):
    # "crim", "CRIM" and "sepal_length" / "Sepal Length" name the same column.
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") if isinstance(name, str) else None


def _check_row_count(count, settings):
    if count > settings.max_rows:
        raise bad_request("too_many_rows", f"{count} rows in one request; the limit is {settings.max_rows} (MAX_ROWS)")


def _check_width(width, row_number, earlier_rows, settings):
    # The container does not check this: a short row would silently get a prediction.
    expected = settings.feature_count
    if expected is not None and width != expected:
        names = f" ({', '.join(settings.feature_names)})" if settings.feature_names else ""
        raise bad_request(
            "wrong_feature_count",
            f"row {row_number} has {width} values but the model expects {expected}{names}",
        )
    if expected is None and earlier_rows and width != len(earlier_rows[0]):
        raise bad_request(
            "wrong_feature_count", f"row {row_number} has {width} values but row 1 has {len(earlier_rows[0])}"
        )


def number(cell, where):
    """One cell as a finite float, or a 400 that says which cell is wrong and why."""
    if isinstance(cell, (bool, list, dict)) or cell is None:
        what = {list: "a list", dict: "an object"}.get(type(cell)) or json.dumps(cell)
        raise bad_request("not_a_number", f"{where} is {what}, not a number")
    shown = None
    if isinstance(cell, str):
        text = cell.strip(ASCII_BLANKS)
        if not text:
            raise bad_request("not_a_number", f"{where} is empty")
        if text.lower().lstrip("+-") in NON_FINITE_WORDS:
            raise _non_finite(where)
        if not NUMBER.fullmatch(text):
            hint = "" if text.isascii() else " (only the ASCII digits 0-9 are read)"
            raise bad_request("not_a_number", f"{where} is {text[:40]!r}, not a number{hint}")
        cell = shown = text
    try:
        value = float(cell)
    except (OverflowError, ValueError):
        raise _non_finite(where) from None
    if not math.isfinite(value):
        raise _non_finite(where)
    if abs(value) >= FLOAT32_OVERFLOW:
        shown = shown[:40] if shown is not None else f"{value:.8g}"
        raise bad_request(
            "out_of_range",
            f"{where} is {shown}, beyond the model's float32 range: the limit is 3.4028235e38 either side of 0",
        )
    return value


def _non_finite(where):
    return bad_request("non_finite", f"{where} is NaN, infinite or out of range; the model needs finite numbers")


def to_csv(table):
    # repr() is the shortest text that reads back as the same double.
    return "\n".join(",".join(repr(value) for value in row) for row in table)


# --------------------------------------------------------------------------- calling the endpoint


def sagemaker_runtime(context=None, read_timeout=None):
    """The container's one sagemaker-runtime client, made on first use and then reused."""
    global _client
    if _client is None:
        _client = boto3.client("sagemaker-runtime", config=_client_config(context, read_timeout))
    return _client


def _client_config(context, read_timeout):
    # botocore's defaults (60 s read timeout, several retries) outlast both this function's
    # timeout and API Gateway's 29 s: the caller would get a bare gateway error instead of our
    # JSON. One retry covers a dropped connection or a brief throttle; more would pile load on
    # an endpoint that is already struggling.
    return Config(
        connect_timeout=2,
        read_timeout=read_timeout or _read_timeout(context),
        retries={"mode": "standard", "total_max_attempts": 2},
    )


def _read_timeout(context):
    try:
        remaining = context.get_remaining_time_in_millis() / 1000.0
    except Exception:  # no context (a local call) or an unusual one: fall back to a fixed budget
        remaining = 21.0
    # Two attempts must fit in what is left, with a second to spare for answering.
    return max(1.0, min(25.0, (remaining - 1.0) / 2))


def predict(table, settings, context):
    output, content_type = invoke(to_csv(table), settings, context)
    scores = read_scores(output, content_type, len(table))
    predictions = [describe(score, settings.class_labels) for score in scores]
    result = {"predictions": predictions}
    if len(predictions) == 1:
        only = predictions[0]
        result["prediction"] = only["label"] if "label" in only else only["value"]
    return result


def invoke(csv_text, settings, context):
    try:
        response = sagemaker_runtime(context, settings.invoke_timeout).invoke_endpoint(
            EndpointName=settings.endpoint_name,
            ContentType="text/csv",
            Accept="application/json",
            Body=csv_text.encode("utf-8"),
        )
        return response["Body"].read(), response.get("ContentType") or ""
    except ClientError as err:
        raise _from_client_error(err, settings.endpoint_name) from None
    except (ReadTimeoutError, ConnectTimeoutError) as err:
        raise ApiError(504, "timeout", "the model did not answer in time", log_detail=str(err)) from None
    except (EndpointConnectionError, ConnectionClosedError) as err:
        # Nothing answered (the service or its host is down or restarting): a retry may well work.
        raise ApiError(
            503, "endpoint_unreachable", "the model could not be reached; retry shortly", 5, log_detail=str(err)
        ) from None


def _from_client_error(err, endpoint_name):
    response = err.response if isinstance(err.response, dict) else {}
    code = str(_dig(response, "Error", "Code") or "")
    message = str(_dig(response, "Error", "Message") or "")
    status = _dig(response, "ResponseMetadata", "HTTPStatusCode")
    detail = f"{code}: {message}"[:1000]
    if code == "ModelError":
        return _from_model_error(response, message)
    if code == "ValidationError" and "not found" in message.lower():
        return ApiError(
            503, "endpoint_not_found", f"the endpoint {endpoint_name} does not exist (yet)", 30, log_detail=detail
        )
    if code in THROTTLING_CODES or (status == 429 and code not in UNAVAILABLE_CODES):
        return ApiError(429, "throttled", "too many requests; retry shortly", 1, log_detail=detail)
    if code in UNAVAILABLE_CODES or status == 503:
        return ApiError(503, "model_unavailable", "the model is not ready; retry shortly", 5, log_detail=detail)
    return ApiError(500, "internal_error", "the endpoint call failed", log_detail=detail)


def _from_model_error(response, message):
    """The container's own words go to the log only: they can name its files, versions and code.

    ModelError carries OriginalStatusCode, OriginalMessage and LogStreamArn (InvokeEndpoint in
    the SageMaker Runtime API reference)."""
    original_status = response.get("OriginalStatusCode")
    detail = {
        "code": "ModelError",
        "originalStatusCode": original_status,
        "originalMessage": str(response.get("OriginalMessage") or message)[:2000],
        "logStreamArn": response.get("LogStreamArn"),
    }
    # The container answers 4xx when it cannot read or score the rows (415 for CSV it cannot
    # load, 400 for a column count the model does not take; algorithm_mode/serve.py in
    # sagemaker-xgboost-container) and 5xx when it fails itself (500: a model it cannot load).
    # The rows are the caller's, so a 4xx is the caller's mistake.
    if isinstance(original_status, int) and 400 <= original_status < 500:
        return ApiError(
            400,
            "model_rejected_input",
            "the model refused these rows; check that each row holds the model's columns in order",
            log_detail=detail,
        )
    return ApiError(502, "model_error", "the model could not answer this request", log_detail=detail)


# --------------------------------------------------------------------------- reading the answer


def read_scores(output, content_type, row_count):
    """One score per row: a float (regression, binary) or a list of class probabilities."""
    try:
        text = output.decode("utf-8") if isinstance(output, bytes) else str(output)
    except UnicodeDecodeError:
        raise bad_model_output("the model answered with bytes that are not text") from None
    if content_type.startswith("text/csv"):
        parsed = _csv_scores(text)
    else:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = _csv_scores(text)  # older containers ignore Accept and answer CSV
    entries = _score_entries(parsed, row_count)
    if len(entries) != row_count:
        raise bad_model_output(f"the model returned {len(entries)} predictions for {row_count} rows")
    return [_score(entry) for entry in entries]


def _csv_scores(text):
    try:
        rows = [[float(cell) for cell in line.split(",")] for line in text.splitlines() if line.strip()]
    except ValueError:
        raise bad_model_output("the model's answer is neither JSON nor CSV") from None
    return [row[0] if len(row) == 1 else row for row in rows]


def _score_entries(parsed, row_count):
    if isinstance(parsed, dict) and isinstance(parsed.get("predictions"), list):
        return parsed["predictions"]
    if isinstance(parsed, dict):
        if row_count == 1:
            return [parsed]
        key = next((key for key in SCORE_KEYS if key in parsed), None)
        if key and isinstance(parsed[key], list):
            return parsed[key]
    if isinstance(parsed, list):
        if row_count == 1 and len(parsed) > 1 and all(_is_number(item) for item in parsed):
            return [parsed]  # one row of class probabilities, unwrapped
        return parsed
    if _is_number(parsed):
        return [parsed]
    raise bad_model_output("the model's answer has no predictions")


def _score(entry):
    if isinstance(entry, dict):
        key = next((key for key in SCORE_KEYS if key in entry), None)
        if key is None:
            raise bad_model_output("a prediction of the model has no score")
        entry = entry[key]
    if isinstance(entry, list) and len(entry) == 1:
        entry = entry[0]
    if _is_number(entry):
        return float(entry)
    if isinstance(entry, list) and entry and all(_is_number(item) for item in entry):
        return [float(item) for item in entry]
    raise bad_model_output("a score of the model is not a number or a list of numbers")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def describe(score, class_labels):
    """A row's answer: a value for a regressor, the label and its probabilities for a classifier."""
    if isinstance(score, float) and len(class_labels) != 2:
        if class_labels:
            raise bad_model_output(
                f"the model returned one number per row but CLASS_LABELS names {len(class_labels)} classes"
            )
        return {"value": score}
    # binary:logistic scores the probability of class 1
    probabilities = [1.0 - score, score] if isinstance(score, float) else score
    if class_labels and len(class_labels) != len(probabilities):
        raise bad_model_output(
            f"the model returned {len(probabilities)} class probabilities "
            f"but CLASS_LABELS names {len(class_labels)} classes"
        )
    names = class_labels or [str(position) for position in range(len(probabilities))]
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    return {
        "label": class_labels[best] if class_labels else best,
        "class_index": best,
        "probabilities": dict(zip(names, probabilities)),
    }
