"""The Lambda handler over recorded API Gateway events, with the endpoint call stubbed.

botocore's Stubber checks the exact invoke_endpoint parameters the handler sends; small fake
clients stand in where a test needs a transport error or a particular container answer.
"""

import base64
import copy
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.response import StreamingBody
from botocore.stub import Stubber

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
IRIS_FEATURES = "sepal length,sepal width,petal length,petal width"
HOUSE_FEATURES = "CRIM,ZN,INDUS,CHAS,NOX,RM,AGE,DIS,RAD,TAX,PTRATIO,B,LSTAT"
IRIS_ROW = b"5.1,3.3,1.7,0.5"
HOUSE_ROW = b"0.0377,80.0,1.52,0.0,0.404,7.27,38.3,7.31,2.0,329.0,12.6,392.0,6.62"
HOUSE_ROW_2 = b"0.00632,18.0,2.31,0.0,0.538,6.58,65.2,4.09,1.0,296.0,15.3,397.0,4.98"
IRIS_SCORES = {"predictions": [{"score": [0.9712, 0.0201, 0.0087]}]}
OPTIONAL_ENV = [
    "CLASS_LABELS",
    "FEATURE_NAMES",
    "FEATURE_COUNT",
    "MAX_ROWS",
    "MAX_BODY_BYTES",
    "INVOKE_TIMEOUT_SECONDS",
    "CORS_ALLOW_ORIGIN",
]


def load_event(name):
    return json.loads((EVENTS / name).read_text())


class FakeContext:
    """What the Lambda runtime (and the local cloud's worker) pass: only these three members."""

    function_name = "l2c-predict"

    def __init__(self, request_id="0f1e2d3c-aaaa-4bbb-8ccc-123456789abc", remaining_ms=30000):
        self.aws_request_id = request_id
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self):
        return self._remaining_ms


class CannedClient:
    """Answers every call with one container body, and remembers what it was sent."""

    def __init__(self, body=b"", content_type="application/json", error=None):
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.content_type = content_type
        self.error = error
        self.calls = []

    def invoke_endpoint(self, **params):
        self.calls.append(params)
        if self.error is not None:
            raise self.error
        return {"Body": io.BytesIO(self.body), "ContentType": self.content_type}


@pytest.fixture
def handler(lambda_module, monkeypatch, tmp_path):
    """The module with a clean environment for the iris endpoint and no cached client."""
    for name in OPTIONAL_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    use_iris(monkeypatch)
    monkeypatch.setattr(lambda_module, "_client", None)
    return lambda_module


def use_iris(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "l2c-iris")
    monkeypatch.setenv("CLASS_LABELS", ",".join(IRIS_LABELS))
    monkeypatch.setenv("FEATURE_NAMES", IRIS_FEATURES)


def use_house(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "l2c-houseprice")
    monkeypatch.delenv("CLASS_LABELS", raising=False)
    monkeypatch.setenv("FEATURE_NAMES", HOUSE_FEATURES)


@pytest.fixture
def stub(handler):
    stubber = Stubber(handler.sagemaker_runtime())
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def expect_call(stubber, endpoint, body, answer):
    raw = json.dumps(answer).encode()
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"},
        {"EndpointName": endpoint, "ContentType": "text/csv", "Accept": "application/json", "Body": body},
    )


def use_client(handler, monkeypatch, client):
    monkeypatch.setattr(handler, "_client", client)
    return client


def proxy_event(body, method="POST", content_type="application/json"):
    event = load_event("rest-iris.json")
    event["httpMethod"] = method
    event["headers"]["Content-Type"] = content_type
    event["body"] = body
    return event


def check_proxy_response(response):
    """The shape API Gateway needs; anything else is its 502 'Malformed Lambda proxy response'."""
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert isinstance(response["statusCode"], int)
    assert isinstance(response["body"], str)
    assert response["isBase64Encoded"] is False
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["headers"]["Access-Control-Allow-Methods"]
    return json.loads(response["body"]) if response["body"] else None


def check_error(response, status, code, fragment=""):
    payload = check_proxy_response(response)
    assert response["statusCode"] == status, payload
    assert payload["error"] == code, payload
    assert fragment in payload["message"], payload
    assert payload["requestId"]
    return payload


IRIS_ANSWER = {
    "predictions": [
        {
            "label": "setosa",
            "class_index": 0,
            "probabilities": {"setosa": 0.9712, "versicolor": 0.0201, "virginica": 0.0087},
        }
    ],
    "prediction": "setosa",
}
HOUSE_ANSWER = {"predictions": [{"value": 28.42}], "prediction": 28.42}


# --------------------------------------------------------------------------- the recorded events


@pytest.mark.parametrize("fixture", ["rest-iris.json", "rest-iris-base64.json", "http-api-v2-iris.json"])
def test_iris_proxy_events_give_the_species(handler, stub, fixture):
    expect_call(stub, "l2c-iris", IRIS_ROW, IRIS_SCORES)
    response = handler.lambda_handler(load_event(fixture), FakeContext())
    payload = check_proxy_response(response)
    assert response["statusCode"] == 200
    assert payload == IRIS_ANSWER


