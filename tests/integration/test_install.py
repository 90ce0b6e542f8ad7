"""l2c installed as a user installs it, into fresh virtualenvs.

- `pip install .` (not editable) is enough: `l2c train iris` and `l2c demo` then work from any
  folder, with the IAM templates, the Lambda handler, the Postman files and the Boston CSV all
  read from the installed package, never from the repository.
- The SageMaker notebook install of docs/sagemaker-notebook.md (its cell 3, taken from the doc)
  gives a kernel whose Python imports l2c, and leaves the calling kernel's `sagemaker` package
  as it was.

Slow by nature (each test installs a whole environment: minutes on a shared 2-core machine), so
every step has its own bound."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

# The demo starts a cloud of its own, in the installed l2c's process: the session's must not leak in.
pytestmark = pytest.mark.own_cloud

INSTALL_TIMEOUT_S = 1200
TRAIN_TIMEOUT_S = 300
DEMO_TIMEOUT_S = 420
# What setuptools reads to build the wheel; copied so the build's build/ and *.egg-info land in
# tmp_path, not in the working tree another run may be building in at the same time.
BUILD_INPUTS = ("pyproject.toml", "README.md", "src")


SAGEMAKER_DOC = REPO / "docs" / "sagemaker-notebook.md"
# What the stand-in for a preinstalled SageMaker kernel holds where SDK v2 keeps its package.
SDK_V2_STAND_IN = "# stands in for the SageMaker Python SDK v2\nV2 = True\n"


def clean_env(**extra: str) -> dict[str, str]:
    """This shell's variables minus the ones that would point the new install at the repository
    (PYTHONPATH) or at the session's local cloud (AWS_*, L2C_*)."""
    drop = ("AWS_", "L2C_", "PYTHONPATH", "VIRTUAL_ENV")
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)} | {"COLUMNS": "200"} | extra


def run(
    command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command[:3]} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def pins_as_constraints(folder: Path) -> Path:
    """requirements.txt as a pip constraints file: pip refuses extras there (``moto[server]``),
    and the extra's own packages are declared by pyproject.toml's dependencies anyway."""
    lines = [re.sub(r"\[[^\]]*\]", "", line) for line in (REPO / "requirements.txt").read_text().splitlines()]
    path = folder / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def source_copy(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, folder / name)
    return folder


