"""`l2c import`: bring a model trained elsewhere (a notebook's joblib dump, a native booster, or a
SageMaker ``model.tar.gz``) into a model folder that `l2c check` and `l2c deploy` take unchanged.

The file's format is read from its bytes, never from its name. Whatever comes in leaves as the one
thing SageMaker's built-in XGBoost container should load: a single native UBJSON booster named
``xgboost-model`` (see artifact.py for why a pickle is never uploaded).
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import json
import lzma
import math
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xgboost as xgb

from l2c import artifact, training, versions
from l2c.artifact import ArtifactError
from l2c.checks import PREDICTION_TOLERANCE, check_model_dir, container_outputs

TASKS = ("classification", "regression")
# What the prediction page and the Lambda function can read: class probabilities or a value.
CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob")
MAX_SAMPLE_ROWS = 100_000  # rows of --sample-csv compared between the file's model and the artifact
# Scikit-learn models are the SageMaker scikit-learn container's (sagemaker-python-sdk,
# doc/frameworks/sklearn/using_sklearn.rst); the XGBoost one loads boosters only.
HOSTS = (
    "the built-in XGBoost container hosts XGBoost boosters only (XGBClassifier, XGBRegressor, a Booster, "
    "or a native .json/.ubj model)"
)


class ImportRefused(ArtifactError):
    """The file cannot become a model folder the container serves; the message says what to do."""


@dataclass
class Source:
    """What was read from the file: the booster, and the scikit-learn wrapper if there was one."""

    format: str
    booster: xgb.Booster
    estimator: xgb.XGBModel | None = None
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def import_model(
    path: Path | str,
    name: str,
    models_dir: Path | str = Path("models"),
    *,
    trust_pickle: bool = False,
    feature_names: Sequence[str] | None = None,
    class_labels: Sequence[str] | None = None,
    task: str | None = None,
    sample_csv: Path | str | None = None,
    overwrite: bool = False,
    on_note: Callable[[str], None] = print,
) -> Path:
    """Write ``models_dir/name`` from a model file, check it as `l2c check` does; return the folder.

    Pickles (joblib dumps) run code when loaded: they are refused unless ``trust_pickle``.
    Every refusal is an :class:`ImportRefused` with a one-line reason and its fix.
    """
    _check_name(name)
    path = Path(path)
    target = Path(models_dir) / name
    if (target / "model_card.json").exists() and not overwrite:
        raise ImportRefused(f"{target} already holds a model; choose another --name or pass --overwrite")
    source = read_model_file(path, trust_pickle=trust_pickle, on_note=on_note)
    for note in source.notes:
        on_note(note)
    model = _describe(source.booster)
    task = _task(model, task)
    names = _feature_names(source.booster, model, feature_names, on_note)
    labels = _class_labels(model, task, source.classes, class_labels)
    samples = _samples(sample_csv, model.num_features, on_note)
    predictions = _reference(source, samples)
    _compare_rows(source, samples)
    card_fields = {
        "name": name,
        "task": task,
        "objective": model.objective,
        "feature_names": names,
        "feature_ranges": _ranges(names, samples if sample_csv else None),
        "class_labels": labels,
        "target": {"name": None},
        "params": _params(source.estimator),
        "metrics": {},
        "data_sha256": None,
        "imported_from": {
            "file": path.name,
            "format": source.format,
            "sha256": artifact.sha256_bytes(path.read_bytes()),
        },
    }
    return _write(
        target, source, task, samples[: training.SAMPLE_ROWS], predictions[: training.SAMPLE_ROWS], card_fields
    )


# --------------------------------------------------------------------------- reading the file


def read_model_file(path: Path, *, trust_pickle: bool = False, on_note: Callable[[str], None] = print) -> Source:
    """The booster in a joblib/pickle dump, a native JSON/UBJSON model or a model.tar.gz."""
    if not path.is_file():
        raise ImportRefused(f"no file at {path}")
    size = path.stat().st_size
    if size > artifact.MAX_UNPACKED_BYTES:
        raise ImportRefused(f"{path} is {size} bytes, over the {artifact.MAX_UNPACKED_BYTES}-byte limit")
    data = path.read_bytes()
    kind = detect_format(data)
    if kind == "pickle":
        return _from_pickle(path, trust_pickle, on_note)
    if kind == "tarball":
        booster_file = artifact.read_tarball_member(data)
        return Source("model.tar.gz", _native_booster(booster_file, path))
    return Source(kind, _native_booster(data, path))


def detect_format(data: bytes) -> str:
    """ "pickle", "json", "ubj" or "tarball", from the bytes; anything else is refused."""
    if data.startswith(b"\x80"):  # PROTO opcode: pickle protocol 2 and later, joblib dumps included
        return "pickle"
    if data.startswith(b"{"):
        return "json" if data[:2] == b'{"' else "ubj"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tarball"
    head = _decompressed_head(data)
    if head is not None:
        if head.startswith(b"\x80"):  # joblib.dump(..., compress=...) compresses the pickle itself
            return "pickle"
        if len(head) > 262 and head[257:262] == b"ustar":
            return "tarball"
        raise ImportRefused("the file is compressed but holds neither a tar archive nor a pickle: not a model")
    if data.startswith(b"PK\x03\x04"):
        raise ImportRefused(
            "the file is a ZIP archive (a Keras, PyTorch or ONNX-in-zip file?), not an XGBoost model; " + HOSTS
        )
    raise ImportRefused(
        "the file is not a model: expected a joblib/pickle dump of an XGBoost estimator, a native XGBoost "
        ".json/.ubj model, or a model.tar.gz"
    )


def _decompressed_head(data: bytes, size: int = 1024) -> bytes | None:
    """The first bytes of a gzip, zlib, bzip2 or xz stream (joblib's compressors), else None."""
    try:
        if data.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=io.BytesIO(data)).read(size)
        if data.startswith(b"BZh"):
            return bz2.BZ2File(io.BytesIO(data)).read(size)
        if data.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMAFile(io.BytesIO(data)).read(size)
        if data[:1] == b"\x78" and int.from_bytes(data[:2], "big") % 31 == 0:  # zlib header (RFC 1950)
            return zlib.decompressobj().decompress(data[: 64 * 1024], size)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        raise ImportRefused("the file looks compressed but cannot be decompressed: not a model") from None
    return None


def _native_booster(data: bytes, path: Path) -> xgb.Booster:
    _refuse_other_version(artifact.saved_version(data))
    return artifact.load_booster_bytes(data).booster


def _refuse_other_version(version: tuple[int, ...]) -> None:
    if versions.major_minor(version) != versions.major_minor(versions.CONTAINER_XGBOOST_VERSION):
        raise ImportRefused(
            f"the model was saved by XGBoost {'.'.join(map(str, version))}, but the SageMaker XGBoost "
            f"{versions.CONTAINER_IMAGE_VERSION} container runs {versions.CONTAINER_XGBOOST_VERSION}; "
            f"retrain/resave with xgboost=={versions.CONTAINER_XGBOOST_VERSION}"
        )


def _from_pickle(path: Path, trust_pickle: bool, on_note: Callable[[str], None]) -> Source:
    if not trust_pickle:
        raise ImportRefused(
            f"{path} is a pickle (a joblib dump): loading it runs whatever code it holds, so it is refused; "
            "pass --trust-pickle (trust_pickle=True) for a file you made yourself, or import the native booster "
            "(model.get_booster().save_model('model.ubj'))"
        )
    on_note(f"warning: --trust-pickle: unpickling {path} runs any code it holds; only import files you made or trust")
    import joblib

    with _recording_booster_versions():
        try:
            loaded = joblib.load(path)
        except ImportRefused:
            raise
        except Exception as err:  # whatever the pickle's code or a missing module raises: one line
            raise ImportRefused(f"{path} cannot be unpickled: {artifact.one_line(err)}") from None
    return _from_object(loaded)


@contextlib.contextmanager
def _recording_booster_versions():
    """Read the XGBoost version inside each pickled booster before it is rebuilt: once loaded, the
    booster would report the installed version, not the one that saved it."""
    seen: list[tuple[int, int, int]] = []
    original = xgb.Booster.__setstate__

    def setstate(self, state):
        handle = state.get("handle") if isinstance(state, dict) else None
        if handle is not None:
            try:
                found = artifact.saved_version(bytes(handle))
            except ArtifactError:
                found = None
            if found is not None:
                seen.append(found)
                _refuse_other_version(found)
        original(self, state)

    xgb.Booster.__setstate__ = setstate
    try:
        yield seen
    finally:
        xgb.Booster.__setstate__ = original