def test_house_price_rest_event_gives_the_price(handler, stub, monkeypatch):
    use_house(monkeypatch)
    expect_call(stub, "l2c-houseprice", HOUSE_ROW, {"predictions": [{"score": 28.42}]})
    response = handler.lambda_handler(load_event("rest-houseprice.json"), FakeContext())
    assert response["statusCode"] == 200
    assert check_proxy_response(response) == HOUSE_ANSWER


def test_console_test_event_returns_the_plain_result(handler, stub):
    expect_call(stub, "l2c-iris", IRIS_ROW, IRIS_SCORES)
    assert handler.lambda_handler(load_event("console-iris.json"), FakeContext()) == IRIS_ANSWER


def test_console_house_price_event_works_without_a_context(handler, stub, monkeypatch):
    use_house(monkeypatch)
    expect_call(stub, "l2c-houseprice", HOUSE_ROW, {"predictions": [{"score": 28.42}]})
    assert handler.lambda_handler(load_event("console-houseprice.json"), None) == HOUSE_ANSWER


def test_several_rows_in_one_string_become_one_csv_call(handler, stub, monkeypatch):
    use_house(monkeypatch)
    answer = {"predictions": [{"score": 28.42}, {"score": 24.0}]}
    expect_call(stub, "l2c-houseprice", HOUSE_ROW + b"\n" + HOUSE_ROW_2, answer)
    response = handler.lambda_handler(load_event("rest-houseprice-multirow.json"), FakeContext())
    payload = check_proxy_response(response)
    assert payload == {"predictions": [{"value": 28.42}, {"value": 24.0}]}, "no single prediction for two rows"


def test_named_features_are_sent_in_the_model_order(handler, stub, monkeypatch):
    use_house(monkeypatch)
    expect_call(stub, "l2c-houseprice", HOUSE_ROW, {"predictions": [{"score": 28.42}]})
    event = load_event("rest-houseprice-features.json")
    features = json.loads(event["body"])["features"]
    # reversed order and lower-case names must land in the same columns
    event["body"] = json.dumps({"features": {name.lower(): value for name, value in reversed(features.items())}})
    response = handler.lambda_handler(event, FakeContext())
    assert check_proxy_response(response) == HOUSE_ANSWER


def test_a_list_of_named_rows(handler, stub):
    expect_call(
        stub,
        "l2c-iris",
        IRIS_ROW + b"\n6.2,2.9,4.3,1.3",
        {"predictions": [{"score": [0.9, 0.05, 0.05]}, {"score": [0.1, 0.8, 0.1]}]},
    )
    rows = [
        {"Sepal Length": 5.1, "sepal_width": 3.3, "petal length": 1.7, "petal width": 0.5},
        {"sepal length": 6.2, "sepal width": 2.9, "petal length": 4.3, "petal width": 1.3},
    ]
    payload = check_proxy_response(handler.lambda_handler(proxy_event(json.dumps({"features": rows})), None))
    assert [row["label"] for row in payload["predictions"]] == ["setosa", "versicolor"]


@pytest.mark.parametrize(
    "request_body",
    [
        {"instances": [[5.1, 3.3, 1.7, 0.5], [6.2, 2.9, 4.3, 1.3]]},
        {"data": [[5.1, 3.3, 1.7, 0.5], [6.2, 2.9, 4.3, 1.3]]},
        {"instances": [["5.1", " 3.3", "1.7", "5e-1"], [6.2, 2.9, 4.3, 1.3]]},
        {"data": "  5.1 , 3.3,1.7 ,0.5 \r\n\n6.2,2.9,4.3,1.3\n"},
    ],
)
def test_row_lists_become_csv_lines(handler, stub, request_body):
    answer = {"predictions": [{"score": [0.9, 0.05, 0.05]}, {"score": [0.1, 0.8, 0.1]}]}
    expect_call(stub, "l2c-iris", IRIS_ROW + b"\n6.2,2.9,4.3,1.3", answer)
    response = handler.lambda_handler(proxy_event(json.dumps(request_body)), FakeContext())
    payload = check_proxy_response(response)
    assert response["statusCode"] == 200
    assert [row["label"] for row in payload["predictions"]] == ["setosa", "versicolor"]
    assert "prediction" not in payload


def test_a_flat_instance_list_is_one_row(handler, stub):
    expect_call(stub, "l2c-iris", IRIS_ROW, IRIS_SCORES)
    response = handler.lambda_handler(proxy_event(json.dumps({"instances": [5.1, 3.3, 1.7, 0.5]})), None)
    assert check_proxy_response(response)["prediction"] == "setosa"


def test_a_raw_csv_body_is_accepted_with_a_csv_content_type(handler, stub):
    expect_call(
        stub,
        "l2c-iris",
        IRIS_ROW + b"\n6.2,2.9,4.3,1.3",
        {"predictions": [{"score": [0.9, 0.05, 0.05]}, {"score": [0.1, 0.8, 0.1]}]},
    )
    event = proxy_event("5.1,3.3,1.7,0.5\n6.2,2.9,4.3,1.3\n", content_type="text/csv; charset=utf-8")
    assert handler.lambda_handler(event, None)["statusCode"] == 200


