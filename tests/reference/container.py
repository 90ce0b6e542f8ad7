"""A reference of the SageMaker XGBoost container's serving stack (image 3.2-0, algorithm mode),
rebuilt for the tests from the container's public sources, one step per step of theirs, on the
same Flask (3.1.3) the image installs. l2c's runtime is compared with it byte for byte.

What it follows, and where that is in the sources:
- aws/sagemaker-xgboost-container, src/sagemaker_xgboost_container/algorithm_mode/serve.py:
  the Flask routes, the order of the checks in /invocations and each status code, the Accept
  parsing, the JSON writer; serve_utils.py: the content-type dispatch, the libsvm reader (with
  its shift of 1-based indices), prediction, selectable inference output; encoder.py: the CSV
  reader; data_utils.py: get_content_type and its messages.
- aws/sagemaker-containers, etc/nginx.conf.template: the nginx in front, which passes only
  paths matching ``^/(ping|invocations|execution-parameters)`` on and answers 404 ``{}``
  (``default_type application/octet-stream``) itself; _encoders.py: the CSV writer.

It is the tests' model of the container, not product code: it runs pickles and everything else
the container runs. The environment is passed in rather than read from os.environ.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings

import flask
import numpy as np
import xgboost as xgb
from scipy.sparse import csr_matrix

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import cgi  # what the container parses Content-Type and Accept with

SUPPORTED_ACCEPTS = ["application/json", "application/jsonlines", "application/x-recordio-protobuf", "text/csv"]
CONTENT_TYPE_LIST = (
    "csv, libsvm, parquet, recordio-protobuf, text/csv, text/libsvm, text/x-libsvm, "
    "application/x-parquet, application/x-recordio-protobuf"
)
SELECTABLE = {
    "reg:squarederror": ["predicted_score"],
    "reg:logistic": ["predicted_score"],
    "reg:gamma": ["predicted_score"],
    "reg:absoluteerror": ["predicted_score"],
    "reg:tweedie": ["predicted_score"],
    "binary:logistic": ["predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores"],
    "binary:logitraw": ["predicted_label", "labels", "raw_score", "raw_scores"],
    "binary:hinge": ["predicted_label", "labels", "raw_score", "raw_scores"],
    "multi:softmax": ["predicted_label", "labels", "raw_score", "raw_scores"],
    "multi:softprob": ["predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores"],
}
KEY_ORDER = ["predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores", "predicted_score"]


class UserError(Exception):
    pass


# --------------------------------------------------------------------------- reading bodies


def content_kind(header: str | None) -> str:
    if header is None:
        return "libsvm"
    media_type, params = cgi.parse_header(header.lower())
    if media_type in ("csv", "text/csv"):
        if params and "label_size" in params and params["label_size"] != "1":
            raise UserError(
                f"{header} is not an accepted csv ContentType. Optional parameter label_size must be equal to 1"
            )
        return "csv"
    if media_type in ("libsvm", "text/libsvm", "text/x-libsvm"):
        return "libsvm"
    if media_type in ("parquet", "application/x-parquet"):
        return "parquet"
    if media_type in ("recordio-protobuf", "application/x-recordio-protobuf"):
        return "recordio-protobuf"
    raise UserError(f"{header} is not an accepted ContentType: {CONTENT_TYPE_LIST}.")


def read_csv(text: str) -> xgb.DMatrix:
    delimiter = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
    delimiter = "," if delimiter.isalnum() else delimiter
    table = [["nan" if cell == "" else cell for cell in line.split(delimiter)] for line in text.split("\n")]
    return xgb.DMatrix(np.array(table).astype(float))


def read_libsvm(text: str) -> xgb.DMatrix:
    rows, columns, values = [], [], []
    for row_index, line in enumerate(text.split("\n")):
        for item in line.split(" "):
            if ":" in item:
                index = int(item.split(":")[0])
                value = item.split(":")[1]
                rows.append(row_index)
                columns.append(index)
                values.append(value)
    row_array = np.array(rows)
    column_array = np.array(columns).astype(int)
    if len(column_array) > 0 and column_array.min() >= 1:
        column_array = column_array - 1
    value_array = np.array(values).astype(float)
    return xgb.DMatrix(csr_matrix((value_array, (row_array, column_array))))


def read_body(payload: bytes, header: str | None) -> xgb.DMatrix:
    kind = content_kind(header)
    if kind == "csv":
        try:
            return read_csv(payload.strip().decode("utf-8"))
        except Exception as err:
            raise RuntimeError(
                f"Loading csv data failed with Exception, please ensure data is in csv format:\n {type(err)}\n {err}"
            ) from err
    if kind == "libsvm":
        try:
            return read_libsvm(payload.strip().decode("utf-8"))
        except Exception as err:
            raise RuntimeError(
                f"Loading libsvm data failed with Exception, please ensure data is in libsvm format:\n {type(err)}\n {err}"
            ) from err
    if kind == "recordio-protobuf":
        raise NotImplementedError("recordio-protobuf bodies are outside the reference")
    raise RuntimeError(f"Content-type {header} is not supported.")


# --------------------------------------------------------------------------- writing answers


def selected(predictions, keys: list[str], objective: str, num_class: str) -> list[dict]:
    if objective not in SELECTABLE:
        raise ValueError(f"Objective `{objective}` unsupported for selectable inference predictions.")
    valid = set(keys) & set(SELECTABLE[objective])
    invalid = set(keys) - set(SELECTABLE[objective])
    answers = []
    for raw in predictions:
        row = {key: _value(key, objective, raw, num_class) for key in KEY_ORDER if key in valid}
        row.update({key: np.nan for key in invalid})
        answers.append(row)
    return answers


def _value(key: str, objective: str, raw, num_class: str):
    softprob = objective == "multi:softprob"
    if key == "predicted_label":
        if objective in ("binary:hinge", "multi:softmax"):
            return raw.item()
        if objective == "binary:logistic":
            return int(raw > 0.5)
        if objective == "binary:logitraw":
            return int(raw > 0)
        return np.argmax(raw).item() if softprob else np.nan
    if key == "labels":
        if "binary:" in objective:
            return [0, 1]
        return list(range(int(num_class))) if "multi:" in objective and num_class else np.nan
    if key in ("probability", "raw_score"):
        if softprob:
            return max(raw).item()
        if key == "probability":
            return raw.item() if objective == "binary:logistic" else np.nan
        return raw.item()
    if key in ("probabilities", "raw_scores"):
        if softprob:
            return raw.tolist()
        if key == "probabilities" and objective != "binary:logistic":
            return np.nan
        return [1.0 - raw.item(), raw.item()]
    return raw.item()  # predicted_score


def encode_selected(answers: list[dict], keys: list[str], accept: str) -> str:
    if accept == "application/json":
        return json.dumps({"predictions": answers})
    if accept == "application/jsonlines":
        return "".join(json.dumps(row) + "\n" for row in answers)
    if accept == "text/csv":

        def cell(value):
            return f'"{value}"' if isinstance(value, list) else str(value)

        return "\n".join(",".join(cell(row[key]) for key in keys) for row in answers)
    raise RuntimeError(f"Cannot encode selected predictions into accept type '{accept}'.")


def encode(predictions: list, accept: str) -> str:
    if accept == "application/json":
        return json.dumps({"predictions": [{"score": p} for p in predictions]})
    if accept == "text/csv":
        stream = io.StringIO()
        np.savetxt(stream, predictions, delimiter=",", fmt="%s")
        return stream.getvalue()
    raise LookupError(f"the container's encoders have no writer for {accept}")  # Flask answers 500


# --------------------------------------------------------------------------- the app


def container_app(booster: xgb.Booster, environ: dict | None = None):
    """The container's WSGI stack (nginx's routing + the Flask app) for one booster."""
    environ = dict(environ or {})
    config = json.loads(booster.save_config())["learner"]
    objective = config["objective"]["name"]
    num_class = config["learner_model_param"].get("num_class", "")
    app = flask.Flask("reference-container")
    app.config["MAX_CONTENT_LENGTH"] = int(environ.get("MAX_CONTENT_LENGTH", "6291456"))
    default_accept = environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    output_keys = environ.get("SAGEMAKER_INFERENCE_OUTPUT")

    @app.route("/ping", methods=["GET"])
    def ping():
        return flask.Response(status=200)

    @app.route("/execution-parameters", methods=["GET"])
    def execution_parameters():
        import multiprocessing

        parameters = {
            "MaxConcurrentTransforms": multiprocessing.cpu_count(),
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": int(app.config["MAX_CONTENT_LENGTH"] / (1024**2)),
        }
        return flask.Response(response=json.dumps(parameters), status=200, mimetype="application/json")

    @app.route("/invocations", methods=["POST"])
    def invocations():
        payload = flask.request.data
        if len(payload) == 0:
            return flask.Response(response="", status=204)
        try:
            matrix = read_body(payload, flask.request.content_type)
        except (RuntimeError, UserError) as err:
            return flask.Response(response=str(err), status=415)
        try:
            predictions = booster.predict(matrix, validate_features=False)
        except Exception as err:
            return flask.Response(response=f"Unable to evaluate payload provided: {err}", status=400)
        accept, _ = cgi.parse_header(flask.request.headers.get("accept", ""))
        if not accept or accept == "*/*":
            accept = default_accept
        elif accept.lower() not in SUPPORTED_ACCEPTS:
            return flask.Response(
                response=f"Accept type {accept} is not supported. Please use supported accept types: {SUPPORTED_ACCEPTS}.",
                status=406,
            )
        else:
            accept = accept.lower()
        if output_keys is not None:
            keys = output_keys.replace(" ", "").lower().split(",")
            try:
                text = encode_selected(selected(predictions, keys, objective, num_class), keys, accept)
            except Exception as err:
                return flask.Response(response=str(err), status=500)
            return flask.Response(response=text, status=200, mimetype=accept)
        return flask.Response(response=encode(predictions.tolist(), accept), status=200, mimetype=accept)

    return NginxFront(app.wsgi_app)


class NginxFront:
    """The nginx server block in front of gunicorn: other paths never reach the app."""

    PROXIED = re.compile(r"^/(ping|invocations|execution-parameters)")

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if not self.PROXIED.match(environ.get("PATH_INFO", "")):
            start_response("404 Not Found", [("Content-Type", "application/octet-stream"), ("Content-Length", "2")])
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [b"{}"]
        return self.app(environ, start_response)


# --------------------------------------------------------------------------- what l2c changes on purpose

_XGBOOST_LOCATION = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")


def without_xgboost_trace(text: str) -> str:
    """A message as l2c words it (docs/serving.md, deliberate differences): XGBoost's timestamp and
    source location dropped, and its stack trace cut."""
    text = _XGBOOST_LOCATION.sub("", text)
    cut = text.find("\nStack trace:")
    return text if cut < 0 else text[:cut]
