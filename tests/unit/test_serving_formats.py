"""The serving formats against the container's own methods: csv.Sniffer, numpy string casts,
np.savetxt and json.dumps, which is what the container's code calls."""

import csv
import io
import json
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2c.serving import formats
from l2c.serving.formats import ContainerError
from tests.profiles import examples

# --------------------------------------------------------------------------- references


def container_sniff(first_line: str) -> str:
    found = csv.Sniffer().sniff(first_line).delimiter
    return "," if found.isalnum() else found


def container_csv_rows(text: str, delimiter: str) -> np.ndarray:
    table = [["nan" if f == "" else f for f in line.split(delimiter)] for line in text.split("\n")]
    return np.array(table).astype(np.float64)


def container_csv_output(predictions: np.ndarray) -> bytes:
    stream = io.StringIO()
    np.savetxt(stream, predictions.tolist(), delimiter=",", fmt="%s")
    return stream.getvalue().encode()


def container_json_output(predictions: np.ndarray) -> bytes:
    return json.dumps({"predictions": [{"score": p} for p in predictions.tolist()]}).encode()


# --------------------------------------------------------------------------- content types


@pytest.mark.parametrize(
    "content_type",
    [
        "csv",
        "text/csv",
        "text/csv; label_size=1",
        "text/csv;label_size = 1",
        "text/csv; charset=utf-8",
        "TEXT/CSV",
        "text/csv; label_size=1; charset=utf-8",
    ],
)
def test_csv_content_types(content_type):
    assert formats.content_kind(content_type) == formats.CSV


@pytest.mark.parametrize(
    "content_type",
    [None, "libsvm", "text/libsvm", "text/x-libsvm", "Text/LibSVM", "text/libsvm; charset=utf-8", "text/x-libsvm;q=1"],
)
def test_libsvm_content_types_and_missing_header(content_type):
    assert formats.content_kind(content_type) == formats.LIBSVM


def test_json_content_type_gets_the_containers_415_message():
    with pytest.raises(ContainerError) as caught:
        formats.content_kind("application/json")
    assert caught.value.status == 415
    assert caught.value.message == (
        "application/json is not an accepted ContentType: csv, libsvm, parquet, recordio-protobuf, text/csv, "
        "text/libsvm, text/x-libsvm, application/x-parquet, application/x-recordio-protobuf."
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "incorrect_format",
        "text/csv; label_size=5",
        "text/csv; label_size=1=1",
        "text/csv; label_size=1; label_size=2",
        "label_size=1; text/csv",
        "text/csvx",
        "text/libsvm/x",
    ],
)
def test_malformed_content_types_are_415(content_type):
    with pytest.raises(ContainerError) as caught:
        formats.content_kind(content_type)
    assert caught.value.status == 415


def test_label_size_other_than_one_names_the_parameter():
    with pytest.raises(ContainerError) as caught:
        formats.content_kind("text/csv; label_size=5")
    assert caught.value.message == (
        "text/csv; label_size=5 is not an accepted csv ContentType. Optional parameter label_size must be equal to 1"
    )


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, "text/csv"),
        ("", "text/csv"),
        ("*/*", "text/csv"),
        ("application/json;verbose=True", "application/json"),
        ("APPLICATION/JSONLINES", "application/jsonlines"),
        ("text/csv; charset=utf-8", "text/csv"),
    ],
)
def test_accept_parsing(accept, expected):
    assert formats.parse_accept(accept, "text/csv") == expected


def test_accept_default_comes_from_the_setting():
    assert formats.parse_accept("*/*", "application/json") == "application/json"


def test_unsupported_accept_is_406_with_the_containers_message():
    with pytest.raises(ContainerError) as caught:
        formats.parse_accept("text/libsvm", "text/csv")
    assert caught.value.status == 406
    assert caught.value.message == (
        "Accept type text/libsvm is not supported. Please use supported accept types: "
        "['application/json', 'application/jsonlines', 'application/x-recordio-protobuf', 'text/csv']."
    )


def test_recordio_protobuf_accept_is_refused_not_crashed():
    with pytest.raises(ContainerError) as caught:
        formats.parse_accept("application/x-recordio-protobuf", "text/csv")
    assert caught.value.status == 406


# --------------------------------------------------------------------------- csv parsing