def test_json_sent_as_plain_text_is_still_json(handler, stub):
    # Postman's "raw" body defaults to text/plain; the tutorial's users send JSON that way.
    expect_call(stub, "l2c-iris", IRIS_ROW, IRIS_SCORES)
    event = proxy_event('{"data": "5.1,3.3,1.7,0.5"}', content_type="text/plain")
    assert check_proxy_response(handler.lambda_handler(event, None)) == IRIS_ANSWER


def test_without_class_labels_classes_are_numbered(handler, stub, monkeypatch):
    monkeypatch.delenv("CLASS_LABELS")
    expect_call(stub, "l2c-iris", IRIS_ROW, {"predictions": [{"score": [0.1, 0.2, 0.7]}]})
    payload = handler.lambda_handler(load_event("console-iris.json"), None)
    assert payload == {
        "predictions": [{"label": 2, "class_index": 2, "probabilities": {"0": 0.1, "1": 0.2, "2": 0.7}}],
        "prediction": 2,
    }


def test_cors_origin_can_be_narrowed(handler, stub, monkeypatch):
    monkeypatch.setenv("CORS_ALLOW_ORIGIN", "https://demo.example.org")
    expect_call(stub, "l2c-iris", IRIS_ROW, IRIS_SCORES)
    response = handler.lambda_handler(load_event("rest-iris.json"), None)
    assert response["headers"]["Access-Control-Allow-Origin"] == "https://demo.example.org"


# --------------------------------------------------------------------------- container answers


@pytest.mark.parametrize(
    "answer, content_type",
    [
        ({"predictions": [{"score": [0.1, 0.7, 0.2]}]}, "application/json"),
        ({"score": [0.1, 0.7, 0.2]}, "application/json"),
        ([[0.1, 0.7, 0.2]], "application/json"),
        ([0.1, 0.7, 0.2], "application/json"),
        ({"predictions": [[0.1, 0.7, 0.2]]}, "application/json"),
        ({"predictions": [{"predicted_label": 1, "probabilities": [0.1, 0.7, 0.2]}]}, "application/json"),
        (b"0.1,0.7,0.2\n", "text/csv; charset=utf-8"),
        (b"0.1,0.7,0.2\n", "application/json"),  # an older container that ignores Accept
    ],
)
def test_every_known_classifier_output_form_is_read(handler, monkeypatch, answer, content_type):
    use_client(handler, monkeypatch, CannedClient(answer, content_type))
    payload = handler.lambda_handler(load_event("console-iris.json"), None)
    assert payload["prediction"] == "versicolor"
    assert payload["predictions"][0]["probabilities"] == {"setosa": 0.1, "versicolor": 0.7, "virginica": 0.2}


@pytest.mark.parametrize(
    "answer, content_type",
    [
        ({"predictions": [{"score": 28.42}]}, "application/json"),
        ({"score": 28.42}, "application/json"),
        ([28.42], "application/json"),
        (28.42, "application/json"),
        ({"predictions": [{"predicted_score": 28.42}]}, "application/json"),
        (b"28.42\n", "text/csv"),
    ],
)
def test_every_known_regressor_output_form_is_read(handler, monkeypatch, answer, content_type):
    use_house(monkeypatch)
    use_client(handler, monkeypatch, CannedClient(answer, content_type))
    assert handler.lambda_handler(load_event("console-houseprice.json"), None) == HOUSE_ANSWER


def test_csv_output_with_several_rows(handler, monkeypatch):
    use_house(monkeypatch)
    use_client(handler, monkeypatch, CannedClient(b"28.42\n24.0\n", "text/csv"))
    request = {"data": (HOUSE_ROW + b"\n" + HOUSE_ROW_2).decode()}
    assert handler.lambda_handler(request, None) == {"predictions": [{"value": 28.42}, {"value": 24.0}]}


def test_binary_classifier_score_is_the_probability_of_the_second_label(handler, monkeypatch):
    monkeypatch.setenv("CLASS_LABELS", "cheap,expensive")
    use_client(handler, monkeypatch, CannedClient({"predictions": [{"score": 0.75}]}))
    payload = handler.lambda_handler(load_event("console-iris.json"), None)
    assert payload["prediction"] == "expensive"
    assert payload["predictions"][0]["probabilities"] == {"cheap": 0.25, "expensive": 0.75}


