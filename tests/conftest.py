"""Fixtures shared by every test layer: models trained once per session into a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> dict[str, Path]:
    """Both tutorial models, trained with the package's defaults, as {name: model folder}."""
    from l2c.training import train_and_save

    root = tmp_path_factory.mktemp("models")
    return {name: train_and_save(name, models_dir=root) for name in ("iris", "house-price")}
