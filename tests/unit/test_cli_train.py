"""`l2c train` and `l2c check` as a user runs them: real processes, exit codes, one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

from l2c import artifact


def l2c(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "l2c.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_train_own_csv_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = np.where(x[:, 0] + x[:, 1] > 0, "good", "bad")
    lines = ["f1,f2,f3,quality"] + [f"{a:.4f},{b:.4f},{c:.4f},{t}" for (a, b, c), t in zip(x, y)]
    (tmp_path / "wine.csv").write_text("\n".join(lines) + "\n")
    result = l2c(
        "train", "--csv", "wine.csv", "--target", "quality", "--task", "classification", "--name", "wine", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "saved and checked" in result.stdout
    model = artifact.load_artifact(tmp_path / "models" / "wine")
    assert model.objective == "binary:logistic" and model.num_features == 3
    check = l2c("check", "models/wine", cwd=tmp_path)
    assert check.returncode == 0 and "container will load" in check.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--csv", "missing.csv", "--target", "y", "--task", "regression"], "file not found"),
        (["train", "--csv", "bad.csv", "--target", "y", "--task", "regression"], "not numeric"),
        (["train", "--csv", "bad.csv", "--target", "price", "--task", "regression"], "no target column"),
        (["train", "--csv", "bad.csv", "--target", "y"], "--csv needs --target"),
        (["train", "penguins"], "unknown data set 'penguins'"),
        (["check", "nowhere"], "no model_card.json"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(tmp_path, args, message):
    (tmp_path / "bad.csv").write_text("a,y\nx,1\n2,2\n")
    result = l2c(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_command_has_help(tmp_path):
    for command in (["--help"], ["train", "--help"], ["check", "--help"]):
        result = l2c(*command, cwd=tmp_path)
        assert result.returncode == 0 and "Usage" in result.stdout