@pytest.mark.parametrize(
    "line",
    [
        "5.1,3.5,1.4,0.2",
        "5.1;3.5;1.4",
        "5.1 3.5 1.4",
        "5.1\t3.5",
        "5.1:3.5",
        "5.1",
        "1.1",
        "-.5",
        "5.1|3.5|1.4",
        "1,2;3",
        "a;b c",
        '"1","2"',
        "1e5",
        "7",
    ],
)
def test_sniffed_delimiter_matches_csv_sniffer(line):
    assert formats.sniff_delimiter(line) == container_sniff(line)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet="0123456789.,;: \t|-+eE_xab", min_size=1, max_size=40))
def test_sniffed_delimiter_matches_csv_sniffer_on_any_line(line):
    try:
        expected = container_sniff(line)
    except csv.Error:
        with pytest.raises(csv.Error):
            formats.sniff_delimiter(line)
        return
    assert formats.sniff_delimiter(line) == expected


def test_small_csv_values_and_missing_fields():
    rows = formats.parse_csv(b"5.1,,1.4,nan\n6.7,3.0,5.2,2.3\n")
    assert rows.dtype == np.float32
    assert rows.shape == (2, 4)
    np.testing.assert_array_equal(rows[1], np.float32([6.7, 3.0, 5.2, 2.3]))
    assert np.isnan(rows[0, 1]) and np.isnan(rows[0, 3])


def test_non_number_is_415_with_the_containers_wording():
    with pytest.raises(ContainerError) as caught:
        formats.parse_csv(b"5.1,abc,1.4,0.2")
    assert caught.value.status == 415
    assert caught.value.message.startswith(
        "Loading csv data failed with Exception, please ensure data is in csv format:\n <class 'ValueError'>\n"
    )
    assert "abc" in caught.value.message


@pytest.mark.parametrize("body", [b"1,inf,2", b"1,-Infinity,2", b"1,1e39,2"])
def test_infinite_or_too_large_values_are_refused_like_dmatrix(body):
    with pytest.raises(ContainerError) as caught:
        formats.parse_csv(body)
    assert caught.value.status == 415
    assert "<class 'xgboost.core.XGBoostError'>" in caught.value.message
    assert "Input data contains `inf` or a value too large" in caught.value.message


def test_ragged_rows_are_415():
    with pytest.raises(ContainerError) as caught:
        formats.parse_csv(b"1,2,3\n4,5")
    assert caught.value.status == 415
    assert "inhomogeneous" in caught.value.message


def test_whitespace_only_body_cannot_be_sniffed():
    with pytest.raises(ContainerError) as caught:
        formats.parse_csv(b"  \n ")
    assert caught.value.status == 415
    assert "Could not determine delimiter" in caught.value.message


def _big(table_text: str) -> str:
    """Repeat rows until the body is past the size where the fast parser takes over."""
    copies = formats._SMALL_CSV_BYTES // max(len(table_text), 1) + 2
    return "\n".join([table_text] * copies)


_TOKENS = st.sampled_from(
    [
        "1",
        "2.5",
        "-3",
        "+4",
        "1e5",
        "1E-3",
        ".5",
        "5.",
        "",
        "nan",
        "NaN",
        "-nan",
        " 7",
        "8 ",
        "inf",
        "1_000",
        "0x10",
        "1.5e",
        "NA",
        "abc",
        "1e400",
        "0.1234567890123456789",
        "٣",
        "\r9",
    ]
)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.lists(_TOKENS, min_size=3, max_size=3), min_size=1, max_size=4), st.sampled_from([",", ";", "\t"]))
def test_fast_csv_path_agrees_with_the_containers_steps(table, delimiter):
    text = _big("\n".join(delimiter.join(row) for row in table)).strip()
    if not text or formats.sniff_delimiter(text.split("\n", 1)[0][:512]) != delimiter:
        return  # the sniffer reads this table differently: covered by the sniffer tests
    try:
        with np.errstate(over="ignore"):
            expected = container_csv_rows(text, delimiter).astype(np.float32)
        valid = not np.isinf(expected).any()
    except ValueError:
        valid = False
    if not valid:
        with pytest.raises(ContainerError):
            formats.parse_csv(text.encode())
        return
    got = formats.parse_csv(text.encode())
    np.testing.assert_array_equal(got, expected)


def test_fast_csv_path_is_exact_for_long_decimals():
    rng = np.random.default_rng(7)
    values = rng.normal(size=(3000, 4)) * 10.0 ** rng.integers(-20, 20, (3000, 4))
    text = "\n".join(",".join(f"{v:.25g}" for v in row) for row in values.tolist())
    got = formats.parse_csv(text.encode())
    np.testing.assert_array_equal(got, values.astype(np.float32))


