"""`l2c check`: prove an artifact is what the SageMaker container will load, and that it predicts
what the model in memory predicted.

The tarball is read exactly as the container reads ``/opt/ml/model`` (every non-dot file is a
model), then the booster is reloaded on its own and run on the sample rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l2c import artifact, versions
from l2c.artifact import ArtifactError

# float32 arithmetic inside XGBoost: a reloaded booster must agree to the last few ulps.
PREDICTION_TOLERANCE = 1e-6


@dataclass(frozen=True)
class CheckReport:
    model_dir: Path
    objective: str
    num_features: int
    num_classes: int
    xgboost_version: str
    sample_rows: int
    max_abs_difference: float

    def lines(self) -> list[str]:
        return [
            f"artifact   {self.model_dir / artifact.TARBALL_NAME}: one native booster '{artifact.BOOSTER_FILENAME}'",
            f"booster    objective {self.objective}, {self.num_features} features"
            + (f", {self.num_classes} classes" if self.num_classes else ""),
            f"version    saved by XGBoost {self.xgboost_version} (container {versions.CONTAINER_XGBOOST_VERSION})",
            f"samples    {self.sample_rows} rows reproduce the trained model (max |diff| {self.max_abs_difference:.2e})",
        ]


def read_card(model_dir: Path) -> dict:
    path = Path(model_dir) / "model_card.json"
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: no model_card.json (train the model with l2c train first)")
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # a hand-edited or truncated card
        raise ArtifactError(f"{path}: not readable JSON ({err})") from None


def check_model_dir(model_dir: Path | str, estimator=None) -> CheckReport:
    """Refuse what the container would mis-load; compare reloaded predictions with the trained ones.

    ``estimator`` is the in-memory model right after training; without it the predictions the
    card recorded at training time are the reference.
    """
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    tar_path = model_dir / artifact.TARBALL_NAME
    if not tar_path.is_file():
        raise ArtifactError(f"{model_dir}: no {artifact.TARBALL_NAME}")
    booster_file = artifact.read_tarball_member(tar_path.read_bytes())
    if artifact.sha256_bytes(booster_file) != card["booster_sha256"]:
        raise ArtifactError(f"{tar_path}: the booster differs from the one the model card describes")
    model = artifact.load_booster_bytes(booster_file)
    _check_shape(model, card)
    rows = np.loadtxt(model_dir / card["sample_file"], delimiter=",", ndmin=2)
    reloaded = artifact.predict_like_container(model, rows)
    reference = _reference_predictions(card, rows, estimator)
    difference = float(np.max(np.abs(reloaded - reference))) if reloaded.size else 0.0
    if reloaded.shape != reference.shape or difference > PREDICTION_TOLERANCE:
        raise ArtifactError(
            f"{tar_path}: the reloaded booster predicts differently from the trained model "
            f"(max |diff| {difference:.3g})"
        )
    return CheckReport(
        model_dir=model_dir,
        objective=model.objective,
        num_features=model.num_features,
        num_classes=model.num_classes,
        xgboost_version=".".join(map(str, model.saved_with_version)),
        sample_rows=len(rows),
        max_abs_difference=difference,
    )


def _check_shape(model: artifact.LoadedModel, card: dict) -> None:
    expected = len(card["feature_names"])
    if model.num_features != expected:
        raise ArtifactError(f"the booster takes {model.num_features} features, the model card lists {expected}")
    if card["task"] == "classification" and not model.is_classifier:
        raise ArtifactError(f"the card says classification but the booster's objective is {model.objective}")
    if card["task"] == "regression" and model.is_classifier:
        raise ArtifactError(f"the card says regression but the booster's objective is {model.objective}")


def _reference_predictions(card: dict, rows: np.ndarray, estimator) -> np.ndarray:
    if estimator is None:
        return np.asarray(card["sample_predictions"], dtype=np.float64)
    return container_outputs(estimator, rows)


def container_outputs(estimator, rows: np.ndarray) -> np.ndarray:
    """What the container returns for rows, computed by the scikit-learn wrapper in memory:
    per-class probabilities (multi:softprob), P(class 1) (binary:logistic), or the value."""
    if not hasattr(estimator, "predict_proba"):
        return estimator.predict(rows)
    probabilities = estimator.predict_proba(rows)
    return probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities
