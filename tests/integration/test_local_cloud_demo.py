"""`l2c demo` (what `make demo` runs), as a user runs it: a fresh process, its own local cloud."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def test_the_demo_prints_a_species_and_a_price_and_leaves_nothing(trained_models, tmp_path):
    models_dir = trained_models["iris"].parent
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "L2C_"))}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "l2c.cli", "demo", "--models-dir", str(models_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    output = result.stdout
    assert "predicted species setosa" in output
    assert "predicted median value" in output
    assert "verified: nothing of any stack is left" in output
    assert output.rstrip().endswith("the local cloud is stopped")
    assert output.index("nothing deployed") > output.index("destroy")
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"
    assert not (tmp_path / ".l2c").exists(), "the demo wrote into the folder it was run from"
