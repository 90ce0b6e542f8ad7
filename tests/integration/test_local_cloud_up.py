"""`l2c up` as a user runs it: both tutorial models deployed at once, answering, then Ctrl-C.

A real `l2c up` process on free ports, with the session's trained models: it must say which
stack each line is about, call each API once before it says it is serving, and the APIs must
answer a client afterwards; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx

from l2c.local.ports import free_ports
from l2c.local.tutorial import TUTORIAL_BODIES

START_TIMEOUT_S = 180


def test_up_deploys_both_models_at_once_and_serves_them(trained_models, tmp_path):
    models_dir = trained_models["iris"].parent
    control_plane, runtime, api = (str(port) for port in free_ports(3))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "L2C_"))}
    env.update({"L2C_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "220", "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "l2c.cli",
            "up",
            "--control-plane-port",
            control_plane,
            "--runtime-port",
            runtime,
            "--api-port",
            api,
            "--models-dir",
            str(models_dir),
        ],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any("serving; Ctrl-C" in line for line in list(lines)):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(0.2)
        output = "".join(lines)
        for name in ("iris", "house-price"):
            assert re.search(rf"✓ \[{name}\] endpoint l2c-{name} InService", output), output
            assert re.search(rf"✓ \[{name}\] Lambda function l2c-{name} \(created\)", output), output
        assert re.search(r"✓ \[iris\] POST \S+/irisprediction -> predicted species setosa", output), output
        assert re.search(r"✓ \[house-price\] POST \S+/housepriceprediction -> predicted median value \d", output), (
            output
        )
        assert "Traceback" not in output
        key = re.search(r"API key\s+(\S{20,})", output).group(1)
        reply = httpx.post(
            f"http://127.0.0.1:{api}/test/irisprediction",
            json=TUTORIAL_BODIES["iris"],
            headers={"x-api-key": key},
            timeout=60,
        )
        assert reply.status_code == 200 and reply.json()["prediction"] == "setosa"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    reader.join(timeout=10)
    assert process.returncode == 0
    assert "local cloud stopped" in "".join(lines)
