"""The plots a data scientist expects after training, for the notebooks (matplotlib)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from l2c.training import TrainedModel


def confusion_matrix(trained: TrainedModel, ax=None):
    """Test-split confusion matrix with the class names on both axes."""
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    ConfusionMatrixDisplay.from_predictions(
        trained.y_test,
        trained.test_predictions,
        display_labels=trained.dataset.class_labels,
        colorbar=False,
        ax=ax,
    )
    ax.set_title(f"{trained.dataset.name}: test split")
    return ax


def feature_importance(trained: TrainedModel, ax=None):
    """Total gain per feature: how much each feature's splits reduced the loss."""
    gains = trained.booster.get_score(importance_type="total_gain")
    names = trained.dataset.feature_names
    values = np.array([gains.get(f"f{i}", 0.0) for i in range(len(names))])
    order = np.argsort(values)
    ax = ax or plt.subplots(figsize=(5, 0.3 * len(names) + 1))[1]
    ax.barh(np.array(names)[order], values[order] / values.sum())
    ax.set_xlabel("share of total gain")
    ax.set_title(f"{trained.dataset.name}: feature importance")
    return ax


def predicted_vs_actual(trained: TrainedModel, ax=None):
    """Test-split predictions against the truth; points on the diagonal are exact."""
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    ax.scatter(trained.y_test, trained.test_predictions, s=14, alpha=0.7)
    low = float(min(trained.y_test.min(), trained.test_predictions.min()))
    high = float(max(trained.y_test.max(), trained.test_predictions.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(f"{trained.dataset.name}: test split")
    return ax
