"""Data sets: the tutorial's two, and any CSV a user brings.

Every loader returns a :class:`Dataset` whose features are all numeric, finite-or-NaN floats with
their names kept, and whose target is checked for the task. A loader that cannot honour that
raises :class:`DataError` with one line that says what is wrong with which column; it never
drops rows or coerces values silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from l2c.config import DATA_DIR
from l2c.errors import L2CError

TASKS = ("classification", "regression")
BOSTON_CSV = DATA_DIR / "boston_house_prices.csv"


class DataError(L2CError, ValueError):
    """The data cannot be used for training as asked."""


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    features: pd.DataFrame
    target: pd.Series
    class_labels: list[str] | None
    data_sha256: str

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    @property
    def target_codes(self) -> np.ndarray:
        """The target as the model sees it: class indices for classification, floats otherwise."""
        if self.task == "classification":
            return pd.Categorical(self.target, categories=self.class_labels).codes.astype(np.int64)
        return self.target.to_numpy(dtype=np.float64)


def load_iris() -> Dataset:
    """Fisher's iris flowers, from scikit-learn's bundled copy (no download)."""
    from sklearn.datasets import load_iris as sklearn_iris

    bunch = sklearn_iris(as_frame=True)
    names = {
        "sepal length (cm)": "sepal_length",
        "sepal width (cm)": "sepal_width",
        "petal length (cm)": "petal_length",
        "petal width (cm)": "petal_width",
    }
    features = bunch.data.rename(columns=names).astype(np.float64)
    labels = [str(name) for name in bunch.target_names]
    target = pd.Series([labels[i] for i in bunch.target], name="species")
    digest = _sha256_of_frame(pd.concat([features, target], axis=1))
    return Dataset("iris", "classification", features, target, labels, digest)


def load_house_prices(path: Path = BOSTON_CSV) -> Dataset:
    """The Boston house prices (506 rows, 13 features, target MEDV in $1000s).

    The file is scikit-learn 1.1.3's copy: its first line holds the row and feature counts,
    the second the header. See src/l2c/data/README.md for why the set is shipped and its caveat.
    """
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    frame = pd.read_csv(path, skiprows=1)
    dataset = _dataset_from_frame(frame, target="MEDV", task="regression", name="house-price")
    return replace(dataset, data_sha256=_sha256_of_file(path))


def load_csv(path: Path | str, target: str, task: str, name: str | None = None) -> Dataset:
    """Any CSV with a header row, one target column and numeric feature columns."""
    path = Path(path)
    if task not in TASKS:
        raise DataError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    dataset = _dataset_from_frame(frame, target=target, task=task, name=name or path.stem, source=path)
    return replace(dataset, data_sha256=_sha256_of_file(path))


def _dataset_from_frame(frame: pd.DataFrame, target: str, task: str, name: str, source: Path | None = None) -> Dataset:
    where = f"{source}: " if source else ""
    if frame.empty:
        raise DataError(f"{where}the file has a header but no data rows")
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:20]))
        raise DataError(f"{where}no target column {target!r}; the columns are: {columns}")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError(f"{where}there are no feature columns besides the target {target!r}")
    features = _numeric_features(features, where)
    labels, target_series = _checked_target(frame[target], task, where)
    return Dataset(name, task, features, target_series, labels, _sha256_of_frame(frame))


def _numeric_features(features: pd.DataFrame, where: str) -> pd.DataFrame:
    for column in features.columns:
        values = pd.to_numeric(features[column], errors="coerce")
        bad = values.isna() & features[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{where}feature column {column!r} is not numeric "
                f"(row {row + 1}: {features[column].iloc[row]!r}); encode it as numbers first"
            )
        if np.isinf(values.to_numpy(dtype=np.float64)).any():
            raise DataError(f"{where}feature column {column!r} holds an infinite value")
    return features.apply(pd.to_numeric).astype(np.float64)


def _checked_target(target: pd.Series, task: str, where: str) -> tuple[list[str] | None, pd.Series]:
    missing = target.isna()
    if missing.any():
        raise DataError(
            f"{where}the target column {target.name!r} is empty in {int(missing.sum())} row(s) "
            f"(first at row {int(np.flatnonzero(missing.to_numpy())[0]) + 1})"
        )
    if task == "regression":
        values = pd.to_numeric(target, errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(
                f"{where}the regression target {target.name!r} is not numeric (row {row + 1}: {target.iloc[row]!r})"
            )
        if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
            raise DataError(f"{where}the regression target {target.name!r} holds an infinite value")
        return None, values.astype(np.float64)
    labels = sorted(target.astype(str).unique())
    if len(labels) < 2:
        raise DataError(
            f"{where}the target column {target.name!r} has a single class ({labels[0]!r}); "
            "a classifier needs at least two"
        )
    return labels, target.astype(str)


def _sha256_of_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _sha256_of_frame(frame: pd.DataFrame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


BUILT_IN = {"iris": load_iris, "house-price": load_house_prices}


def load_built_in(name: str) -> Dataset:
    try:
        return BUILT_IN[name]()
    except KeyError:
        raise DataError(f"unknown data set {name!r}; built-in ones are {', '.join(BUILT_IN)}") from None