@pytest.mark.parametrize(
    "answer, fragment",
    [
        ({"predictions": []}, "0 predictions for 1 rows"),
        ({"predictions": [{"score": [0.5, 0.5]}]}, "2 class probabilities but CLASS_LABELS names 3"),
        ({"predictions": [{"score": 3.2}]}, "one number per row but CLASS_LABELS names 3"),
        ({"predictions": [{"score": "high"}]}, "not a number"),
        (b'{"predictions": [{"score": NaN}]}', "not a number"),
        ({"predictions": [{"label": 1}]}, "no score"),
        (b"<html>busy</html>", "neither JSON nor CSV"),
        (b"\xff\xfe\x00", "not text"),
        ({"unexpected": True, "rows": 2, "more": [1]}, "no score"),
        ("just a string", "no predictions"),
    ],
)
def test_unusable_model_output_is_a_502(handler, monkeypatch, answer, fragment):
    use_client(handler, monkeypatch, CannedClient(answer))
    check_error(
        handler.lambda_handler(proxy_event('{"data": "5.1,3.3,1.7,0.5"}'), None), 502, "bad_model_output", fragment
    )


# --------------------------------------------------------------------------- caller mistakes


BAD_REQUESTS = [
    ('{"data": "5.1,3.3,1.7,0.5"', "invalid_json", "not valid JSON"),
    ("{data: 5.1}", "invalid_json", "line 1 column 2"),
    ('{"sepal": "5.1"}', "missing_data", '"data"'),
    ("", "missing_data", "empty"),
    ("   ", "missing_data", "empty"),
    ('{"data": ""}', "empty_data", "no values"),
    ('{"data": " \\n \\r\\n"}', "empty_data", "no values"),
    ('{"data": "5.1,3.3,1.7"}', "wrong_feature_count", "row 1 has 3 values but the model expects 4 (sepal length"),
    ('{"data": "5.1,3.3,1.7,0.5,9"}', "wrong_feature_count", "row 1 has 5 values"),
    ('{"data": "5.1,3.3,1.7,0.5\\n5.1,3.3"}', "wrong_feature_count", "row 2 has 2 values"),
    ('{"data": "5.1;3.3;1.7;0.5"}', "wrong_feature_count", "row 1 has 1 values"),
    ('{"data": "5.1,abc,1.7,0.5"}', "not_a_number", "row 1, value 2 is 'abc'"),
    ('{"data": "5.1,,1.7,0.5"}', "not_a_number", "row 1, value 2 is empty"),
    ('{"data": "5.1,1_0,1.7,0.5"}', "not_a_number", "row 1, value 2"),
    ('{"data": "5.1,0x1F,1.7,0.5"}', "not_a_number", "row 1, value 2"),
    ('{"data": "5.1,NaN,1.7,0.5"}', "non_finite", "row 1, value 2 is NaN"),
    ('{"data": "5.1,3.3,1.7,-Infinity"}', "non_finite", "row 1, value 4"),
    ('{"data": "5.1,1e999,1.7,0.5"}', "non_finite", "row 1, value 2"),
    # digits of other scripts: float() reads them, the container's CSV does not hold them
    ('{"data": "5.1,\\uff13.3,1.7,0.5"}', "not_a_number", "row 1, value 2 is '\uff13.3', not a number (only the ASCII"),
    ('{"data": "5.1,3.3,\\u0661.7,0.5"}', "not_a_number", "row 1, value 3"),
    ('{"data": "5.1,3\\u0663,1.7,0.5"}', "not_a_number", "ASCII digits 0-9"),
    ('{"data": "5.1,\\u00a03.3,1.7,0.5"}', "not_a_number", "row 1, value 2"),
    ('{"instances": [[5.1, "\\uff13", 1.7, 0.5]]}', "not_a_number", "row 1, value 2"),
    # XGBoost computes in float32: beyond its range a value becomes infinite in the container
    (
        '{"data": "5.1,1e39,1.7,0.5"}',
        "out_of_range",
        "row 1, value 2 is 1e39, beyond the model's float32 range: the limit is 3.4028235e38",
    ),
    ('{"data": "5.1,3.3,1.7,-1e39"}', "out_of_range", "row 1, value 4 is -1e39"),
    ('{"data": "5.1,3.3,1.7,0.5\\n5.1,3.3,1.7,3.5E+38"}', "out_of_range", "row 2, value 4 is 3.5E+38"),
    ('{"instances": [[5.1, 1e39, 1.7, 0.5]]}', "out_of_range", "row 1, value 2 is 1e+39"),
    ('{"instances": [[5.1, -' + "9" * 39 + ", 1.7, 0.5]]}", "out_of_range", "is -1e+39, beyond"),
    (
        '{"features": {"sepal length": 5.1, "sepal width": 3.3, "petal length": 1.7, "petal width": 4e38}}',
        "out_of_range",
        "row 1, feature petal width is 4e+38",
    ),
    ('{"instances": [[5.1, NaN, 1.7, 0.5]]}', "non_finite", "row 1, value 2"),
    ('{"instances": [[5.1, 3.3, 1.7, 0.5], [5.1, Infinity, 1.7, 0.5]]}', "non_finite", "row 2, value 2"),
    ('{"instances": [[5.1, 1e400, 1.7, 0.5]]}', "non_finite", "row 1, value 2"),
    ('{"instances": [[5.1, 1' + "0" * 400 + ", 1.7, 0.5]]}", "non_finite", "row 1, value 2"),
    ('{"instances": [[5.1, true, 1.7, 0.5]]}', "not_a_number", "row 1, value 2 is true"),
    ('{"instances": [[5.1, null, 1.7, 0.5]]}', "not_a_number", "row 1, value 2 is null"),
    ('{"instances": [[5.1, [3.3], 1.7, 0.5]]}', "not_a_number", "row 1, value 2 is a list"),
    ('{"instances": [[5.1, {"x": 1}, 1.7, 0.5]]}', "not_a_number", "is an object"),
    ('{"instances": [[5.1, 3.3, 1.7]]}', "wrong_feature_count", "row 1 has 3 values"),
    ('{"instances": [[5.1, 3.3, 1.7, 0.5], 7]}', "invalid_body", "row 2"),
    ('{"instances": []}', "empty_data", "no rows"),
    ('{"instances": "5.1,3.3,1.7,0.5"}', "invalid_body", '"instances" must be a list'),
    ('{"data": 5.1}', "invalid_body", '"data" must be a list of rows or a string'),
    ('{"data": null}', "invalid_body", '"data" must be'),
    ("[5.1, 3.3, 1.7, 0.5]", "invalid_body", "JSON object"),
    ('"5.1,3.3,1.7,0.5"', "invalid_body", "JSON object"),
    ('{"data": "1,2,3,4", "instances": [[1, 2, 3, 4]]}', "ambiguous_input", "data, instances"),
    ('{"features": {"sepal length": 5.1}}', "wrong_features", "missing sepal width, petal length, petal width"),
    (
        '{"features": {"sepal length": 5.1, "sepal width": 3.3, "petal length": 1.7, "petal width": 0.5, "colour": 1}}',
        "wrong_features",
        "unknown colour",
    ),
    (
        '{"features": {"sepal length": 5.1, "SEPAL LENGTH": 5.2, "petal length": 1.7, "petal width": 0.5}}',
        "wrong_features",
        "names sepal length twice",
    ),
    (
        '{"features": {"sepal length": "x", "sepal width": 3.3, "petal length": 1.7, "petal width": 0.5}}',
        "not_a_number",
        "row 1, feature sepal length",
    ),
    ('{"features": [[5.1, 3.3, 1.7, 0.5]]}', "invalid_body", "object of named features"),
    ('{"features": "sepal length=5.1"}', "invalid_body", '"features" must be a list of rows'),
]


