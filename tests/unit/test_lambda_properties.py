"""Property tests: no input makes the handler raise, every refusal is a 4xx with a message, and
only well-formed rows (ASCII numbers a float32 model can hold) ever reach the model."""

import base64
import io
import json
import math
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.profiles import examples

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
FEATURES = 4
MAX_ROWS = 5
ENVIRONMENT = {
    "ENDPOINT_NAME": "l2c-iris",
    "CLASS_LABELS": "setosa,versicolor,virginica",
    "FEATURE_NAMES": "sepal length,sepal width,petal length,petal width",
    "MAX_ROWS": str(MAX_ROWS),
    "MAX_BODY_BYTES": "20000",
}
REST_TEMPLATE = json.loads((EVENTS / "rest-iris.json").read_text())
HTTP_TEMPLATE = json.loads((EVENTS / "http-api-v2-iris.json").read_text())
FAST = settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
ASCII_BLANKS = " \t\r\n\x0b\x0c"


class CheckingModel:
    """A stand-in endpoint that records any malformed CSV it is sent, and answers per row."""

    def __init__(self):
        self.problems = []
        self.bodies = []

    def invoke_endpoint(self, **params):
        body = params["Body"].decode("utf-8")
        self.bodies.append(body)
        rows = body.split("\n")
        for row in rows:
            cells = row.split(",")
            if len(cells) != FEATURES or not all(float32_number(cell) for cell in cells):
                self.problems.append(body)
        if len(rows) > MAX_ROWS or params["ContentType"] != "text/csv":
            self.problems.append(body)
        answer = {"predictions": [{"score": [0.2, 0.5, 0.3]} for _ in rows]}
        return {"Body": io.BytesIO(json.dumps(answer).encode()), "ContentType": "application/json"}


MODEL = CheckingModel()


@pytest.fixture(scope="module")
def handler(lambda_module):
    with pytest.MonkeyPatch.context() as patch:
        for name in ("FEATURE_COUNT", "INVOKE_TIMEOUT_SECONDS", "CORS_ALLOW_ORIGIN"):
            patch.delenv(name, raising=False)
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        patch.setattr(lambda_module, "_client", MODEL)
        # thousands of examples would otherwise fill the captured output with log lines
        patch.setattr(lambda_module, "print", lambda *args, **kwargs: None, raising=False)
        yield lambda_module


def check_outcome(response, proxy):
    """Returns (status, payload) after checking the response honours the contract."""
    if proxy:
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
        assert isinstance(response["body"], str)
        assert response["headers"]["Content-Type"] == "application/json"
        status = response["statusCode"]
        payload = json.loads(response["body"]) if response["body"] else None
    else:
        assert isinstance(response, dict)
        status = response.get("statusCode", 200)
        payload = response
    assert status in (200, 204) or 400 <= status < 500, payload
    if status >= 400:
        assert isinstance(payload["error"], str) and payload["error"]
        assert isinstance(payload["message"], str) and payload["message"]
        assert isinstance(payload["requestId"], str) and payload["requestId"]
    if status == 200:
        assert len(payload["predictions"]) >= 1
    assert MODEL.problems == [], "malformed rows reached the model"
    return status, payload


def rest_event(body, base64_encoded=False):
    event = dict(REST_TEMPLATE)
    event["body"] = body
    event["isBase64Encoded"] = base64_encoded
    return event


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=15,
)
request_keys = st.sampled_from(["data", "instances", "features", "sepal length", "Data"])
requests = st.dictionaries(request_keys, json_values, max_size=3) | json_values


@FAST
@given(requests)
def test_any_json_body_is_answered(handler, request):
    check_outcome(handler.lambda_handler(rest_event(json.dumps(request)), None), proxy=True)


@FAST
@given(requests)
def test_any_direct_event_is_answered(handler, request):
    check_outcome(handler.lambda_handler(request, None), proxy=False)


@FAST
@given(st.text(max_size=300) | st.just("\ud800{}"))
def test_any_text_body_is_answered(handler, text):
    check_outcome(handler.lambda_handler(rest_event(text), None), proxy=True)
    check_outcome(handler.lambda_handler({"data": text}, None), proxy=False)


@FAST
@given(st.binary(max_size=300))
def test_any_base64_body_is_answered(handler, raw):
    encoded = base64.b64encode(raw).decode()
    check_outcome(handler.lambda_handler(rest_event(encoded, base64_encoded=True), None), proxy=True)


