"""Request bodies in, response bodies out, byte for byte as the SageMaker XGBoost container.

The container (image 3.2-0, algorithm mode) decodes CSV by splitting strings in Python and
encodes predictions with ``str(float)``; both are slow. Here the common cases go through
vectorised code (pandas' C parser, orjson's float printer) and every case those cannot prove
identical falls back to a reference path that follows the container's own steps, so the
outputs and the error messages stay the container's.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import orjson
from xgboost.core import XGBoostError

CSV, LIBSVM, PARQUET, RECORDIO_PROTOBUF = "csv", "libsvm", "parquet", "recordio-protobuf"

# The container's list, in the container's order: its 415 message prints it verbatim.
ACCEPTED_CONTENT_TYPES = (
    CSV,
    LIBSVM,
    PARQUET,
    RECORDIO_PROTOBUF,
    "text/csv",
    "text/libsvm",
    "text/x-libsvm",
    "application/x-parquet",
    "application/x-recordio-protobuf",
)
SUPPORTED_ACCEPTS = ("application/json", "application/jsonlines", "application/x-recordio-protobuf", "text/csv")
# What this server can actually write; recordio-protobuf output is not implemented (docs/serving.md).
WRITABLE_ACCEPTS = ("application/json", "application/jsonlines", "text/csv")

# Flask, which the container runs, adds a charset to text/* types and types errors as HTML.
RESPONSE_TYPES = {
    "text/csv": "text/csv; charset=utf-8",
    "application/json": "application/json",
    "application/jsonlines": "application/jsonlines",
}
ERROR_TYPE = "text/html; charset=utf-8"

# Below this size the reference path is as fast as pandas' start-up cost.
_SMALL_CSV_BYTES = 16 * 1024
# pandas builds one object per column: a hostile single line of millions of fields would
# cost it minutes and gigabytes, the reference path a couple of seconds.
_MAX_FAST_COLUMNS = 1024
_PREFERRED_DELIMITERS = (",", "\t", ";", " ", ":")
_FAST_CSV_CHARACTERS = b"0123456789.+-eEnNaA \t\r\n"
_NAN_SPELLINGS = ["", "nan", "NaN", "NAN", "-nan", "+nan", "-NaN", "+NaN"]


class ContainerError(Exception):
    """An answer the container gives with a non-200 status: the message is the response body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- content types


def content_kind(content_type: str | None) -> str:
    """Map a Content-Type header to csv/libsvm/parquet/recordio-protobuf, or raise the 415.

    The container lower-cases the whole header and parses it as Python's ``cgi.parse_header``
    does (serve_utils -> data_utils.get_content_type), so parameters such as ``charset`` are
    accepted on every type and only ``label_size`` is looked at (csv only, it must be 1)."""
    if content_type is None:
        return LIBSVM
    media_type, params = parse_header(content_type.lower())
    if media_type in (CSV, "text/csv"):
        if params.get("label_size", "1") != "1":
            raise ContainerError(
                415,
                f"{content_type} is not an accepted csv ContentType. Optional parameter label_size must be equal to 1",
            )
        return CSV
    if media_type in (LIBSVM, "text/libsvm", "text/x-libsvm"):
        return LIBSVM
    if media_type in (PARQUET, "application/x-parquet"):
        return PARQUET
    if media_type in (RECORDIO_PROTOBUF, "application/x-recordio-protobuf"):
        return RECORDIO_PROTOBUF
    raise ContainerError(415, _not_accepted(content_type))


def _not_accepted(content_type: str) -> str:
    return f"{content_type} is not an accepted ContentType: {', '.join(ACCEPTED_CONTENT_TYPES)}."


def parse_header(value: str) -> tuple[str, dict[str, str]]:
    """``type/sub; k=v`` -> ('type/sub', {'k': 'v'}), read as ``cgi.parse_header`` reads it.

    The container parses Content-Type and Accept with that function (deprecated in Python 3.11,
    gone in 3.13, hence this reimplementation): parts are split on ``;`` outside double quotes,
    names are lower-cased, a quoted value loses its quotes and its backslash escapes, and a
    part without ``=`` is dropped."""
    media_type, *parts = _header_parts(value)
    params = {}
    for part in parts:
        name, sep, raw = part.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        params[name.strip().lower()] = raw
    return media_type, params