def test_fast_csv_path_refuses_a_short_row_deep_inside():
    text = _big("1,2,3\n4,5,6") + "\n7,8\n" + _big("1,2,3")
    with pytest.raises(ContainerError) as caught:
        formats.parse_csv(text.encode())
    assert "inhomogeneous" in caught.value.message


def test_fast_csv_path_does_not_split_lines_at_a_lone_carriage_return():
    # pandas would read "1,2\r3,4" as two rows; the container sees one line and a bad number.
    text = _big("1,2,3\n4,5,6") + "\n7,8\r9,1,2"
    with pytest.raises(ContainerError):
        formats.parse_csv(text.encode())


# --------------------------------------------------------------------------- libsvm parsing


def test_libsvm_skips_labels_and_leaves_absent_columns_missing():
    matrix = formats.parse_libsvm(b"1 0:5.1 2:1.4\n0 1:3.5 3:0.2")
    assert matrix.shape == (2, 4)
    assert matrix.dtype == np.float32
    assert matrix[0, 2] == np.float32(1.4)
    assert matrix.nnz == 4


def test_bad_libsvm_index_is_415():
    with pytest.raises(ContainerError) as caught:
        formats.parse_libsvm(b"1 a:5.1")
    assert caught.value.status == 415
    assert caught.value.message.startswith(
        "Loading libsvm data failed with Exception, please ensure data is in libsvm format:"
    )


def test_one_based_libsvm_is_shifted_and_trailing_lines_without_features_are_not_rows():
    matrix = formats.parse_libsvm(b"0 1:5.1 4:0.2\n\n1 2:3.5\n0\n\n")
    assert matrix.shape == (3, 4)  # rows 0..2; the two trailing lines hold no feature
    assert matrix[0, 0] == np.float32(5.1) and matrix[0, 3] == np.float32(0.2) and matrix[2, 1] == np.float32(3.5)
    assert matrix[1].nnz == 0  # a blank line between rows stays a row of missing values


def test_an_index_error_is_reported_before_a_value_error_as_the_container_does():
    with pytest.raises(ContainerError) as caught:
        formats.parse_libsvm(b"0 1:abc\n0 x:1")
    assert "invalid literal for int() with base 10: 'x'" in caught.value.message


LONG_NUMBER = "1." + "0" * 998  # a valid 1,000-character number


@pytest.mark.parametrize("kind", ["csv", "libsvm"])
def test_one_long_field_costs_a_small_multiple_of_the_body_not_gigabytes(kind):
    # numpy sizes a string array by its longest field: cast in one piece, this 400 KB body would
    # take over 400 MB. "1_0" keeps the CSV body off the pandas path (numpy reads it as 10).
    if kind == "csv":
        lines = ["1_0,1.5,2.5,3.5"] * 25_000
        lines[7] = f"{LONG_NUMBER},1,2,3"
        body, parse = "\n".join(lines).encode(), formats.parse_csv
    else:
        lines = ["0 1:1.5 2:2.5 3:3.5 4:1"] * 17_000
        lines[7] = f"0 1:{LONG_NUMBER}"
        body, parse = "\n".join(lines).encode(), formats.parse_libsvm
    tracemalloc.start()
    try:
        rows = parse(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows.shape[0] == len(lines) and rows[7, 0] == 1.0
    assert peak < 30 * len(body), f"{peak / len(body):.0f} x the body"


@settings(max_examples=examples(500), deadline=None)
@given(st.text(alphabet=' ;="\\abcXY/=-_,', max_size=40))
def test_parse_header_reads_as_cgi_parse_header_does(value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import cgi
    assert formats.parse_header(value) == cgi.parse_header(value)


# --------------------------------------------------------------------------- output


def test_repr_table_matches_python_repr_across_magnitudes():
    rng = np.random.default_rng(3)
    exponents = rng.integers(-40, 39, 200_000)
    values = (rng.random(200_000) * 10.0**exponents).astype(np.float32).astype(np.float64)
    values[::7] *= -1
    specials = [0.0, -0.0, 1e-4, 9.99e-5, 1e-5, 9.9e-6, 1e16, 9999999999999998.0, 5e-324, 28.0, 1.5e-45]
    values = np.concatenate([values, specials])
    expected = ",".join(map(repr, values.tolist())).encode()
    assert formats.repr_table(values) == expected


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=12))
def test_csv_output_matches_savetxt(values):
    predictions = np.array(values, dtype=np.float32)
    assert formats.encode_predictions(predictions, "text/csv") == container_csv_output(predictions)