proxy_keys = st.sampled_from(
    ["httpMethod", "body", "headers", "isBase64Encoded", "requestContext", "version", "rawPath", "data"]
)
event_values = json_values | st.sampled_from(["POST", "OPTIONS", "GET", "2.0", True, "true"])
events = (
    st.dictionaries(proxy_keys, event_values, max_size=6)
    | st.builds(lambda patch: {**REST_TEMPLATE, **patch}, st.dictionaries(proxy_keys, event_values, max_size=3))
    | st.builds(lambda patch: {**HTTP_TEMPLATE, **patch}, st.dictionaries(proxy_keys, event_values, max_size=3))
    | json_values
)


@FAST
@given(events)
def test_any_event_is_answered(handler, event):
    response = handler.lambda_handler(event, None)
    check_outcome(response, proxy=handler.event_kind(event) != "direct")


def formatted(values):
    return values.flatmap(lambda value: st.sampled_from([repr(value), f"{value:.6E}", f" {value:e} ", f"{value:.17g}"]))


good_cells = formatted(st.floats(allow_nan=False, allow_infinity=False, min_value=-3.4e38, max_value=3.4e38))
beyond_float32 = formatted(
    st.floats(min_value=3.41e38, max_value=1e300) | st.floats(min_value=-1e300, max_value=-3.41e38)
)
bad_cells = st.sampled_from(
    ["nan", "NaN", "inf", "-Infinity", "", "abc", "1e999", "0x10", "--1", "5..1", "1_0", "1e39", "-3.5e38"]
    + ["\uff15.1", "\u0663", "5.\u0661", "\u00a05.1", "\u0e53.3"]  # other scripts' digits and blanks
)
# Strings of number characters, to hold the handler's reading to float()'s own grammar.
number_like = st.text(alphabet="0123456789.eE+- ", min_size=1, max_size=12)
cells = st.one_of(good_cells, good_cells, good_cells, bad_cells, beyond_float32, number_like)


def float32_number(cell):
    """A CSV cell the container reads as a finite float32."""
    value = float(cell)
    return cell.isascii() and math.isfinite(value) and not infinite_in_float32(value)


def infinite_in_float32(value):
    """struct packs through a C float: it refuses exactly the doubles that round to infinity there."""
    try:
        struct.pack("<f", value)
    except OverflowError:
        return True
    return False


tables = st.lists(st.lists(cells, min_size=1, max_size=FEATURES + 2), min_size=1, max_size=MAX_ROWS + 2)


def non_blank(table):
    # a line of nothing but spaces is skipped, like a trailing newline
    return [row for row in table if ",".join(row).strip(ASCII_BLANKS)]


def expected_outcome(table):
    """What a correct handler must answer for these CSV cells."""
    table = non_blank(table)
    if not table or len(table) > MAX_ROWS:
        return 400
    for row in table:
        if len(row) != FEATURES:
            return 400
        for cell in row:
            if not cell.isascii() or "x" in cell or "_" in cell:
                return 400
            try:
                value = float(cell)
            except ValueError:
                return 400
            if not math.isfinite(value) or infinite_in_float32(value):
                return 400
    return 200


@settings(max_examples=examples(600), deadline=None)
@given(tables)
def test_csv_rows_are_accepted_exactly_when_well_formed(handler, table):
    text = "\n".join(",".join(row) for row in table)
    status, payload = check_outcome(handler.lambda_handler({"data": text}, None), proxy=False)
    assert status == expected_outcome(table), (text, payload)
    if status == 200:
        sent = handler._client.bodies[-1]
        parsed = [[float(cell) for cell in line.split(",")] for line in sent.split("\n")]
        expected_rows = non_blank(table)
        assert parsed == [[float(cell) for cell in row] for row in expected_rows]
        assert len(payload["predictions"]) == len(expected_rows)
        assert ("prediction" in payload) is (len(expected_rows) == 1)


json_cells = st.one_of(
    st.floats(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.none(),
    good_cells,
    bad_cells,
)


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(st.lists(json_cells, min_size=FEATURES, max_size=FEATURES), min_size=1, max_size=3))
def test_instances_are_accepted_exactly_when_every_cell_is_a_finite_number(handler, rows):
    body = json.dumps({"instances": rows})  # NaN and Infinity become JSON's non-standard literals
    status, payload = check_outcome(handler.lambda_handler(rest_event(body), None), proxy=True)

    def finite(cell):
        if isinstance(cell, bool) or cell is None:
            return False
        if isinstance(cell, str):
            return expected_outcome([[cell] * FEATURES]) == 200
        try:
            value = float(cell)
        except OverflowError:
            return False
        return math.isfinite(value) and not infinite_in_float32(value)

    assert status == (200 if all(finite(cell) for row in rows for cell in row) else 400), payload
    if status == 400:
        assert payload["error"] in ("non_finite", "not_a_number", "out_of_range")