@pytest.mark.parametrize("body, code, fragment", BAD_REQUESTS)
def test_caller_mistakes_are_400_with_a_message_and_never_reach_the_model(handler, monkeypatch, body, code, fragment):
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    check_error(handler.lambda_handler(proxy_event(body), FakeContext()), 400, code, fragment)
    assert client.calls == []


@pytest.mark.parametrize("body, code, fragment", BAD_REQUESTS[2:12])
def test_direct_invocation_errors_are_a_dict_with_a_status(handler, monkeypatch, body, code, fragment):
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    request = json.loads(body) if body.strip() else {}
    result = handler.lambda_handler(request, FakeContext(request_id="req-direct"))
    assert result["statusCode"] == 400
    assert result["error"] in (code, "missing_data")  # an empty body is an empty event here
    assert result["message"] and result["requestId"] == "req-direct"
    assert client.calls == []


def test_the_float32_limit_is_where_float32_turns_a_value_infinite(handler, monkeypatch):
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    largest = math.nextafter(handler.FLOAT32_OVERFLOW, 0.0)
    with np.errstate(over="ignore"):
        assert np.isfinite(np.float32(largest)) and np.isinf(np.float32(handler.FLOAT32_OVERFLOW))
    for kept in (largest, -largest, "3.4028235e38", "-3.4028235E+38"):
        assert handler.lambda_handler({"instances": [[5.1, 3.3, 1.7, kept]]}, None) == IRIS_ANSWER
    assert [call["Body"].rsplit(b",", 1)[1] for call in client.calls] == [
        repr(largest).encode(),
        repr(-largest).encode(),
        b"3.4028235e+38",
        b"-3.4028235e+38",
    ]
    for refused in (handler.FLOAT32_OVERFLOW, -handler.FLOAT32_OVERFLOW, "3.40282357e38"):
        result = handler.lambda_handler({"instances": [[5.1, 3.3, 1.7, refused]]}, None)
        assert result["statusCode"] == 400 and result["error"] == "out_of_range", result
    assert len(client.calls) == 4


@pytest.mark.parametrize("digits", [40_000, 1_000_000])
@pytest.mark.parametrize("shape", ["data", "instances", "csv body"])
def test_a_long_run_of_digits_that_is_no_number_is_refused_at_once(handler, monkeypatch, digits, shape):
    # Each cell is read in one pass; a backtracking pattern spent the function's whole timeout here.
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    cell = "1" * digits + "x"
    if shape == "data":
        event = proxy_event(json.dumps({"data": cell + ",1,1,1"}))
    elif shape == "instances":
        event = proxy_event(json.dumps({"instances": [[cell, "1", "1", "1"]]}))
    else:
        event = proxy_event(cell + ",1,1,1\n", content_type="text/csv")
    assert len(event["body"]) < handler.DEFAULT_MAX_BODY_BYTES
    started = time.perf_counter()
    response = handler.lambda_handler(event, FakeContext())
    elapsed = time.perf_counter() - started
    check_error(response, 400, "not_a_number", "row 1, value 1 is '1111")
    assert elapsed < 1.0, f"{elapsed:.2f} s for a {len(event['body'])} byte body"
    assert client.calls == []