def test_softprob_rows_in_csv_and_json():
    predictions = np.array([[0.1, 0.7, 3.4e-05], [1e-9, 0.5, 0.25]], dtype=np.float32)
    assert formats.encode_predictions(predictions, "text/csv") == container_csv_output(predictions)
    assert formats.encode_predictions(predictions, "application/json") == container_json_output(predictions)


def test_regression_json_and_jsonlines():
    predictions = np.array([28.42, 31.5, 0.00005], dtype=np.float32)
    assert formats.encode_predictions(predictions, "application/json") == container_json_output(predictions)
    lines = b"".join(json.dumps({"score": p}).encode() + b"\n" for p in predictions.tolist())
    assert formats.encode_predictions(predictions, "application/jsonlines") == lines


def test_non_finite_predictions_are_spelled_like_python():
    predictions = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)
    assert formats.encode_predictions(predictions, "text/csv") == b"nan\ninf\n-inf\n1.5\n"
    assert formats.encode_predictions(predictions, "application/json") == container_json_output(predictions)


# --------------------------------------------------------------------------- selectable output
# The container's own unit-test vectors (test_serve_utils.py).


def test_selected_binary_logistic_all_keys():
    keys = formats.SELECTABLE_KEYS_BY_OBJECTIVE["binary:logistic"]
    outputs = formats.select_outputs(np.array([0.6, 0.1]), keys, "binary:logistic", 0)
    assert outputs == [
        {
            "predicted_label": 1,
            "labels": [0, 1],
            "probability": 0.6,
            "probabilities": [0.4, 0.6],
            "raw_score": 0.6,
            "raw_scores": [0.4, 0.6],
        },
        {
            "predicted_label": 0,
            "labels": [0, 1],
            "probability": 0.1,
            "probabilities": [0.9, 0.1],
            "raw_score": 0.1,
            "raw_scores": [0.9, 0.1],
        },
    ]


def test_selected_regression_and_an_invalid_key_is_nan():
    outputs = formats.select_outputs(np.array([0.6, 32.0]), ["predicted_score", "predicted_label"], "reg:logistic", 0)
    assert [row["predicted_score"] for row in outputs] == [0.6, 32.0]
    assert all(np.isnan(row["predicted_label"]) for row in outputs)


def test_selected_softprob_label_probability_and_labels():
    outputs = formats.select_outputs(
        np.array([[0.1, 0.5, 0.4]]), ["predicted_label", "probability", "labels"], "multi:softprob", 3
    )
    assert outputs == [{"predicted_label": 1, "labels": [0, 1, 2], "probability": 0.5}]


def test_selected_unsupported_objective_is_a_server_error():
    with pytest.raises(ContainerError) as caught:
        formats.select_outputs(np.array([1.0]), ["predicted_score"], "rank:pairwise", 0)
    assert caught.value.status == 500


def test_selected_encodings():
    outputs = [{"predicted_label": 1, "probabilities": [0.4, 0.6]}, {"predicted_label": 0, "probabilities": [0.9, 0.1]}]
    keys = ["predicted_label", "probabilities"]
    assert formats.encode_selected(outputs, keys, "text/csv") == b'1,"[0.4, 0.6]"\n0,"[0.9, 0.1]"'
    assert formats.encode_selected(outputs, keys, "application/json") == json.dumps({"predictions": outputs}).encode()
    assert formats.encode_selected(outputs, keys, "application/jsonlines") == (
        b'{"predicted_label": 1, "probabilities": [0.4, 0.6]}\n{"predicted_label": 0, "probabilities": [0.9, 0.1]}\n'
    )


def test_selected_keys_are_read_like_the_container():
    assert formats.selected_keys(" Predicted_Label, probabilities ") == ["predicted_label", "probabilities"]


def test_a_very_wide_line_skips_pandas(monkeypatch):
    # pandas would build one object per column: minutes and gigabytes for millions of fields
    monkeypatch.setattr(formats, "_csv_fast", lambda *args: pytest.fail("pandas was used for a 5,001-field line"))
    rows = formats.parse_csv(("1.5," * 5000 + "2").encode())
    assert rows.shape == (1, 5001) and rows[0, -1] == 2.0
