"""`l2c up` as a user starts it, and every AWS client a user points at it with AWS_ENDPOINT_URL alone.

One real `l2c up` process (the installed command) on free ports, in a folder of its own whose
models/ holds the session's trained models. Then boto3, the AWS CLI, sagemaker-core and newman,
each in a fresh process whose environment holds the edge URL, the local cloud's fake
credentials and a region, and nothing else of AWS's: no config or credentials file, no
per-service endpoint variable, no L2C_ variable, a HOME without dotfiles. What the test process's
own environment holds (the session's cloud included) cannot reach them. Last, Ctrl-C stops
`l2c up` and every process it started; and `L2C_PACE` sets the pace of an `l2c up` given no
`--pace`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from l2c import artifact
from l2c.config import LOCAL_CREDENTIALS, LOCAL_REGION
from l2c.local.ports import free_ports
from l2c.local.tutorial import TUTORIAL_BODIES
from l2c.local.up import committed_local_api_key
from tests.integration.aws_helpers import COLLECTION, NEWMAN

BIN = Path(sys.executable).parent
L2C, AWS = BIN / "l2c", BIN / "aws"
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
# The suite's pace (tests/local_cloud.py TEST_PACE), given on the command line; another one through L2C_PACE.
FLAG_PACE = 0.002
ENV_PACE = 0.004
IRIS_ROW = TUTORIAL_BODIES["iris"]["data"]
ENDPOINTS = ("l2c-iris", "l2c-house-price")
OTHER_REGION = "eu-west-1"


@dataclass
class Up:
    process: subprocess.Popen
    folder: Path
    ports: list[int]
    lines: list[str] = field(default_factory=list)

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def output(self) -> str:
        return "".join(list(self.lines))

    def wait_for(self, text: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            assert self.process.poll() is None, f"l2c up exited ({self.process.returncode}):\n{self.output[-4000:]}"
            assert time.monotonic() < deadline, (
                f"l2c up did not say {text!r} in {timeout_s:.0f} s:\n{self.output[-4000:]}"
            )
            time.sleep(0.2)

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start_up(folder: Path, *arguments: str, env_extra: dict[str, str] | None = None) -> Up:
    """`l2c up ARGUMENTS` in ``folder`` on free ports, its own process group, its output collected."""
    ports = free_ports(3)
    nowhere = folder / "no-aws-config"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "L2C_"))}
    env.update(
        {
            "L2C_STATE_DIR": str(folder / "state"),
            "AWS_CONFIG_FILE": str(nowhere / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(nowhere / "credentials"),
            "COLUMNS": "220",
            "PYTHONUNBUFFERED": "1",
            **(env_extra or {}),
        }
    )
    command = [
        str(L2C),
        "up",
        "--control-plane-port",
        str(ports[0]),
        "--runtime-port",
        str(ports[1]),
        "--api-port",
        str(ports[2]),
        *arguments,
    ]
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    up = Up(process, folder, ports)
    threading.Thread(target=lambda: up.lines.extend(process.stdout), daemon=True).start()
    return up


@pytest.fixture(scope="module")
def up(trained_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("l2c-up")
    # The working folder's models/ is where `l2c up` looks (its default --models-dir).
    (folder / "models").symlink_to(trained_models["iris"].parent, target_is_directory=True)
    started = start_up(folder, "--pace", str(FLAG_PACE))
    try:
        started.wait_for("serving; Ctrl-C stops everything")
        yield started
    finally:
        started.kill()


@pytest.fixture(scope="module")
def edge_only_env(up) -> dict[str, str]:
    """A shell after `export AWS_ENDPOINT_URL=...` and fake keys, and nothing else of AWS's."""
    home = up.folder / "home"  # no ~/.aws, ~/.config/sagemaker, ~/.npmrc of the developer's
    home.mkdir(exist_ok=True)
    node = shutil.which("node")  # newman's interpreter
    folders = [str(Path(node).parent)] if node else []
    return {
        "PATH": os.pathsep.join(dict.fromkeys([*folders, "/usr/bin", "/bin"])),
        "HOME": str(home),
        "AWS_ENDPOINT_URL": up.edge_url,
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_CONFIG_FILE": str(up.folder / "no-aws-config" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(up.folder / "no-aws-config" / "credentials"),
    }


