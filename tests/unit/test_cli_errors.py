"""The one error boundary of the `l2c` command: a user's error is one `error:` line and exit code 1,
never a traceback, whichever command and whichever layer it comes from."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from l2c.errors import L2CError

# The installed xgboost drifting from the container's (l2c.versions) is simulated in the process
# itself: the attribute the check reads is replaced before the real typer app runs.
DRIFTED = """
import sys, xgboost
xgboost.__version__ = "2.1.4"
from l2c.cli import app
app(sys.argv[1:], prog_name="l2c")
"""

# `l2c invoke --api` with everything up to the HTTP call answered in-process, so the call goes to
# the URL the test chooses. The real call_api, retries and httpx run.
API_AT = """
import sys, types
from l2c import cli
from l2c.cloud import calling
url = sys.argv.pop(1)
cli._connect = lambda aws, region, profile: types.SimpleNamespace(poll_seconds=lambda s: 0.0, is_local=True)
calling.api_access = lambda session, name: (url, "a-key")
cli.app(sys.argv[1:], prog_name="l2c")
"""


def run(code, *args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def assert_one_error_line(result, says):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert says in errors[0], result.stderr


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


DRIFT_SAYS = "xgboost 2.1.4 is installed, but the SageMaker XGBoost"


def test_train_on_a_drifted_xgboost_is_one_line(tmp_path):
    result = run(DRIFTED, "train", "iris", cwd=tmp_path)
    assert_one_error_line(result, DRIFT_SAYS)
    assert not (tmp_path / "models" / "iris").exists()


def test_demo_on_a_drifted_xgboost_is_one_line(tmp_path):
    result = run(DRIFTED, "demo", "--models-dir", str(tmp_path / "models"), cwd=tmp_path)
    assert_one_error_line(result, DRIFT_SAYS)


def test_up_on_a_drifted_xgboost_is_one_line_and_stops_the_cloud(tmp_path):
    edge, runtime, api = free_ports(3)
    # Its own state folder: the test session's local cloud keeps its state file.
    env = {**os.environ, "L2C_STATE_DIR": str(tmp_path / "state")}
    result = run(
        DRIFTED,
        "up",
        "--models-dir",
        str(tmp_path / "models"),
        "--control-plane-port",
        str(edge),
        "--runtime-port",
        str(runtime),
        "--api-port",
        str(api),
        "--pace",
        "0",
        cwd=tmp_path,
        env=env,
    )
    assert_one_error_line(result, DRIFT_SAYS)
    assert "local cloud up" in result.stdout  # the models are trained once the cloud listens
    assert not (tmp_path / "state" / "local-cloud.json").exists()
    for port in (edge, runtime, api):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listens"


def test_invoke_api_on_a_closed_port_is_one_line(tmp_path):
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}/prod/iris"
    result = run(API_AT, url, "invoke", "iris", "5.1,3.5,1.4,0.2", "--api", cwd=tmp_path)
    assert_one_error_line(result, f"cannot call the API at {url}")


def test_invoke_api_answered_by_something_that_is_not_http_is_one_line(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_garbage():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x00\x01 not HTTP at all\r\n\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/prod/iris"
    try:
        result = run(API_AT, url, "invoke", "iris", "5.1,3.5,1.4,0.2", "--api", cwd=tmp_path)
    finally:
        listener.close()
    assert_one_error_line(result, f"cannot call the API at {url}")


def test_the_rules_table_is_the_same_from_both_commands(tmp_path):
    l2c = Path(sys.executable).with_name("l2c")  # the installed console script, as a user runs it
    assert l2c.is_file()
    module = subprocess.run([sys.executable, "-m", "l2c.local.rules"], capture_output=True, text=True, timeout=120)
    command = subprocess.run([str(l2c), "rules"], capture_output=True, text=True, timeout=120)
    assert module.returncode == command.returncode == 0, module.stderr + command.stderr
    assert module.stdout == command.stdout
    assert module.stdout.startswith("| rule | operations |") and module.stdout.count("\n") > 10


def test_writing_the_rules_into_a_file_without_markers_is_one_line(tmp_path):
    target = tmp_path / "notes.md"
    target.write_text("no markers here\n")
    result = subprocess.run(
        [sys.executable, "-m", "l2c.local.rules", "--write", str(target)], capture_output=True, text=True, timeout=120
    )
    assert_one_error_line(result, "markers to put the table between")
    assert target.read_text() == "no markers here\n"


def test_a_file_that_cannot_be_read_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "l2c.cli", "rules", "--write", str(tmp_path / "no" / "such.md")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_error_line(result, "No such file or directory")


def test_a_corrupt_model_card_is_one_line(tmp_path):
    (tmp_path / "models" / "iris").mkdir(parents=True)
    (tmp_path / "models" / "iris" / "model_card.json").write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "l2c.cli", "check", "models/iris"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_error_line(result, "model_card.json: not readable JSON")


def test_a_csv_too_small_for_the_splits_is_one_line(tmp_path):
    (tmp_path / "few.csv").write_text("a,y\n1,1\n2,2\n3,3\n")
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "l2c.cli",
            "train",
            "--csv",
            "few.csv",
            "--target",
            "y",
            "--task",
            "regression",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_error_line(result, "few: cannot train and score on this data: Cannot have number of splits")
    assert not (tmp_path / "models").exists()


def test_a_bug_keeps_its_traceback():
    from l2c import cli

    # A plain exception is no user's mistake: the boundary lets it through, traceback and all.
    with pytest.raises(ZeroDivisionError), cli.error_boundary():
        raise ZeroDivisionError("a bug")


def _user_errors():
    from l2c.artifact import ArtifactError
    from l2c.cloud.policies import PolicyTemplateError
    from l2c.cloud.sagemaker import EndpointFailed, QuotaTooLow, UpdateRolledBack
    from l2c.cloud.session import CloudError
    from l2c.datasets import DataError
    from l2c.local.rules.table import MarkersMissing
    from l2c.model_import import ImportRefused
    from l2c.page import PageError
    from l2c.versions import XgboostDrift

    return [
        ArtifactError,
        PolicyTemplateError,
        EndpointFailed,
        QuotaTooLow,
        UpdateRolledBack,
        CloudError,
        DataError,
        MarkersMissing,
        ImportRefused,
        PageError,
        XgboostDrift,
    ]


@pytest.mark.parametrize("error", _user_errors(), ids=lambda error: error.__name__)
def test_every_error_raised_to_users_is_an_l2c_error(error):
    assert issubclass(error, L2CError)
