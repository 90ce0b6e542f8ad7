"""Fuzzing the body parsers: whatever a caller sends, no exception escapes the engine, every
refusal is a 4xx with a readable message and no stack trace, and every CSV or libsvm body gets
the answer the suite's reference of the real container (tests/reference/container.py) gives.

The handler's own body parsing is fuzzed in test_lambda_properties.py; this file covers what
the endpoint does with the bytes it is given, through Engine.invoke and through the ASGI app.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from l2c.artifact import booster_bytes, load_booster_bytes
from l2c.serving.container import ContainerApp
from l2c.serving.engine import ContainerSettings, Engine
from tests.profiles import examples
from tests.reference import container as reference

FEATURES = 4
CLASSES = 3
MANY = settings(
    max_examples=examples(2000), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
SOME = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
# What a leaked Python traceback or XGBoost's own source location would look like in a body.
LEAK_MARKERS = ("Traceback", 'File "', ".cc:", '.py", line', "Stack trace")


@pytest.fixture(scope="module")
def engine() -> Engine:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(90, FEATURES))
    labels = np.arange(90) % CLASSES
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": CLASSES, "max_depth": 2, "nthread": 1},
        xgb.DMatrix(features, label=labels),
        num_boost_round=3,
    )
    return Engine(load_booster_bytes(booster_bytes(booster)), ContainerSettings())


# --------------------------------------------------------------------------- what callers send

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(
        [
            "",
            "nan",
            "NaN",
            "-nan",
            "inf",
            "-inf",
            "1e39",
            "-3.4e38",
            "1e-50",
            ".5",
            "5.",
            "+1",
            "1_0",
            "0x1p3",
            "١",
            "1e",
            "e1",
            "--1",
            " 1",
            "1 ",
            "\t2",
            "null",
            "None",
            "true",
        ]
    ),
)
JUNK = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
CELL = st.one_of(NUMBERS, NUMBERS, NUMBERS, JUNK)
DELIMITER = st.sampled_from([",", ",", ";", "\t", " ", "|", ":", "a", ", "])


@st.composite
def csv_bodies(draw) -> bytes:
    """Tables that look like CSV, most of them nearly right: the cases a parser gets wrong."""
    delimiter = draw(DELIMITER)
    width = draw(st.integers(1, 6))
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        row_width = width if draw(st.booleans()) or draw(st.booleans()) else draw(st.integers(0, 7))
        rows.append(delimiter.join(draw(st.lists(CELL, min_size=row_width, max_size=row_width))))
    line_end = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    text = line_end.join(rows) + draw(st.sampled_from(["", "\n", "\n\n", " ", "\r\n"]))
    if draw(st.booleans()):
        # Over 16 KiB: the same table goes through pandas' fast path instead of the reference one.
        text = (text.rstrip("\n") + "\n") * (16 * 1024 // max(len(text), 1) + 1)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, "replace")


@st.composite
def libsvm_bodies(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 5))):
        label = draw(st.sampled_from(["0", "1", "2.5", "", "x"]))
        pairs = []
        for _ in range(draw(st.integers(0, 6))):
            index = draw(
                st.one_of(st.integers(-2, FEATURES + 2).map(str), st.sampled_from(["10000000", "a", "", "1.5"]))
            )
            pairs.append(f"{index}:{draw(NUMBERS)}" if draw(st.integers(0, 9)) else draw(JUNK))
        lines.append(" ".join([label, *pairs]))
    return "\n".join(lines).encode("utf-8", "replace")


BODIES = st.one_of(csv_bodies(), libsvm_bodies(), st.binary(max_size=300))
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "text/csv",
            "text/csv",
            "csv",
            "text/csv; charset=utf-8",
            "text/csv;label_size=1",
            "text/csv;label_size=2",
            "text/libsvm",
            "text/x-libsvm",
            "libsvm",
            None,
            "application/json",
            "application/x-parquet",
            "application/x-recordio-protobuf",
            "TEXT/CSV",
            "text/csvx",
            "",
        ]
    ),
    st.text(max_size=30),
)
ACCEPTS = st.one_of(
    st.sampled_from(
        [
            None,
            "*/*",
            "text/csv",
            "application/json",
            "application/jsonlines",
            "application/x-recordio-protobuf",
            "text/html",
            "application/json; q=0.9",
            "",
        ]
    ),
    st.text(max_size=20),
)


# --------------------------------------------------------------------------- the properties


def assert_answer_is_sound(reply) -> None:
    assert reply.status in (200, 204) or 400 <= reply.status < 500, (reply.status, reply.body[:300])
    if reply.status >= 400:
        message = reply.body.decode("utf-8")
        assert message.strip(), "a refusal must say why"
        assert not any(marker in message for marker in LEAK_MARKERS), message


@pytest.fixture(scope="module")
def container(engine) -> Client:
    """The suite's reference of the real container, on a copy of the engine's booster."""
    return Client(reference.container_app(engine.model.booster.copy()))


def assert_same_as_the_container(reply, container: Client, body: bytes, content_type: str, accept: str) -> None:
    theirs = container.post("/invocations", data=body, headers={"content-type": content_type, "accept": accept})
    assert reply.status == theirs.status_code, (body[:200], reply.body[:300], theirs.data[:300])
    expected = reference.without_xgboost_trace(theirs.data.decode("utf-8", "replace"))
    assert reply.body.decode("utf-8", "replace") == expected, (body[:200], reply.body[:300], theirs.data[:300])


@MANY
@given(body=csv_bodies())
@example(body=b"5.1,3.5,1.4,0.2")
@example(body=b"5.1,3.5,1.4,0.2,9.9")
@example(body=b"\xff\xfe")
@example(body=b" \n \n")
def test_a_csv_body_gets_the_containers_answer(engine, container, body):
    reply = engine.invoke(body, "text/csv", "text/csv")
    assert_answer_is_sound(reply)
    assert_same_as_the_container(reply, container, body, "text/csv", "text/csv")


@MANY
@given(body=libsvm_bodies())
@example(body=b"0 1:5.1 2:3.5 3:1.4 4:0.2")
@example(body=b"0 2:3.5\n0\n\n")
def test_a_libsvm_body_gets_the_containers_answer(engine, container, body):
    reply = engine.invoke(body, "text/libsvm", "application/json")
    assert_answer_is_sound(reply)
    assert_same_as_the_container(reply, container, body, "text/libsvm", "application/json")


@MANY
@given(body=BODIES, content_type=CONTENT_TYPES, accept=ACCEPTS)
def test_no_body_header_or_accept_makes_the_engine_fail(engine, body, content_type, accept):
    assert_answer_is_sound(engine.invoke(body, content_type, accept))


# --------------------------------------------------------------------------- through the ASGI app


def call_app(app, body: bytes, headers: list[tuple[bytes, bytes]], chunk: int) -> tuple[int, bytes, dict]:
    """One POST /invocations through the ASGI interface, the body arriving in chunks."""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1} for i, piece in enumerate(pieces)
    ]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    asyncio.run(app(scope, receive, send))
    start = next(message for message in sent if message["type"] == "http.response.start")
    payload = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], payload, {key.decode(): value.decode() for key, value in start["headers"]}


@SOME
@given(
    body=BODIES, content_type=CONTENT_TYPES, accept=ACCEPTS, chunk=st.integers(1, 4096), lie_about_length=st.booleans()
)
def test_the_http_face_answers_every_request_with_a_sound_status(
    engine, body, content_type, accept, chunk, lie_about_length
):
    small_limit = ContainerSettings(max_content_length=2048)
    app = ContainerApp(Engine(engine.model, small_limit))
    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("utf-8", "replace")))
    if accept is not None:
        headers.append((b"accept", accept.encode("utf-8", "replace")))
    declared = len(body) // 2 if lie_about_length else len(body)
    headers.append((b"content-length", str(declared).encode()))
    status, payload, response_headers = call_app(app, body, headers, chunk)
    assert status in (200, 204) or 400 <= status < 500, (status, payload[:300])
    assert int(response_headers["content-length"]) == len(payload)
    if len(body) > small_limit.max_content_length:
        assert status == 413
    if status >= 400:
        assert payload.strip() and not any(marker.encode() in payload for marker in LEAK_MARKERS)