def _from_object(loaded) -> Source:
    if isinstance(loaded, xgb.Booster):
        return Source("pickle", loaded)
    if _is_pipeline(loaded):
        raise ImportRefused(
            f"the file holds a scikit-learn Pipeline ({_steps(loaded)}); {HOSTS}, not preprocessing steps: "
            "for a pipeline use the SageMaker scikit-learn container, or import the pipeline's fitted "
            "XGBoost step and apply the preprocessing before calling the API"
        )
    if not isinstance(loaded, xgb.XGBModel):
        kind = f"{type(loaded).__module__}.{type(loaded).__qualname__}"
        raise ImportRefused(
            f"the file holds a {kind}; {HOSTS}: for a scikit-learn model use the SageMaker scikit-learn container"
        )
    try:
        booster = loaded.get_booster()
    except Exception as err:  # an estimator that was never fitted
        raise ImportRefused(
            f"the estimator has no booster ({artifact.one_line(err)}): fit it before dumping it"
        ) from None
    classes = getattr(loaded, "classes_", None)
    return Source(
        "joblib",
        booster,
        estimator=loaded,
        classes=[str(c) for c in np.asarray(classes).tolist()] if classes is not None else None,
    )


def _is_pipeline(loaded) -> bool:
    try:
        from sklearn.pipeline import Pipeline
    except ImportError:
        return False
    return isinstance(loaded, Pipeline)


def _steps(pipeline) -> str:
    return ", ".join(f"{step} {type(est).__name__}" for step, est in pipeline.steps)


# --------------------------------------------------------------------------- what the model is


@dataclass(frozen=True)
class _Model:
    objective: str
    num_features: int
    num_classes: int


def _describe(booster: xgb.Booster) -> _Model:
    learner = json.loads(booster.save_config())["learner"]
    objective = str(learner["objective"]["name"])
    num_class = int(learner["learner_model_param"].get("num_class", "0"))
    # The container would serve multi:softmax (serve_utils.py in sagemaker-xgboost-container
    # lists it among its objectives; a row scores as its argmax class index), but the Lambda
    # function reads one number per row as a value, or as P(class 1) with two labels
    # (src/l2c/lambda/lambda_function.py, describe): an index would pass for a probability.
    if objective == "multi:softmax":
        raise ImportRefused(
            "the classifier's objective is multi:softmax: it returns class indices, not probabilities, and the "
            "API's function and page need per-class probabilities; retrain with objective='multi:softprob' "
            "(the same trees, scored as probabilities)"
        )
    if not (objective in CLASSIFIER_OBJECTIVES or objective.startswith("reg:")):
        raise ImportRefused(
            f"the booster's objective is {objective}; l2c serves classifiers ({', '.join(CLASSIFIER_OBJECTIVES)}) "
            "and regressors (reg:*)"
        )
    num_classes = num_class if objective == "multi:softprob" else 2 if objective == "binary:logistic" else 0
    return _Model(objective, booster.num_features(), num_classes)


def _task(model: _Model, asked: str | None) -> str:
    found = "classification" if model.num_classes else "regression"
    if asked is not None and asked not in TASKS:
        raise ImportRefused(f"--task is {asked!r}; use classification or regression")
    if asked is not None and asked != found:
        raise ImportRefused(
            f"--task {asked} does not fit the booster: its objective {model.objective} makes it {found}"
        )
    return found


def _feature_names(booster, model: _Model, given, on_note) -> list[str]:
    if given:
        names = [str(n).strip() for n in given]
        if len(names) != model.num_features:
            raise ImportRefused(
                f"--feature-names lists {len(names)} names; the booster takes {model.num_features} features"
            )
        if len(set(names)) != len(names) or not all(names):
            raise ImportRefused("--feature-names must be distinct and non-empty")
        return names
    if booster.feature_names:
        return list(booster.feature_names)
    names = [f"f{i}" for i in range(model.num_features)]
    on_note(
        f"note: the model carries no feature names; using f0..f{model.num_features - 1} "
        "(give --feature-names a,b,c to label the API's fields and the page)"
    )
    return names