def _header_parts(value: str) -> list[str]:
    # A ';' ends a part unless an odd number of unescaped double quotes precede it in that
    # part; a ';' right at the start of a part ends it at once (an empty part).
    parts, rest = [], value
    while True:
        end = rest.find(";")
        while end > 0 and (rest.count('"', 0, end) - rest.count('\\"', 0, end)) % 2:
            end = rest.find(";", end + 1)
        if end < 0:
            parts.append(rest.strip())
            return parts
        parts.append(rest[:end].strip())
        rest = rest[end + 1 :]


def parse_accept(accept: str | None, default: str) -> str:
    """The response type for an Accept header; ``*/*`` or none means the default."""
    media_type = parse_header(accept)[0] if accept else ""
    if not media_type or media_type == "*/*":
        return default
    if media_type.lower() not in SUPPORTED_ACCEPTS:
        raise ContainerError(
            406,
            f"Accept type {media_type} is not supported. Please use supported accept types: {list(SUPPORTED_ACCEPTS)}.",
        )
    if media_type.lower() not in WRITABLE_ACCEPTS:
        raise ContainerError(
            406,
            f"Accept type {media_type} is not supported by this server (l2c): use text/csv, application/json or application/jsonlines.",
        )
    return media_type.lower()


# --------------------------------------------------------------------------- csv


def sniff_delimiter(first_line: str) -> str:
    """The delimiter csv.Sniffer finds in one line, with the container's fallback to ','.

    On a single line without quotes the Sniffer counts every 7-bit character as a candidate,
    takes the first of its preferred list that occurs, else the most frequent character;
    the container then replaces a letter or digit with ','. Lines with quotes go to the
    Sniffer itself, whose quote rules are not worth re-deriving.
    """
    if '"' in first_line or "'" in first_line:
        found = csv.Sniffer().sniff(first_line).delimiter
    else:
        found = next((d for d in _PREFERRED_DELIMITERS if d in first_line), None) or _most_frequent(first_line)
    return "," if found.isalnum() else found


def _most_frequent(line: str) -> str:
    counts = {ch: line.count(ch) for ch in set(line) if ord(ch) < 127}
    if not counts:
        raise csv.Error("Could not determine delimiter")
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]


def parse_csv(body: bytes) -> np.ndarray:
    """CSV rows as float32, or the container's 415 'Loading csv data failed' error."""
    try:
        text = body.strip().decode("utf-8")
        end = text.find("\n")
        first_line = text if end < 0 else text[:end]
        delimiter = sniff_delimiter(first_line[:512])
        rows = None
        if len(text) > _SMALL_CSV_BYTES and first_line.count(delimiter) < _MAX_FAST_COLUMNS and not _has_quotes(text):
            rows = _csv_fast(body.strip(), text, delimiter)
        if rows is None:
            rows = _csv_reference(text, delimiter)
        return as_model_input(rows)
    except Exception as err:  # every parse failure is the caller's: the container answers 415
        raise ContainerError(415, _loading_failed("csv", err)) from None


def _has_quotes(text: str) -> bool:
    return '"' in text or "'" in text


def _csv_reference(text: str, delimiter: str) -> np.ndarray:
    """The container's own steps (encoder.csv_to_dmatrix): lines split on '\\n', fields on the
    delimiter, empty fields are NaN, ragged rows and non-numbers raise, numpy casts the strings.

    numpy sizes a string array by its longest field, so the container's one cast of the whole
    table costs fields x longest field x 4 bytes: gigabytes for a 2 MB body holding one
    1,000-character field. Here the same cast runs on blocks of lines, in order (so the first
    bad value is the one reported), and the peak stays a small multiple of the body."""
    lines = text.split("\n")
    width = lines[0].count(delimiter) + 1
    if any(line.count(delimiter) + 1 != width for line in lines):
        # numpy's words for the ragged table the container hands it.
        raise ValueError(
            "setting an array element with a sequence. The requested array has an inhomogeneous shape after "
            f"1 dimensions. The detected shape was ({len(lines)},) + inhomogeneous part."
        )
    table = np.empty((len(lines), width), dtype=np.float64)
    for first, last in _blocks(lines):
        fields = ["nan" if field == "" else field for line in lines[first:last] for field in line.split(delimiter)]
        table[first:last] = strings_to_floats(fields).reshape(last - first, width)
    return table


# How much text (characters) one block of a cast holds, and how large numpy's string array
# for one cast may be.
_BLOCK_CHARACTERS = 64 * 1024
_CAST_BYTES = 1024 * 1024


