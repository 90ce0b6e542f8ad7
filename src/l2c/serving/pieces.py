"""A big CSV request answered in pieces, on every core at once.

A 100,000-row body spends about as long in parsing and printing as XGBoost spends predicting,
and each row's answer depends on that row alone. So the body is cut at line ends into pieces
of ~256 KB; each piece goes through the steps a whole body goes through (``parse_csv``, the
width check, one-thread prediction, the encoder) on a pool of one thread per core, and the
answers are joined in order. While one thread holds the GIL to print, the other predicts or
parses, which release it.

The result is the whole body's, byte for byte, only where the container's steps are local to
lines, so the pieces are cut where that is provably so:
- cuts fall on a ``\\n`` with no whitespace on either side, so stripping a piece (parse_csv
  strips its body) removes nothing, and no empty line is lost or made;
- every piece's first line must give the delimiter the body's first line gives (each piece
  sniffs its own), and every piece the same number of columns (the container refuses ragged
  tables, and the width check pads narrow ones);
- the answers join only for text/csv and jsonlines (a line per row); for JSON the predictions
  are joined and encoded once.
Any piece answering anything but predictions sends the whole body down the ordinary path,
so errors are exactly the container's for the whole body (at worst twice the parsing work,
on a body that is refused anyway).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from l2c.serving import formats

PIECE_BYTES = 256 * 1024
_CORES = os.cpu_count() or 1
_POOL = ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="l2c-piece")
_JOINABLE = ("text/csv", "application/jsonlines")
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")
# How many line ends past the ideal cut are tried before that cut is dropped.
_CUT_TRIES = 8


class NotPieceable(Exception):
    """The body must be answered whole (its error, or a shape the pieces could not prove)."""


def invoke(engine, body: bytes, content_type: str | None, accept: str | None):
    """The engine's reply for a big body: in pieces when that is provably the same bytes."""
    try:
        return _invoke_in_pieces(engine, body, content_type, accept)
    except NotPieceable:
        return engine.invoke(body, content_type, accept)


def _invoke_in_pieces(engine, body: bytes, content_type: str | None, accept: str | None):
    from l2c.serving.engine import Reply

    if _CORES < 2 or engine.settings.inference_output is not None:
        raise NotPieceable
    try:
        if formats.content_kind(content_type) != formats.CSV:
            raise NotPieceable
        accept_type = formats.parse_accept(accept, engine.settings.default_accept)
    except formats.ContainerError:
        raise NotPieceable from None
    pieces = cut(body.strip())
    if len(pieces) < 2 or len({first_line_delimiter(piece) for piece in pieces}) != 1:
        raise NotPieceable
    joinable = accept_type in _JOINABLE
    answers = list(_POOL.map(lambda piece: _answer(engine, piece, accept_type, joinable), pieces))
    if len({columns for columns, _ in answers}) != 1:
        raise NotPieceable
    if joinable:
        payload = b"".join(encoded for _, encoded in answers)
    else:
        payload = formats.encode_predictions(np.concatenate([predictions for _, predictions in answers]), accept_type)
    return Reply(200, payload, formats.RESPONSE_TYPES[accept_type])


def _answer(engine, piece: bytes, accept_type: str, joinable: bool):
    """(columns, encoded answer or predictions) for one piece; NotPieceable on any refusal."""
    try:
        rows = formats.parse_csv(piece)
        columns = rows.shape[1]
        predictions = engine.predict(engine.check_width(rows), one_core=True)
        return columns, (formats.encode_predictions(predictions, accept_type) if joinable else predictions)
    except Exception:  # the whole body, answered the ordinary way, gives the caller its error
        raise NotPieceable from None


def cut(stripped: bytes, piece_bytes: int = PIECE_BYTES, cores: int = _CORES) -> list[bytes]:
    """``stripped`` cut at line ends into pieces of about ``piece_bytes`` (without the ``\\n``).

    As many pieces as a multiple of the cores, of equal size, so that no core is left idle
    while another finishes a last piece."""
    count = cores * max(1, round(len(stripped) / (piece_bytes * cores)))
    pieces, start = [], 0
    for index in range(1, count):
        end = _cut_point(stripped, max(start, len(stripped) * index // count))
        if end < 0:
            break
        pieces.append(stripped[start:end])
        start = end + 1
    pieces.append(stripped[start:])
    return pieces


def _cut_point(text: bytes, near: int) -> int:
    """A ``\\n`` at or after ``near`` with no whitespace either side, or -1."""
    end = near
    for _ in range(_CUT_TRIES):
        end = text.find(b"\n", end)
        if end <= 0 or end + 1 >= len(text):
            return -1
        if text[end - 1] not in _WHITESPACE and text[end + 1] not in _WHITESPACE:
            return end
        end += 1
    return -1


def first_line_delimiter(piece: bytes) -> str:
    """The delimiter parse_csv would sniff for a piece on its own."""
    end = piece.find(b"\n")
    line = piece if end < 0 else piece[:end]
    try:
        return formats.sniff_delimiter(line.decode("utf-8")[:512])
    except Exception:  # undecodable or unsniffable: parse_csv would refuse the body
        raise NotPieceable from None