def _class_labels(model: _Model, task: str, classes, given) -> list[str] | None:
    if task == "regression":
        if given:
            raise ImportRefused("--class-labels is for a classifier; this booster is a regressor")
        return None
    labels = [str(c).strip() for c in given] if given else classes or [str(i) for i in range(model.num_classes)]
    if len(labels) != model.num_classes:
        raise ImportRefused(f"{len(labels)} class labels given; the booster scores {model.num_classes} classes")
    if len(set(labels)) != len(labels) or not all(labels):
        raise ImportRefused("class labels must be distinct and non-empty")
    return labels


# --------------------------------------------------------------------------- sample rows


def _samples(sample_csv, width: int, on_note) -> np.ndarray:
    if sample_csv is None:
        on_note(
            f"note: no --sample-csv: the sample file holds one row of {width} zeros; "
            "give --sample-csv FILE to check predictions on real rows"
        )
        return np.zeros((1, width))
    rows = _read_rows(Path(sample_csv))
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ImportRefused(f"{sample_csv}: row {number} has {len(row)} values; the model takes {width}")
    if not rows:
        raise ImportRefused(f"{sample_csv} holds no rows")
    return np.array(rows, dtype=np.float64)


def _read_rows(path: Path) -> list[list[float]]:
    """Numbers, comma-separated; a header row is skipped; an empty cell is a missing value."""
    try:
        with path.open(newline="") as handle:
            lines = [line for line in csv.reader(handle) if line]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ImportRefused(f"{path} cannot be read as CSV: {artifact.one_line(err)}") from None
    rows = []
    for number, line in enumerate(lines[: MAX_SAMPLE_ROWS + 1], start=1):
        try:
            rows.append([float(cell) if cell.strip() else math.nan for cell in line])
        except ValueError:
            if number == 1:
                continue  # a header
            raise ImportRefused(f"{path}: row {number} holds a value that is not a number") from None
    return rows[:MAX_SAMPLE_ROWS]


def _reference(source: Source, rows: np.ndarray) -> np.ndarray:
    """What the model read from the file predicts, in the container's output shape."""
    if source.estimator is not None:
        return np.asarray(container_outputs(source.estimator, rows))
    return source.booster.predict(xgb.DMatrix(np.asarray(rows, dtype=np.float32)), validate_features=False)


def _compare_rows(source: Source, rows: np.ndarray) -> None:
    """Every sample row (the card keeps only the first few): the saved booster must predict as the file's model."""
    saved = artifact.load_booster_bytes(artifact.booster_bytes(source.booster))
    got = artifact.predict_like_container(saved, rows)
    want = _reference(source, rows)
    difference = float(np.max(np.abs(got - want))) if got.size else 0.0
    if got.shape != want.shape or not difference <= PREDICTION_TOLERANCE:
        raise ImportRefused(
            f"the native booster predicts differently from the file's model (max |diff| {difference:.3g})"
        )


def _ranges(names: list[str], rows: np.ndarray | None) -> dict[str, list[float] | None]:
    ranges: dict[str, list[float] | None] = {}
    for index, name in enumerate(names):
        column = rows[:, index] if rows is not None else np.array([])
        finite = column[np.isfinite(column)]
        ranges[name] = [float(finite.min()), float(finite.max())] if finite.size else None
    return ranges


def _params(estimator) -> dict:
    if estimator is None:
        return {}
    return {
        key: value
        for key, value in estimator.get_params().items()
        if isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))
    }


# --------------------------------------------------------------------------- writing


def _check_name(name: str) -> None:
    from l2c.cloud.names import check_stack_name
    from l2c.cloud.session import CloudError

    try:
        check_stack_name(name)
    except CloudError as err:
        raise ImportRefused(str(err)) from None


def _write(target: Path, source: Source, task: str, samples, predictions, card_fields: dict) -> Path:
    """Written next to the target and checked there, then moved in: a refused import leaves nothing."""
    staging = target.with_name(f".{target.name}.importing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        training.write_model_files(
            staging,
            source.booster,
            task,
            samples,
            lambda sha: {**card_fields, **training.artifact_fields(task, sha, samples, predictions)},
        )
        check_model_dir(staging, estimator=source.estimator)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