def _blocks(lines: list[str]):
    """(first, last) line ranges of about _BLOCK_CHARACTERS each, in order."""
    first, size = 0, 0
    for index, line in enumerate(lines):
        size += len(line) + 1
        if size >= _BLOCK_CHARACTERS:
            yield first, index + 1
            first, size = index + 1, 0
    if first < len(lines):
        yield first, len(lines)


def strings_to_floats(fields: list[str]) -> np.ndarray:
    """``np.array(fields).astype(float)`` (numpy's string-to-number rules and errors), in pieces
    small enough that the padded string array stays under _CAST_BYTES."""
    if not fields:
        return np.empty(0, dtype=np.float64)
    longest = max(map(len, fields))
    if len(fields) == 1 or len(fields) * max(longest, 1) * 4 <= _CAST_BYTES:
        return np.array(fields).astype(np.float64)
    middle = len(fields) // 2
    return np.concatenate([strings_to_floats(fields[:middle]), strings_to_floats(fields[middle:])])


def _csv_fast(stripped: bytes, text: str, delimiter: str) -> np.ndarray | None:
    """pandas' C parser, trusted only when the shape proves it read what the container reads."""
    import pandas as pd

    # pandas also reads words such as "true" (as 1.0) where the container's float() fails:
    # only bodies made of number characters are left to it.
    if stripped.translate(None, _FAST_CSV_CHARACTERS + delimiter.encode()):
        return None
    try:
        # float32 costs a third less than float64 and is the same: pandas reads every float
        # column as float64 and then casts it, which is what as_model_input does. The only
        # warning that cast can raise (overflow to inf, refused later) is silenced by numpy's
        # own per-thread switch, where warnings.catch_warnings would race between threads.
        with np.errstate(all="ignore"):
            rows = pd.read_csv(
                io.BytesIO(stripped),
                header=None,
                sep=delimiter,
                dtype=np.float32,
                engine="c",
                keep_default_na=False,
                na_values=_NAN_SPELLINGS,
                quoting=csv.QUOTE_NONE,
                skip_blank_lines=False,
                comment=None,
                skipinitialspace=False,
            ).to_numpy()
    except Exception:
        return None
    n_rows, n_cols = rows.shape
    # pandas pads short rows with NaN and also ends lines at a lone '\r'; the container
    # rejects the first and does not do the second. Equal counts rule both out.
    if n_rows != text.count("\n") + 1 or text.count(delimiter) != n_rows * (n_cols - 1):
        return None
    # pandas reads a field that is only the '\r' of a CRLF line end as empty (NaN); the
    # container cannot make a number of "\r" and refuses the body. (A lone "\r" is looked for
    # first: one-character searches are several times faster than two-character ones.)
    if "\r" in text and ("\n\r" in text or delimiter + "\r" in text):
        return None
    return rows


def as_model_input(values: np.ndarray) -> np.ndarray:
    """float32, as XGBoost stores it, refusing infinities as the container's DMatrix does.

    A double beyond float32's range becomes inf here, which DMatrix calls "a value too large".
    """
    with np.errstate(over="ignore"):
        values = np.asarray(values, dtype=np.float32)
    if np.isinf(values).any():
        raise XGBoostError(
            "Check failed: valid: Input data contains `inf` or a value too large, while `missing` is not set to `inf`"
        )
    return values


def _loading_failed(kind: str, err: BaseException) -> str:
    return (
        f"Loading {kind} data failed with Exception, please ensure data is in {kind} format:\n"
        f" {type(err)}\n {clean_error(err)}"
    )