def test_too_many_rows(handler, monkeypatch):
    monkeypatch.setenv("MAX_ROWS", "2")
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    body = json.dumps({"data": "\n".join(["5.1,3.3,1.7,0.5"] * 3)})
    check_error(
        handler.lambda_handler(proxy_event(body), None), 400, "too_many_rows", "3 rows in one request; the limit is 2"
    )
    assert client.calls == []


def test_oversized_bodies_are_refused_before_parsing(handler, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "64")
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    for fixture in ("rest-iris.json", "rest-iris-base64.json"):
        check_error(handler.lambda_handler(load_event(fixture), None), 400, "body_too_large", "64 bytes")
    small = proxy_event('{"data": "5.1,3.3,1.7,0.5"}')
    assert handler.lambda_handler(small, None)["statusCode"] == 200
    assert len(client.calls) == 1


def test_multibyte_text_counts_in_bytes(handler, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "48")
    body = json.dumps({"data": "5.1,3.3,1.7,0.5", "note": "ü" * 6}, ensure_ascii=False)
    assert len(body) <= 48 < len(body.encode())
    check_error(handler.lambda_handler(proxy_event(body), None), 400, "body_too_large")


@pytest.mark.parametrize(
    "body, fragment",
    [("not base64 at all!", "not valid base64"), (base64.b64encode(b"\xff\xfe{}").decode(), "not UTF-8")],
)
def test_broken_base64_bodies(handler, monkeypatch, body, fragment):
    use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    event = load_event("rest-iris-base64.json")
    event["body"] = body
    check_error(handler.lambda_handler(event, None), 400, "invalid_body", fragment)


def test_named_features_need_feature_names(handler, monkeypatch):
    monkeypatch.delenv("FEATURE_NAMES")
    monkeypatch.setenv("FEATURE_COUNT", "4")
    body = json.dumps({"features": {"sepal length": 5.1}})
    check_error(handler.lambda_handler(proxy_event(body), None), 400, "named_features_unavailable", '"data"')


def test_without_a_feature_count_rows_must_agree_with_each_other(handler, monkeypatch):
    monkeypatch.delenv("FEATURE_NAMES")
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    body = json.dumps({"data": "5.1,3.3,1.7,0.5\n5.1,3.3,1.7"})
    check_error(
        handler.lambda_handler(proxy_event(body), None),
        400,
        "wrong_feature_count",
        "row 2 has 3 values but row 1 has 4",
    )
    handler.lambda_handler(proxy_event(json.dumps({"data": "5.1,3.3,1.7,0.5"})), None)
    assert [call["Body"] for call in client.calls] == [IRIS_ROW]


@pytest.mark.parametrize("fixture", ["rest-iris.json", "http-api-v2-iris.json"])
def test_other_methods_are_405_and_options_is_a_cors_preflight(handler, monkeypatch, fixture):
    client = use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    event = load_event(fixture)
    set_method = (
        (lambda m: event.__setitem__("httpMethod", m))
        if "httpMethod" in event
        else (lambda m: event["requestContext"]["http"].__setitem__("method", m))
    )
    set_method("GET")
    response = handler.lambda_handler(event, None)
    check_error(response, 405, "method_not_allowed", "use POST")
    assert "POST" in response["headers"]["Allow"]
    set_method("OPTIONS")
    response = handler.lambda_handler(event, None)
    assert response["statusCode"] == 204 and response["body"] == ""
    assert "X-Api-Key" in response["headers"]["Access-Control-Allow-Headers"]
    assert client.calls == []


def test_an_event_that_is_not_an_object(handler, monkeypatch):
    use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    for event in (None, "5.1,3.3,1.7,0.5", [5.1, 3.3, 1.7, 0.5], 42):
        result = handler.lambda_handler(event, None)
        assert result["statusCode"] == 400 and result["error"] == "invalid_body"


# --------------------------------------------------------------------------- endpoint failures


def error_event():
    return load_event("rest-iris.json")


