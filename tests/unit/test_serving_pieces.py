"""Big CSV bodies answered in pieces on every core (src/l2c/serving/pieces.py), against the
suite's reference of the container (tests/reference/container.py) over loopback.

Where the pieces can prove they give the whole body's answer they are used (asserted by calling
them directly); everywhere else (errors, blank lines, a later line that would sniff another
delimiter, CRLF ends, selectable output) the answer must still be the container's, byte for byte.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import xgboost as xgb
from werkzeug.test import Client

from l2c.artifact import booster_bytes, load_booster_bytes
from l2c.serving import formats, pieces
from l2c.serving.container import ContainerApp
from l2c.serving.engine import ContainerSettings, Engine
from l2c.serving.server import start_in_thread
from tests.reference import container as reference

FEATURES = 4
ROWS = 20_000  # ~400 KB of CSV: several pieces, still quick for the reference's string arrays


def train(objective: str, **params) -> xgb.Booster:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(200, FEATURES))
    labels = np.arange(200) % 3 if objective.startswith("multi:") else (features[:, 0] > 0).astype(float)
    if objective.startswith("reg:squarederror"):
        labels = features[:, 0] * 2 + features[:, 1] ** 2
    booster = xgb.train(
        {"objective": objective, "max_depth": 3, "nthread": 1, **params},
        xgb.DMatrix(features, label=labels),
        num_boost_round=6,
    )
    return load_booster_bytes(booster_bytes(booster)).booster


@pytest.fixture(scope="module")
def boosters():
    return {
        "multi:softprob": train("multi:softprob", num_class=3),
        "binary:logistic": train("binary:logistic"),
        "reg:squarederror": train("reg:squarederror"),
    }


@pytest.fixture(scope="module")
def serve(boosters):
    servers = []

    def pair(objective: str = "multi:softprob", environ: dict | None = None):
        booster = boosters[objective]
        engine = Engine(load_booster_bytes(booster_bytes(booster)), ContainerSettings.from_env(environ or {}))
        server = start_in_thread(ContainerApp(engine))
        servers.append(server)
        return engine, httpx.Client(base_url=server.url, timeout=120), Client(reference.container_app(booster, environ))

    yield pair
    for server in servers:
        server.stop()


def table(rows: int = ROWS, seed: int = 0, delimiter: str = ",") -> list[str]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, FEATURES)) * 10.0 ** rng.integers(-6, 4, size=(rows, FEATURES))
    return [delimiter.join(repr(v) for v in row) for row in values.tolist()]


def body_of(lines: list[str], end: str = "\n") -> bytes:
    return (end.join(lines) + end).encode()


def post_both(ours: httpx.Client, theirs: Client, body: bytes, headers: dict):
    mine = ours.post("/invocations", content=body, headers=headers)
    reference_answer = theirs.post("/invocations", data=body, headers=headers)
    return mine, reference_answer


def assert_same(mine: httpx.Response, theirs) -> None:
    assert mine.status_code == theirs.status_code, (mine.status_code, mine.content[:300], theirs.data[:300])
    assert mine.headers["content-type"] == theirs.headers["Content-Type"]
    text = reference.without_xgboost_trace(theirs.data.decode("utf-8", "replace")).encode()
    assert mine.content == (theirs.data if mine.status_code == 200 else text), (mine.content[:300], theirs.data[:300])


# --------------------------------------------------------------------------- answered in pieces


@pytest.mark.parametrize("objective", ["multi:softprob", "binary:logistic", "reg:squarederror"])
@pytest.mark.parametrize("accept", [None, "text/csv", "application/json", "application/jsonlines"])
def test_big_bodies_answered_in_pieces_are_the_containers_bytes(serve, objective, accept):
    engine, ours, theirs = serve(objective)
    body = body_of(table(seed=len(objective)))
    assert len(pieces.cut(body.strip())) >= 2
    in_pieces = pieces._invoke_in_pieces(engine, body, "text/csv", accept)  # raises if it had to give up
    assert in_pieces == engine.invoke(body, "text/csv", accept)
    headers = {"content-type": "text/csv", **({"accept": accept} if accept else {})}
    mine, theirs_answer = post_both(ours, theirs, body, headers)
    assert mine.content == in_pieces.body
    if accept == "application/jsonlines":  # the container has no writer for it (a 500): json.dumps per row
        predictions = engine.predict(formats.parse_csv(body)).tolist()
        assert mine.content == b"".join(json.dumps({"score": p}).encode() + b"\n" for p in predictions)
    else:
        assert_same(mine, theirs_answer)


def test_tiny_probabilities_and_narrow_rows_in_pieces(serve):
    # Rows narrower than the model are padded as missing, in every piece alike; the probabilities
    # of a deep softprob model reach the 1e-5 spellings the encoder rewrites.
    engine, ours, theirs = serve("multi:softprob")
    lines = [",".join(line.split(",")[:3]) for line in table(seed=9)]
    body = body_of(lines)
    assert pieces._invoke_in_pieces(engine, body, "text/csv", None) == engine.invoke(body, "text/csv", None)
    assert_same(*post_both(ours, theirs, body, {"content-type": "text/csv"}))


def test_concurrent_big_requests_each_get_their_own_answer(serve):
    _, ours, theirs = serve("binary:logistic")
    bodies = [body_of(table(rows=8_000, seed=seed)) for seed in range(4)]
    expected = [theirs.post("/invocations", data=b, headers={"content-type": "text/csv"}).data for b in bodies]
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda b: ours.post("/invocations", content=b, headers={"content-type": "text/csv"}), bodies)
        )
    assert [a.content for a in answers] == expected


# --------------------------------------------------------------------------- answered whole


def _with(lines: list[str], at: int, line: str) -> list[str]:
    return lines[:at] + [line] + lines[at:]


def _bodies_answered_whole() -> dict[str, tuple[bytes, dict]]:
    lines = table(seed=3)
    csv = {"content-type": "text/csv"}
    blank_everywhere = [line if i % 997 else "" for i, line in enumerate(lines, start=1)]
    spaced = [line + " " if i % 500 == 0 else line for i, line in enumerate(lines)]
    # the first line sniffs ';' where a later piece's first line would sniff ','
    semicolons = ["1.5;2.5;3.5;4.5"] + [line.replace(",", ";") if i % 2 else line for i, line in enumerate(lines)]
    return {
        "a blank line every 997": (body_of(blank_everywhere), csv),
        "a ragged row deep inside": (body_of(_with(lines, 15_000, "1,2,3")), csv),
        "a word deep inside": (body_of(_with(lines, 15_000, "1,2,abc,4")), csv),
        "an infinity deep inside": (body_of(_with(lines, 15_000, "1,2,inf,4")), csv),
        "a float32 overflow deep inside": (body_of(_with(lines, 15_000, "1,2,1e39,4")), csv),
        "too many columns everywhere": (body_of([line + ",1.0" for line in lines]), csv),
        "another delimiter further on": (body_of(semicolons), csv),
        "CRLF line ends": (body_of(lines, "\r\n"), csv),
        "spaces at some line ends": (body_of(spaced), csv),
        "an Accept the container refuses": (body_of(lines), {**csv, "accept": "text/html"}),
        "libsvm content type": (body_of(lines), {"content-type": "text/libsvm"}),
        "quoted fields": (body_of(['"' + line.replace(",", '","') + '"' for line in lines]), csv),
    }


@pytest.mark.parametrize("case", list(_bodies_answered_whole()))
def test_big_bodies_the_pieces_cannot_vouch_for_get_the_containers_answer(serve, case):
    engine, ours, theirs = serve()
    body, headers = _bodies_answered_whole()[case]
    assert_same(*post_both(ours, theirs, body, headers))
    reply = pieces.invoke(engine, body, headers["content-type"], headers.get("accept"))
    assert reply == engine.invoke(body, headers["content-type"], headers.get("accept"))


def test_selectable_output_is_answered_whole_like_the_container(serve):
    environ = {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilities"}
    engine, ours, theirs = serve("binary:logistic", environ)
    body = body_of(table(rows=6_000, seed=4))
    with pytest.raises(pieces.NotPieceable):
        pieces._invoke_in_pieces(engine, body, "text/csv", "application/jsonlines")
    mine, theirs_answer = post_both(ours, theirs, body, {"content-type": "text/csv", "accept": "text/csv"})
    assert_same(mine, theirs_answer)


# --------------------------------------------------------------------------- cutting and encoding


@pytest.mark.parametrize("end", ["\n", "\r\n", "\n\n", " \n"])
def test_cuts_fall_only_between_non_blank_characters_and_rejoin_to_the_body(end):
    stripped = body_of(table(rows=30_000, seed=1), end).strip()
    found = pieces.cut(stripped, piece_bytes=64 * 1024, cores=2)
    assert b"\n".join(found) == stripped
    assert all(piece == piece.strip() and piece for piece in found)
    if end == "\n":
        assert len(found) % 2 == 0 and len(found) > 2
    else:  # every line end touches whitespace: nothing can be cut
        assert found == [stripped]


def savetxt(predictions: np.ndarray) -> bytes:
    stream = io.StringIO()
    np.savetxt(stream, predictions.tolist(), delimiter=",", fmt="%s")
    return stream.getvalue().encode()


@pytest.mark.parametrize("columns", [1, 2, 3, 7])
def test_big_tables_are_written_as_savetxt_writes_them(columns):
    rng = np.random.default_rng(columns)
    values = (rng.random((20_000, columns)) * 10.0 ** rng.integers(-40, 6, (20_000, columns))).astype(np.float32)
    values[::5] = np.float32(3.4e-05)  # the positional spellings orjson uses and repr does not
    assert formats.encode_predictions(values, "text/csv") == savetxt(values)
    assert formats.encode_predictions(values[:, 0], "text/csv") == savetxt(values[:, 0])
    expected_json = json.dumps({"predictions": [{"score": row} for row in values.tolist()]}).encode()
    assert formats.encode_predictions(values, "application/json") == expected_json
