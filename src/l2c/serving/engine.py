"""One loaded model answering ``/invocations`` bodies: the container's logic without HTTP.

Both faces (the container's ``/invocations`` and the Runtime API's
``/endpoints/{name}/invocations``) call :meth:`Engine.ainvoke` (or :meth:`Engine.invoke`
outside an event loop) and only differ in how they wrap its :class:`Reply`.

Concurrency: XGBoost documents ``Booster.inplace_predict`` as "safe and lock free" when it
is the only method called from several threads (Booster.inplace_predict docstring, XGBoost
3.2; DMatrix-based ``predict`` is only guaranteed for tree boosters since 1.4, and the
container loads one booster per gunicorn worker because old versions were not safe). So the
engine configures the booster once, before any request, and afterwards calls nothing but
in-place prediction (the C function behind ``inplace_predict``) on it, from any number of
threads.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xgboost as xgb
from xgboost.core import _LIB, _check_call, c_bst_ulong, make_jcargs

from l2c.artifact import LoadedModel
from l2c.serving import formats, pieces
from l2c.serving.asgi import INLINE_BODY_BYTES
from l2c.serving.formats import ContainerError

log = logging.getLogger("l2c.serving")

DEFAULT_MAX_CONTENT_LENGTH = 6 * 1024 * 1024
# From this many rows on, a request is predicted with every core (one request rarely comes
# alone, so small ones stay single-threaded).
MANY_ROWS = 8192


@dataclass(frozen=True)
class ContainerSettings:
    """The container's environment variables that change what ``/invocations`` answers."""

    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    default_accept: str = "text/csv"
    inference_output: tuple[str, ...] | None = None  # SAGEMAKER_INFERENCE_OUTPUT keys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ContainerSettings:
        environ = os.environ if environ is None else environ
        limit = int(environ.get("MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH))
        default_accept = environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
        if default_accept not in formats.WRITABLE_ACCEPTS:
            raise ValueError(
                f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT={default_accept!r}: use one of {', '.join(formats.WRITABLE_ACCEPTS)}"
            )
        output = environ.get("SAGEMAKER_INFERENCE_OUTPUT")
        return cls(
            # The 3.2 line takes MAX_CONTENT_LENGTH as it is (serve.py: int(os.getenv(...))): the
            # 20 MiB ceiling of older images was removed upstream in 2021.
            max_content_length=limit,
            default_accept=default_accept,
            inference_output=tuple(formats.selected_keys(output)) if output is not None else None,
        )


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str


NO_CONTENT = Reply(204, b"", formats.ERROR_TYPE)


@dataclass
class _Pending:
    """A parsed request waiting for its predictions."""

    rows: object
    accept: str | None
    future: object = None


class Engine:
    """A loaded booster plus the container settings it answers with.

    :meth:`invoke` answers one request synchronously (any thread). :meth:`ainvoke` is the
    servers' entry point: small requests that arrive in the same event-loop turn are
    predicted in one call, because XGBoost's fixed cost per call (about 0.1 ms here) is
    larger than the trees' work for a few rows; each row's prediction does not depend on
    the other rows in the matrix, so the answers are the same bytes. Big requests go to a
    worker thread. One engine serves one event loop, and it takes the model's booster over
    (its thread count is set here; nothing else may call it while the engine serves).
    """

    def __init__(self, model: LoadedModel, settings: ContainerSettings | None = None):
        self.model = model
        self.settings = settings or ContainerSettings()
        self.num_features = model.num_features
        # The container predicts single-threaded too; with one OpenMP team per request,
        # concurrent requests would fight over the cores and the tail latency explodes.
        self.one_thread = DensePredictor(model.booster, threads=1)
        self.all_threads = DensePredictor(model.booster.copy(), threads=os.cpu_count() or 1)
        self._waiting: list[_Pending] = []

    # ----------------------------------------------------------------- one request

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        """Answer one ``POST /invocations``; never raises, never shows a stack trace."""
        prepared = self.prepare(body, content_type, accept)
        if isinstance(prepared, Reply):
            return prepared
        return self.answer(prepared, lambda: self.predict(prepared.rows))

    def prepare(self, body: bytes, content_type: str | None, accept: str | None) -> Reply | _Pending:
        """Parse a body: the rows to predict, or the reply when there is nothing to predict."""
        if not body:
            return NO_CONTENT
        return _guarded(lambda: _Pending(self.check_width(parse_body(body, content_type)), accept))

    def answer(self, pending: _Pending, predictions) -> Reply:
        """The reply for parsed rows, given a function returning their predictions."""
        return _guarded(lambda: self.encode(predictions(), pending.accept))

    def encode(self, predictions: np.ndarray, accept: str | None) -> Reply:
        # The container's order: body errors (415), then prediction (400), then Accept (406).
        accept_type = formats.parse_accept(accept, self.settings.default_accept)
        if self.settings.inference_output is not None:
            payload = self._selected(predictions, accept_type)
        else:
            payload = formats.encode_predictions(predictions, accept_type)
        return Reply(200, payload, formats.RESPONSE_TYPES[accept_type])

    def check_width(self, rows):
        """Refuse more columns than the model has, with the error the container's DMatrix gives."""
        columns = rows.shape[1]
        if columns > self.num_features:
            raise ContainerError(
                400,
                "Unable to evaluate payload provided: Check failed: learner_model_param_.num_feature >= "
                f"p_fmat->Info().num_col_ ({self.num_features} vs. {columns}) : Number of columns does not "
                "match number of features in booster.",
            )
        return _widen(rows, self.num_features)

    def predict(self, rows, one_core: bool = False) -> np.ndarray:
        """Predictions for float32 rows (dense or CSR) of the model's width.

        ``one_core``: one thread whatever the size, for callers that run one prediction per core."""
        try:
            if not isinstance(rows, np.ndarray):
                return self.one_thread.booster.inplace_predict(rows, validate_features=False)
            predictor = self.all_threads if rows.shape[0] >= MANY_ROWS and not one_core else self.one_thread
            return predictor.predict(rows)
        except Exception as err:
            raise ContainerError(400, f"Unable to evaluate payload provided: {formats.clean_error(err)}") from None

    def _selected(self, predictions: np.ndarray, accept_type: str) -> bytes:
        keys = list(self.settings.inference_output or ())
        outputs = formats.select_outputs(predictions, keys, self.model.objective, self.model.num_classes)
        return formats.encode_selected(outputs, keys, accept_type)

    # ----------------------------------------------------------------- many requests

    async def ainvoke(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        if len(body) > INLINE_BODY_BYTES:
            return await asyncio.get_running_loop().run_in_executor(
                None, pieces.invoke, self, body, content_type, accept
            )
        prepared = self.prepare(body, content_type, accept)
        if isinstance(prepared, Reply):
            return prepared
        loop = asyncio.get_running_loop()
        prepared.future = loop.create_future()
        self._waiting.append(prepared)
        if len(self._waiting) == 1:
            # runs after the other requests already handed to the loop in this turn
            loop.call_soon(self._predict_waiting)
        return await prepared.future

    def _predict_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        dense = [p for p in batch if isinstance(p.rows, np.ndarray)]
        results = {}
        if len(dense) > 1:
            results = self._predict_together(dense)
        for pending in batch:
            if pending.future.done():  # the client went away
                continue
            together = results.get(id(pending))
            predictions = (lambda: together) if together is not None else (lambda p=pending: self.predict(p.rows))
            pending.future.set_result(self.answer(pending, predictions))

    def _predict_together(self, batch: list[_Pending]) -> dict:
        try:
            predictions = self.predict(np.concatenate([p.rows for p in batch]))
        except ContainerError:  # predicted one by one instead, so each gets its own error
            return {}
        ends = np.cumsum([p.rows.shape[0] for p in batch])
        return {id(p): part for p, part in zip(batch, np.split(predictions, ends[:-1]))}


def _guarded(work):
    """Run ``work``; a ContainerError becomes its reply, anything else a bare 500 (logged)."""
    try:
        return work()
    except ContainerError as err:
        return Reply(err.status, err.message.encode("utf-8", "replace"), formats.ERROR_TYPE)
    except Exception:  # a bug of ours: logged here, never a stack trace for the caller
        log.exception("invocation failed")
        return Reply(500, b"Internal server error", formats.ERROR_TYPE)


class DensePredictor:
    """``Booster.inplace_predict`` for float32 matrices, minus the Python wrapper's overhead.

    It calls the same C function (``XGBoosterPredictFromDense``) with the same arguments,
    prepared once instead of per call; on a small request the wrapper costs more than the
    trees. Results are copied out of XGBoost's per-thread buffer before the next call.
    """

    _ARGS = make_jcargs(
        type=0, training=False, iteration_begin=0, iteration_end=0, missing=float("nan"), strict_shape=False, cache_id=0
    )

    def __init__(self, booster: xgb.Booster, threads: int):
        booster.set_param({"nthread": threads})
        self.booster = booster
        self._handle = booster.handle

    def predict(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        interface = (
            b'{"data": [%d, true], "strides": null, "descr": [["", "<f4"]], "typestr": "<f4", "shape": [%d, %d], "version": 3}'
            % (rows.ctypes.data, rows.shape[0], rows.shape[1])
        )
        shape = ctypes.POINTER(c_bst_ulong)()
        dims = c_bst_ulong()
        values = ctypes.POINTER(ctypes.c_float)()
        _check_call(
            _LIB.XGBoosterPredictFromDense(
                self._handle, interface, self._ARGS, None, ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(values)
            )
        )
        out_shape = tuple(shape[i] for i in range(dims.value))
        return np.ctypeslib.as_array(values, shape=out_shape).copy()


def parse_body(body: bytes, content_type: str | None):
    kind = formats.content_kind(content_type)
    if kind == formats.CSV:
        return formats.parse_csv(body)
    if kind == formats.LIBSVM:
        return formats.parse_libsvm(body)
    if kind == formats.RECORDIO_PROTOBUF:
        raise ContainerError(
            415,
            "application/x-recordio-protobuf input is not supported by this server (l2c): send text/csv or text/libsvm.",
        )
    raise ContainerError(415, f"Content-type {content_type} is not supported.")


def _widen(rows, num_features: int):
    """Pad absent trailing columns as missing values: what the container's DMatrix does.

    ``inplace_predict`` insists on the exact width, ``DMatrix`` predicts a narrower matrix
    as if the absent columns were missing, and the container uses ``DMatrix``.
    """
    columns = rows.shape[1]
    if columns == num_features:
        return rows
    if isinstance(rows, np.ndarray):
        padded = np.full((rows.shape[0], num_features), np.nan, dtype=np.float32)
        padded[:, :columns] = rows
        return padded
    rows = rows.copy()
    rows.resize((rows.shape[0], num_features))
    return rows