@pytest.mark.parametrize(
    "code, message, http_status, modeled, status, error, fragment, retry_after",
    [
        (
            "ValidationError",
            "Endpoint l2c-iris of account 123456789012 not found.",
            400,
            None,
            503,
            "endpoint_not_found",
            "l2c-iris",
            True,
        ),
        (
            "ModelError",
            'Received client error (415) from primary with message "Loading csv data failed with Exception".',
            424,
            {
                "OriginalStatusCode": 415,
                "OriginalMessage": "Loading csv data failed with Exception, please ensure data is in csv format",
            },
            400,
            "model_rejected_input",
            "the model refused these rows",
            False,
        ),
        (
            "ModelError",
            'Received server error (500) from primary with message "Unable to load model: bad magic".',
            424,
            {"OriginalStatusCode": 500, "OriginalMessage": "Unable to load model: bad magic"},
            502,
            "model_error",
            "the model could not answer this request",
            False,
        ),
        (
            "ModelError",
            "Received server error (500) from primary",
            424,
            None,
            502,
            "model_error",
            "could not answer",
            False,
        ),
        ("ThrottlingException", "Rate exceeded", 400, None, 429, "throttled", "retry", True),
        ("SomethingNew", "Too Many Requests", 429, None, 429, "throttled", "retry", True),
        ("ModelNotReadyException", "Model is not ready", 429, None, 503, "model_unavailable", "not ready", True),
        ("ServiceUnavailable", "Service is unavailable", 503, None, 503, "model_unavailable", "not ready", True),
        ("InternalFailure", "An internal error occurred", 500, None, 500, "internal_error", "", False),
        (
            "ValidationError",
            "1 validation error detected: Value at 'body' failed",
            400,
            None,
            500,
            "internal_error",
            "",
            False,
        ),
    ],
)
def test_endpoint_errors_map_to_statuses(
    handler, stub, code, message, http_status, modeled, status, error, fragment, retry_after
):
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message=message,
        http_status_code=http_status,
        modeled_fields=modeled,
    )
    response = handler.lambda_handler(error_event(), FakeContext(request_id="req-42"))
    payload = check_error(response, status, error, fragment)
    assert payload["requestId"] == "req-42"
    assert ("Retry-After" in response["headers"]) is retry_after
    if retry_after:
        assert int(response["headers"]["Retry-After"]) > 0
    if status == 500 or code == "ModelError":
        assert code not in response["body"] and message not in response["body"]
        for leak in ("primary", "Loading csv", "Unable to load model"):
            assert leak not in response["body"]


CONTAINER_TRACE = (
    "Unable to evaluate payload provided: Traceback (most recent call last): File "
    '"/miniconda3/lib/python3.10/site-packages/sagemaker_xgboost_container/algorithm_mode/serve.py", '
    "line 226, in invocations: xgboost.core.XGBoostError: [09:14:03] /workspace/src/learner.cc:1471: "
    "Check failed: learner_model_param_.num_feature >= p_fmat->Info().num_col_ (4 vs. 5)"
)
LOG_STREAM = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/l2c-iris"


@pytest.mark.parametrize(
    "original_status, status, code, message",
    [
        (
            400,
            400,
            "model_rejected_input",
            "the model refused these rows; check that each row holds the model's columns in order",
        ),
        (
            415,
            400,
            "model_rejected_input",
            "the model refused these rows; check that each row holds the model's columns in order",
        ),
        (500, 502, "model_error", "the model could not answer this request"),
        (503, 502, "model_error", "the model could not answer this request"),
    ],
)
def test_the_containers_own_words_go_to_the_log_and_not_to_the_caller(
    handler, stub, capsys, original_status, status, code, message
):
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message=f'Received client error ({original_status}) from primary with message "{CONTAINER_TRACE}". '
        f"See https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group="
        f"/aws/sagemaker/Endpoints/l2c-iris in account 123456789012 for more information.",
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": original_status,
            "OriginalMessage": CONTAINER_TRACE,
            "LogStreamArn": LOG_STREAM,
        },
    )
    response = handler.lambda_handler(error_event(), FakeContext(request_id="req-model"))
    payload = check_error(response, status, code)
    assert payload == {"error": code, "message": message, "requestId": "req-model"}
    for leak in ("Traceback", "site-packages", "xgboost", "learner", "primary", "123456789012", "log-group", "4 vs. 5"):
        assert leak not in response["body"]
    log = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert log["requestId"] == "req-model" and log["status"] == status and log["error"] == code
    assert log["detail"] == {
        "code": "ModelError",
        "originalStatusCode": original_status,
        "originalMessage": CONTAINER_TRACE,
        "logStreamArn": LOG_STREAM,
    }


def test_a_direct_invocation_gets_the_same_generic_model_error(handler, monkeypatch):
    error = ClientError(
        {
            "Error": {
                "Code": "ModelError",
                "Message": f'Received server error (500) from primary with message "{CONTAINER_TRACE}"',
            },
            "OriginalStatusCode": 500,
            "OriginalMessage": CONTAINER_TRACE,
            "LogStreamArn": LOG_STREAM,
            "ResponseMetadata": {"HTTPStatusCode": 424},
        },
        "InvokeEndpoint",
    )
    use_client(handler, monkeypatch, CannedClient(error=error))
    result = handler.lambda_handler(load_event("console-iris.json"), FakeContext(request_id="req-direct"))
    assert result == {
        "statusCode": 502,
        "error": "model_error",
        "message": "the model could not answer this request",
        "requestId": "req-direct",
    }