def test_a_non_editable_install_trains_and_runs_the_demo_from_another_folder(tmp_path):
    venv, work = tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    source = source_copy(tmp_path / "source")
    timings = {}

    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    python, l2c = venv / "bin" / "python", venv / "bin" / "l2c"
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "-c",
            str(pins_as_constraints(tmp_path)),
            str(source),
        ],
        tmp_path,
        INSTALL_TIMEOUT_S,
    )
    timings["install"] = time.monotonic() - started

    # The package and its resource folders come from the new environment's site-packages.
    where = run(
        [
            str(python),
            "-c",
            "from l2c import config; print(config.PACKAGE_DIR); "
            "print(all(d.is_dir() for d in (config.IAM_DIR, config.LAMBDA_DIR, config.POSTMAN_DIR, config.DATA_DIR)))",
        ],
        work,
        120,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where
    assert where[1] == "True", "a resource folder is missing from the installed package"

    started = time.monotonic()
    trained = run([str(l2c), "train", "iris"], work, TRAIN_TIMEOUT_S)
    timings["train"] = time.monotonic() - started
    assert "saved and checked models/iris/" in trained.stdout
    assert (work / "models" / "iris" / "model.tar.gz").is_file()

    started = time.monotonic()
    demo = run([str(l2c), "demo"], work, DEMO_TIMEOUT_S)
    timings["demo"] = time.monotonic() - started
    assert "predicted species setosa" in demo.stdout
    assert re.search(r"predicted median value \d+\.\d+ \(in \$1000s\)", demo.stdout), demo.stdout[-3000:]
    assert demo.stdout.rstrip().endswith("the local cloud is stopped")
    # The demo trained the house-price model from the CSV shipped inside the package.
    assert (work / "models" / "house-price" / "model.tar.gz").is_file()
    print("install/train/demo seconds:", {step: round(seconds) for step, seconds in timings.items()})


def documented_install_cell() -> str:
    """Cell 3 of docs/sagemaker-notebook.md: the bash block that creates the venv, without its
    ``%%bash`` magic line."""
    blocks = re.findall(r"```bash\n(.*?)```", SAGEMAKER_DOC.read_text(), flags=re.DOTALL)
    cells = [block for block in blocks if " -m venv " in block]
    assert len(cells) == 1, f"expected one venv cell in {SAGEMAKER_DOC.name}, found {len(cells)}"
    lines = cells[0].splitlines()
    assert lines[0] == "%%bash", "the cell must be a %%bash cell, as the notebook runs it"
    return "\n".join(lines[1:]) + "\n"


def preinstalled_kernel(folder: Path) -> tuple[Path, Path]:
    """A stand-in for a SageMaker kernel with SDK v2: a venv whose ``sagemaker/__init__.py`` is
    ours; (its bin folder, that file)."""
    run([sys.executable, "-m", "venv", "--without-pip", str(folder)], folder.parent, 120)
    site = Path(
        run(
            [str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            folder.parent,
            60,
        ).stdout.strip()
    )
    init = site / "sagemaker" / "__init__.py"
    init.parent.mkdir(parents=True)
    init.write_text(SDK_V2_STAND_IN)
    return folder / "bin", init


def test_the_documented_sagemaker_notebook_install_gets_its_own_kernel(tmp_path):
    home = tmp_path / "home"
    sagemaker_dir = home / "SageMaker"
    # Cells 1 and 2 (SageMaker-only): the repository and a Python 3.11 where the doc puts them.
    source = source_copy(sagemaker_dir / "l2c")
    shutil.copy2(REPO / "requirements.txt", source / "requirements.txt")
    (sagemaker_dir / "l2c-python" / "bin").mkdir(parents=True)
    (sagemaker_dir / "l2c-python" / "bin" / "python").symlink_to(sys._base_executable)
    kernel_bin, sdk_init = preinstalled_kernel(tmp_path / "preinstalled-kernel")
    before = hashlib.sha256(sdk_init.read_bytes()).hexdigest()

    # The cell runs as a %%bash cell of the preinstalled kernel would: that kernel first on PATH,
    # so a bare `pip` or `python` in the cell would land in it.
    # Jupyter's and XDG's folder variables would move the `--user` kernel out of the temporary home.
    env = {
        key: value
        for key, value in clean_env(HOME=str(home), PATH=f"{kernel_bin}{os.pathsep}{os.environ['PATH']}").items()
        if not key.startswith(("JUPYTER_", "XDG_"))
    }
    started = time.monotonic()
    run(["bash", "-c", documented_install_cell()], tmp_path, INSTALL_TIMEOUT_S, env)
    print(f"documented notebook install: {time.monotonic() - started:.0f} s")

    spec = json.loads((home / ".local" / "share" / "jupyter" / "kernels" / "l2c" / "kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (l2c)"
    kernel_python = Path(spec["argv"][0])
    venv = sagemaker_dir / "l2c-venv"
    assert kernel_python.is_relative_to(venv), spec["argv"]
    answer = run(
        [
            str(kernel_python),
            "-c",
            "import sys, l2c.config, sagemaker.core; "
            "print(sys.prefix); print(l2c.config.PACKAGE_DIR); print(l2c.config.IAM_DIR.is_dir())",
        ],
        tmp_path,
        120,
        env,
    ).stdout.split()
    assert Path(answer[0]) == venv and Path(answer[1]).is_relative_to(venv) and answer[2] == "True", answer

    # The preinstalled kernel: its sagemaker package is byte for byte what it was, and still imports.
    assert hashlib.sha256(sdk_init.read_bytes()).hexdigest() == before
    still = run([str(kernel_bin / "python"), "-c", "import sagemaker; print(sagemaker.V2)"], tmp_path, 60, env)
    assert still.stdout.strip() == "True"