@pytest.fixture(scope="module")
def iris_probabilities(trained_models) -> np.ndarray:
    """What the container computes for the tutorial's flower, from the trained model itself."""
    rows = np.array([[float(value) for value in IRIS_ROW.split(",")]])
    return artifact.predict_like_container(artifact.load_artifact(trained_models["iris"]), rows)[0]


def run_python(script: str, env: dict[str, str]) -> dict:
    """``script`` in a fresh interpreter with exactly ``env``; it prints one JSON line last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def aws(env: dict[str, str], *arguments: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(AWS), *arguments, "--output", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    if ok:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def proxy_event(body: dict) -> dict:
    """What API Gateway's Lambda proxy integration sends the function for POST /irisprediction."""
    return {
        "resource": "/irisprediction",
        "path": "/irisprediction",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "queryStringParameters": None,
        "requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "stage": "test"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def csv_numbers(text: str) -> list[float]:
    return [float(value) for value in text.strip().split(",")]


# --------------------------------------------------------------------------- the pace


def test_up_runs_at_the_pace_given_on_its_command_line(up):
    assert httpx.get(f"{up.edge_url}/_l2c/pace", timeout=10).json()["pace"] == pytest.approx(FLAG_PACE)
    assert f"export L2C_PACE={FLAG_PACE!r}" in up.output  # and clients are told to poll at it


# --------------------------------------------------------------------------- boto3


BOTO3 = """
    import json, boto3
    sagemaker, runtime, lam = (boto3.client(name) for name in ("sagemaker", "sagemaker-runtime", "lambda"))
    answers = {"endpoint_urls": [client.meta.endpoint_url for client in (sagemaker, runtime, lam)]}
    answers["endpoints"] = {e["EndpointName"]: e["EndpointStatus"] for e in sagemaker.list_endpoints()["Endpoints"]}
    reply = runtime.invoke_endpoint(EndpointName="l2c-iris", ContentType="text/csv", Body=%(row)r)
    answers["prediction"] = {"body": reply["Body"].read().decode(), "variant": reply["InvokedProductionVariant"]}
    try:
        runtime.invoke_endpoint(EndpointName="l2c-no-such-endpoint", ContentType="text/csv", Body=%(row)r)
    except runtime.exceptions.ValidationError as err:
        answers["unknown"] = [err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"],
                              err.response["Error"]["Message"]]
    invoked = lam.invoke(FunctionName="l2c-iris", Payload=json.dumps(%(event)r))
    answers["lambda"] = {"status": invoked["StatusCode"], "error": invoked.get("FunctionError"),
                         "payload": json.loads(invoked["Payload"].read())}
    account = boto3.client("sts").get_caller_identity()["Account"]
    answers["account"] = account
    print(json.dumps(answers))
"""


def test_boto3_lists_invokes_and_is_refused_as_on_aws(up, edge_only_env, iris_probabilities):
    event = proxy_event(TUTORIAL_BODIES["iris"])
    answers = run_python(BOTO3 % {"row": IRIS_ROW, "event": event}, edge_only_env)

    assert answers["endpoint_urls"] == [up.edge_url] * 3
    assert {name: answers["endpoints"].get(name) for name in ENDPOINTS} == dict.fromkeys(ENDPOINTS, "InService")
    assert csv_numbers(answers["prediction"]["body"]) == pytest.approx(list(iris_probabilities), abs=1e-6)
    assert answers["prediction"]["variant"] == "AllTraffic"
    assert answers["unknown"] == [
        "ValidationError",
        400,
        f"Endpoint l2c-no-such-endpoint of account {answers['account']} not found.",
    ]
    invoked = answers["lambda"]
    assert (invoked["status"], invoked["error"], invoked["payload"]["statusCode"]) == (200, None, 200)
    answer = json.loads(invoked["payload"]["body"])
    assert answer["prediction"] == "setosa"
    probabilities = answer["predictions"][0]["probabilities"]
    assert list(probabilities) == ["setosa", "versicolor", "virginica"]
    assert list(probabilities.values()) == pytest.approx(list(iris_probabilities), abs=1e-6)


# --------------------------------------------------------------------------- the AWS CLI


def test_the_aws_cli_describes_invokes_and_runs_the_function(up, edge_only_env, iris_probabilities, tmp_path):
    described = json.loads(aws(edge_only_env, "sagemaker", "describe-endpoint", "--endpoint-name", "l2c-iris").stdout)
    assert (described["EndpointName"], described["EndpointStatus"]) == ("l2c-iris", "InService")

    prediction = tmp_path / "out.json"
    invoked = aws(
        edge_only_env,
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        "l2c-iris",
        "--content-type",
        "text/csv",
        "--body",
        IRIS_ROW,
        str(prediction),
    )
    assert json.loads(invoked.stdout)["InvokedProductionVariant"] == "AllTraffic"
    assert csv_numbers(prediction.read_text()) == pytest.approx(list(iris_probabilities), abs=1e-6)

    refused = aws(
        edge_only_env,
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        "l2c-no-such-endpoint",
        "--content-type",
        "text/csv",
        "--body",
        IRIS_ROW,
        str(tmp_path / "none.json"),
        ok=False,
    )
    assert refused.returncode != 0
    assert "(ValidationError)" in refused.stderr and "l2c-no-such-endpoint" in refused.stderr
    assert "Traceback" not in refused.stderr

    answer_file = tmp_path / "answer.json"
    ran = aws(
        edge_only_env,
        "lambda",
        "invoke",
        "--function-name",
        "l2c-iris",
        "--payload",
        json.dumps(proxy_event(TUTORIAL_BODIES["iris"])),
        str(answer_file),
    )
    meta = json.loads(ran.stdout)
    assert meta["StatusCode"] == 200 and "FunctionError" not in meta
    answer = json.loads(answer_file.read_text())
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["prediction"] == "setosa"


# --------------------------------------------------------------------------- sagemaker-core


SAGEMAKER_CORE = """
    import json
    from sagemaker.core.resources import Endpoint, EndpointConfig
    endpoint = Endpoint.get(endpoint_name="l2c-iris")
    config = EndpointConfig.get(endpoint_config_name=endpoint.endpoint_config_name)
    print(json.dumps({
        "name": endpoint.endpoint_name, "status": endpoint.endpoint_status,
        "instance_type": config.production_variants[0].instance_type,
        "all": sorted(e.endpoint_name for e in Endpoint.get_all()),
    }))
"""


def test_sagemaker_core_gets_the_endpoints(up, edge_only_env):
    answers = run_python(SAGEMAKER_CORE, edge_only_env)

    assert (answers["name"], answers["status"]) == ("l2c-iris", "InService")
    assert answers["instance_type"] == "ml.m5.large"
    assert set(ENDPOINTS) <= set(answers["all"])


# --------------------------------------------------------------------------- newman


def test_newman_runs_the_collection_with_the_environment_up_wrote(up, edge_only_env, tmp_path):
    environment = up.folder / "state" / "local.postman_environment.json"
    values = {item["key"]: item["value"] for item in json.loads(environment.read_text())["values"]}
    assert values["baseUrl"] == f"http://127.0.0.1:{up.ports[2]}/test"
    assert values["apiKey"] == committed_local_api_key()  # the committed environment's key works as it is
    report = tmp_path / "newman.json"
    done = subprocess.run(
        [
            str(NEWMAN),
            "run",
            str(COLLECTION),
            "--environment",
            str(environment),
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--timeout-request",
            "60000",
            "--color",
            "off",
        ],
        env=edge_only_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    stats = json.loads(report.read_text())["run"]["stats"]
    assert stats["assertions"]["failed"] == 0 and stats["requests"]["failed"] == 0
    assert stats["assertions"]["total"] >= 20  # the collection's tests ran, not just its requests
    assert stats["requests"]["total"] == requests_in(json.loads(COLLECTION.read_text()))


def requests_in(folder: dict) -> int:
    return sum(requests_in(item) if "item" in item else 1 for item in folder["item"])


# --------------------------------------------------------------------------- global and regional


REGIONS = """
    import json, boto3
    answers = {}
    for region in (%(here)r, %(other)r):
        sagemaker, lam, iam, s3, gateway, logs = (boto3.client(name, region_name=region) for name in (
            "sagemaker", "lambda", "iam", "s3", "apigateway", "logs"))
        answers[region] = {
            "endpoints": sorted(e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]),
            "functions": sorted(f["FunctionName"] for f in lam.list_functions()["Functions"]),
            "apis": sorted(a["name"] for a in gateway.get_rest_apis()["items"]),
            "log_groups": sorted(g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]),
            "roles": sorted(r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("l2c-")),
            "buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
        }
    print(json.dumps(answers))
"""


def test_iam_and_bucket_names_are_global_and_what_up_deployed_is_regional(up, edge_only_env):
    answers = run_python(REGIONS % {"here": LOCAL_REGION, "other": OTHER_REGION}, edge_only_env)
    here, there = answers[LOCAL_REGION], answers[OTHER_REGION]

    assert set(ENDPOINTS) <= set(here["endpoints"]) and set(ENDPOINTS) <= set(here["functions"])
    assert here["apis"] and "/aws/lambda/l2c-iris" in here["log_groups"]
    assert (there["endpoints"], there["functions"], there["apis"], there["log_groups"]) == ([], [], [], [])
    assert {f"l2c-iris-{LOCAL_REGION}-sagemaker", f"l2c-iris-{LOCAL_REGION}-lambda"} <= set(here["roles"])
    assert there["roles"] == here["roles"]  # one IAM for every region
    assert here["buckets"] and there["buckets"] == here["buckets"]  # ListBuckets lists the account's, wherever asked


# --------------------------------------------------------------------------- the IAM hop


def test_a_function_whose_role_may_not_invoke_the_endpoint_is_denied_by_sagemaker(up):
    """The deployed function calls InvokeEndpoint as its role: without the grant, SageMaker
    Runtime says AccessDeniedException, and the function answers 500 with it in its log."""
    import boto3

    session = boto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_REGION,
    )
    iam, lam = (session.client(name, endpoint_url=up.edge_url) for name in ("iam", "lambda"))
    role = lam.get_function_configuration(FunctionName="l2c-iris")["Role"].rsplit("/", 1)[1]
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    granted = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    without = {
        **granted,
        "Statement": [
            statement for statement in granted["Statement"] if "sagemaker:InvokeEndpoint" not in json.dumps(statement)
        ],
    }
    assert len(without["Statement"]) < len(granted["Statement"]), granted
    event = json.dumps(proxy_event(TUTORIAL_BODIES["iris"]))

    iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(without))
    try:
        denied = lam.invoke(FunctionName="l2c-iris", Payload=event, LogType="Tail")
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(granted))

    assert json.loads(denied["Payload"].read())["statusCode"] == 500
    log = base64.b64decode(denied["LogResult"]).decode()
    assert "AccessDeniedException" in log and f"assumed-role/{role}/" in log, log
    assert "is not authorized to perform: sagemaker:InvokeEndpoint on resource: arn:aws:sagemaker:" in log, log
    again = lam.invoke(FunctionName="l2c-iris", Payload=event)  # granted again: served again
    assert json.loads(again["Payload"].read())["statusCode"] == 200


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_up_and_every_process_it_started(up):
    parent = psutil.Process(up.process.pid)
    children = parent.children(recursive=True)
    commands = [" ".join(child.cmdline()) for child in children]
    assert any("lambda_runner" in command for command in commands), commands  # the functions ran: warm workers
    assert any("runtime_process" in command for command in commands), commands

    up.ctrl_c()

    up.process.wait(STOP_TIMEOUT_S)
    _, alive = psutil.wait_procs(children, timeout=10)
    left = [process.cmdline() for process in alive]
    for process in alive:  # not left running for the rest of the session
        process.kill()
    assert left == []
    assert up.process.returncode == 0, up.output[-3000:]
    time.sleep(0.5)  # the reader thread takes the last lines
    assert "local cloud stopped" in up.output
    assert "Traceback" not in up.output, up.output[-4000:]
    assert not (up.folder / "state" / "local-cloud.json").exists()  # nothing points at a cloud that is gone


def test_l2c_pace_is_the_pace_of_up_without_the_flag(tmp_path):
    started = start_up(tmp_path, "--no-deploy", env_extra={"L2C_PACE": str(ENV_PACE)})
    try:
        started.wait_for("serving; Ctrl-C stops everything")
        assert httpx.get(f"{started.edge_url}/_l2c/pace", timeout=10).json()["pace"] == pytest.approx(ENV_PACE)
        assert f"export L2C_PACE={ENV_PACE!r}" in started.output
        started.ctrl_c()
        assert started.process.wait(STOP_TIMEOUT_S) == 0
    finally:
        started.kill()