@pytest.mark.parametrize(
    "error, status, code",
    [
        (ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"), 504, "timeout"),
        (ConnectTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"), 504, "timeout"),
        (
            EndpointConnectionError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
            503,
            "endpoint_unreachable",
        ),
    ],
)
def test_transport_failures(handler, monkeypatch, error, status, code):
    use_client(handler, monkeypatch, CannedClient(error=error))
    check_error(handler.lambda_handler(error_event(), None), status, code)


def test_an_unexpected_exception_is_a_500_with_the_request_id_and_no_trace(handler, monkeypatch, capsys):
    use_client(handler, monkeypatch, CannedClient(error=RuntimeError("secret detail in /var/task/x.py")))
    response = handler.lambda_handler(error_event(), FakeContext(request_id="req-boom"))
    payload = check_error(response, 500, "internal_error", "req-boom")
    assert payload["requestId"] == "req-boom"
    for leak in ("Traceback", "RuntimeError", "secret detail", "x.py"):
        assert leak not in response["body"]
    log = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "RuntimeError" in log["detail"] and "Traceback" in log["trace"]


def test_missing_endpoint_name_is_a_configuration_error(handler, monkeypatch):
    monkeypatch.delenv("ENDPOINT_NAME")
    check_error(handler.lambda_handler(error_event(), None), 500, "misconfigured", "ENDPOINT_NAME")


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_ROWS", "many"),
        ("MAX_ROWS", "0"),
        ("FEATURE_COUNT", "-4"),
        ("INVOKE_TIMEOUT_SECONDS", "nan"),
        ("CLASS_LABELS", "a,b,a"),
    ],
)
def test_bad_settings_are_reported_by_name(handler, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    check_error(handler.lambda_handler(error_event(), None), 500, "misconfigured", name)


def test_feature_count_must_agree_with_feature_names(handler, monkeypatch):
    monkeypatch.setenv("FEATURE_COUNT", "5")
    check_error(handler.lambda_handler(error_event(), None), 500, "misconfigured", "FEATURE_COUNT")


# --------------------------------------------------------------------------- client, request id, log


def test_the_client_is_made_once_with_short_timeouts_and_one_retry(handler, monkeypatch):
    made = []
    real_client = handler.boto3.client

    def counting_client(*args, **kwargs):
        made.append(args)
        return real_client(*args, **kwargs)

    monkeypatch.setattr(handler.boto3, "client", counting_client)
    first = handler.sagemaker_runtime(FakeContext(remaining_ms=30000))
    assert handler.sagemaker_runtime() is first
    assert made == [("sagemaker-runtime",)]
    config = first.meta.config
    assert config.connect_timeout == 2
    assert config.read_timeout == pytest.approx(14.5)  # (30 s - 1 s) / 2 attempts
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}


@pytest.mark.parametrize(
    "remaining_ms, env, expected",
    [(3000, None, 1.0), (900000, None, 25.0), (None, None, 10.0), (30000, "4.5", 4.5)],
)
def test_read_timeout_fits_the_function_timeout(handler, monkeypatch, remaining_ms, env, expected):
    if env:
        monkeypatch.setenv("INVOKE_TIMEOUT_SECONDS", env)
    use_client(handler, monkeypatch, None)
    context = FakeContext(remaining_ms=remaining_ms) if remaining_ms else None
    stubber = Stubber(handler.sagemaker_runtime(context, handler.Settings(handler.os.environ).invoke_timeout))
    assert handler._client.meta.config.read_timeout == pytest.approx(expected)
    with stubber:
        expect_call(stubber, "l2c-iris", IRIS_ROW, IRIS_SCORES)
        assert handler.lambda_handler(load_event("console-iris.json"), context) == IRIS_ANSWER


def test_the_request_id_comes_from_the_context_then_the_event(handler, monkeypatch):
    use_client(handler, monkeypatch, CannedClient(IRIS_SCORES))
    event = proxy_event("{}")
    assert json.loads(handler.lambda_handler(event, FakeContext(request_id="ctx-1"))["body"])["requestId"] == "ctx-1"
    from_event = json.loads(handler.lambda_handler(copy.deepcopy(event), None)["body"])["requestId"]
    assert from_event == event["requestContext"]["requestId"]


def test_one_structured_log_line_per_request_without_the_payload(handler, stub, capsys):
    expect_call(stub, "l2c-iris", IRIS_ROW, IRIS_SCORES)
    handler.lambda_handler(load_event("rest-iris.json"), FakeContext(request_id="req-log"))
    handler.lambda_handler(proxy_event('{"data": "5.1,3.3,1.7"}'), FakeContext(request_id="req-bad"))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    ok, bad = (json.loads(line) for line in lines)
    assert ok["requestId"] == "req-log" and ok["status"] == 200 and ok["rows"] == 1
    assert ok["endpoint"] == "l2c-iris" and ok["latencyMs"] >= 0 and ok["source"] == "rest"
    assert bad["status"] == 400 and bad["error"] == "wrong_feature_count"
    for line in lines:
        assert "5.1" not in line and "3.3" not in line and "data" not in line