def clean_error(err: BaseException) -> str:
    """An exception's first line, without XGBoost's timestamp, source path and stack trace."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    return re.sub(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", first)


# --------------------------------------------------------------------------- libsvm


def parse_libsvm(body: bytes):
    """libsvm rows as a scipy CSR matrix, read as the container reads them (serve_utils'
    ``_get_sparse_matrix_from_libsvm``): tokens split on single spaces, a token without ':' (the
    label) skipped, indices read by ``int()``, and when the smallest index in the body is 1 or
    more every index is shifted down by one (standard libsvm counts from 1)."""
    try:
        return _libsvm_matrix(body.strip().decode("utf-8"))
    except Exception as err:
        raise ContainerError(415, _loading_failed("libsvm", err)) from None


# Value strings are cast to numbers in groups of this many, as they are read.
_LIBSVM_CAST_GROUP = 16384


def _libsvm_matrix(text: str):
    from scipy.sparse import csr_matrix

    rows, columns, pending, values = [], [], [], []
    bad_value: Exception | None = None  # the container casts values only after every index is read
    for row_index, line in enumerate(text.split("\n")):
        for item in line.split(" "):
            if ":" in item:
                parts = item.split(":")
                columns.append(int(parts[0]))
                rows.append(row_index)
                pending.append(parts[1])
                if len(pending) >= _LIBSVM_CAST_GROUP:
                    bad_value = _cast_group(pending, values, bad_value)
    bad_value = _cast_group(pending, values, bad_value)
    column_array = np.array(columns).astype(int)
    if len(column_array) and column_array.min() >= 1:
        column_array = column_array - 1
    if bad_value is not None:
        raise bad_value
    data = np.concatenate(values) if values else np.array([]).astype(float)
    # No shape given, as in the container: the matrix ends at the last row holding a feature, so
    # trailing lines without any index:value are not rows.
    matrix = csr_matrix((data, (np.array(rows), column_array)))
    matrix.data = as_model_input(matrix.data)
    return matrix


def _cast_group(pending: list[str], values: list, bad_value: Exception | None) -> Exception | None:
    """Cast and empty ``pending`` into ``values``; keep (not raise) the first failure."""
    if pending and bad_value is None:
        try:
            values.append(strings_to_floats(pending))
        except (ValueError, TypeError, OverflowError) as err:
            bad_value = err
    pending.clear()
    return bad_value


# --------------------------------------------------------------------------- output


_POSITIONAL_SMALL = re.compile(rb"(?<![0-9.])0\.0000([1-9])([0-9]*)")
_SHORT_EXPONENT = re.compile(rb"e-([1-9])(?![0-9])")
_NON_FINITE_JSON = {b"nan": b"NaN", b"inf": b"Infinity", b"-inf": b"-Infinity"}


def repr_table(values: np.ndarray) -> bytes:
    """``repr`` of every float: 1-D as ``a,b``; 2-D as ``a,b`` rows joined by newlines.

    orjson prints the same shortest round-trip digits as Python's repr but spells 1e-5..1e-4
    positionally and pads no exponent; two byte-level rewrites restore Python's spelling.
    Non-finite values (orjson has no spelling for them) and tables of a few values (where
    numpy's fixed cost per call exceeds repr's) take the plain Python path.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size <= _FEW_VALUES or not np.isfinite(values).all():
        return _repr_table_slow(values)
    # One flat line, then the comma after each row's last value becomes its line end: a
    # same-length rewrite, where replacing orjson's "],[" row separators shrinks the text.
    text = orjson.dumps(values.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    if values.ndim == 2:
        text = _end_rows_at_every(text, values.shape[1])
    magnitude = np.abs(values)
    if ((magnitude >= 1e-5) & (magnitude < 1e-4)).any():
        text = _POSITIONAL_SMALL.sub(_scientific_e05, text)
    if ((magnitude > 0) & (magnitude < 1e-5)).any():
        text = _SHORT_EXPONENT.sub(rb"e-0\1", text)
    return text


# Up to this many values repr is cheaper than orjson plus the numpy checks around it.
_FEW_VALUES = 64


def _end_rows_at_every(text: bytes, columns: int) -> bytes:
    characters = np.frombuffer(text, dtype=np.uint8).copy()
    commas = np.flatnonzero(characters == ord(","))
    characters[commas[columns - 1 :: columns]] = ord("\n")
    return characters.tobytes()


def _scientific_e05(match: re.Match) -> bytes:
    head, tail = match.group(1), match.group(2)
    return head + (b"." + tail if tail else b"") + b"e-05"


def _repr_table_slow(values: np.ndarray) -> bytes:
    if values.ndim == 2:
        return "\n".join(",".join(map(repr, row)) for row in values.tolist()).encode()
    return ",".join(map(repr, values.tolist())).encode()


def _json_numbers(text: bytes) -> bytes:
    # json.dumps spells non-finite floats NaN/Infinity where repr says nan/inf.
    if b"n" not in text:
        return text
    return re.sub(rb"-?inf|nan", lambda m: _NON_FINITE_JSON[m.group(0)], text)


_COMMA_TO_NEWLINE = bytes.maketrans(b",", b"\n")


def encode_predictions(predictions: np.ndarray, accept: str) -> bytes:
    """The container's default output: csv lines, ``{"predictions": [{"score": ...}]}``, or jsonlines."""
    table = repr_table(predictions)
    rows_are_lists = predictions.ndim == 2
    if accept == "text/csv":
        return (table if rows_are_lists else table.translate(_COMMA_TO_NEWLINE)) + b"\n"
    table = _json_numbers(table)
    if rows_are_lists:
        scores = table.replace(b",", b", ").replace(b"\n", b']}\n{"score": [')
        scores = b'{"score": [' + scores + b"]}"
    else:
        scores = b'{"score": ' + table.replace(b",", b'}\n{"score": ') + b"}"
    if accept == "application/jsonlines":
        return scores + b"\n"
    return b'{"predictions": [' + scores.replace(b"\n", b", ") + b"]}"


# --------------------------------------------------------------------------- selectable output

PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES = "predicted_label", "labels", "probability", "probabilities"
RAW_SCORE, RAW_SCORES, PREDICTED_SCORE = "raw_score", "raw_scores", "predicted_score"
_CLASSIFIER_KEYS = [PREDICTED_LABEL, LABELS, RAW_SCORE, RAW_SCORES]
_PROBABILITY_KEYS = [PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES]
# serve_utils.VALID_OBJECTIVES: every objective the container can select content for.
SELECTABLE_KEYS_BY_OBJECTIVE = {
    "reg:squarederror": [PREDICTED_SCORE],
    "reg:logistic": [PREDICTED_SCORE],
    "reg:gamma": [PREDICTED_SCORE],
    "reg:absoluteerror": [PREDICTED_SCORE],
    "reg:tweedie": [PREDICTED_SCORE],
    "binary:logistic": _PROBABILITY_KEYS,
    "binary:logitraw": _CLASSIFIER_KEYS,
    "binary:hinge": _CLASSIFIER_KEYS,
    "multi:softmax": _CLASSIFIER_KEYS,
    "multi:softprob": _PROBABILITY_KEYS,
}
_KEY_ORDER = [PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES, PREDICTED_SCORE]


def selected_keys(env_value: str) -> list[str]:
    """``SAGEMAKER_INFERENCE_OUTPUT`` as the container reads it: spaces dropped, lower case."""
    return env_value.replace(" ", "").lower().split(",")


def select_outputs(predictions: np.ndarray, keys: list[str], objective: str, num_class: int) -> list[dict]:
    """One dict per row with the selected content; keys the objective cannot give are NaN."""
    if objective not in SELECTABLE_KEYS_BY_OBJECTIVE:
        raise ContainerError(500, f"Objective `{objective}` unsupported for selectable inference predictions.")
    allowed = SELECTABLE_KEYS_BY_OBJECTIVE[objective]
    valid = [key for key in _KEY_ORDER if key in keys and key in allowed]
    invalid = [key for key in dict.fromkeys(keys) if key not in allowed]
    labels = _labels(objective, num_class)
    outputs = []
    for raw in predictions:
        row = {key: _selected_value(key, objective, raw, labels) for key in valid}
        row.update({key: math.nan for key in invalid})
        outputs.append(row)
    return outputs


def _labels(objective: str, num_class: int):
    if objective.startswith("binary:"):
        return [0, 1]
    if objective.startswith("multi:") and num_class:
        return list(range(num_class))
    return math.nan


def _selected_value(key: str, objective: str, raw: np.ndarray, labels):
    if key == LABELS:
        return labels
    if key == PREDICTED_SCORE:
        return raw.item()
    softprob = objective == "multi:softprob"
    if key == PREDICTED_LABEL:
        if softprob:
            return int(np.argmax(raw))
        if objective == "binary:logistic":
            return int(raw > 0.5)
        if objective == "binary:logitraw":
            return int(raw > 0)
        return raw.item()
    if key in (PROBABILITY, RAW_SCORE):
        return max(raw).item() if softprob else raw.item()
    # probabilities / raw_scores: every class, or [1 - p, p] for a single score
    if softprob:
        return raw.tolist()
    score = raw.item()
    return [1.0 - score, score]


def encode_selected(outputs: list[dict], keys: list[str], accept: str) -> bytes:
    """Selected content as the container writes it for each Accept."""
    if accept == "application/json":
        return json.dumps({"predictions": outputs}).encode()
    if accept == "application/jsonlines":
        return "".join(json.dumps(row) + "\n" for row in outputs).encode()
    lines = (",".join(_csv_cell(row[key]) for key in keys) for row in outputs)
    return "\n".join(lines).encode()


def _csv_cell(value) -> str:
    return f'"{value}"' if isinstance(value, list) else str(value)
