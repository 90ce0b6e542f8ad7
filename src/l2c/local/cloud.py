"""The embedded local cloud: AWS's path from API to model, on 127.0.0.1, without an account.

Three servers, two processes (and the Lambda workers' own):

- control plane (moto): S3, IAM, STS, SageMaker, Lambda, API Gateway, Logs, ... on ``AWS_ENDPOINT_URL``
- inference runtime (l2c.serving): ``POST /endpoints/{name}/invocations`` on
  ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, serving whatever model the endpoint points to in S3;
  in a child process (:mod:`l2c.local.runtime_process`), so that it does not share a GIL with
  moto and the gateway, which stay together because the gateway reads Lambda code from moto's
  memory. The child sees moto's change count through shared memory, so a redeploy shows at
  once there too, and it exits with this process however that ends
- execute-api gateway (l2c.local.gateway): the deployed REST API, API keys, usage plans and
  Lambda functions, on ``L2C_EXECUTE_API_URL``

The deploy code, the notebooks and the Lambda handler reach it with the standard endpoint
variables only; nothing in them knows it is local.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from l2c.cloud.session import EXECUTE_API_URL_ENV, LOCAL_CREDENTIALS, LOCAL_REGION, local_cloud_file
from l2c.local import control_plane, data_planes
from l2c.local.pace import PACE, PACE_ENV

HOST = "127.0.0.1"
log = logging.getLogger("l2c.local")


@dataclass(frozen=True)
class Ports:
    control_plane: int = 4566
    runtime: int = 4567
    api: int = 4568

    @classmethod
    def free(cls) -> "Ports":
        return cls(*free_ports(3))


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalCloud:
    def __init__(self, ports: Ports | None = None, region: str = LOCAL_REGION, pace: float | None = None):
        self.ports = ports or Ports()
        if pace is not None:
            PACE.set(pace)
        self.region = region
        self._moto = self._runtime = self._gateway = self._lambdas = None

    @property
    def control_plane_url(self) -> str:
        return f"http://{HOST}:{self.ports.control_plane}"

    @property
    def runtime_url(self) -> str:
        return f"http://{HOST}:{self.ports.runtime}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.ports.api}"

    @property
    def env(self) -> dict[str, str]:
        """What points boto3 (a shell, a notebook, a test session) at this cloud."""
        return {
            "AWS_ENDPOINT_URL": self.control_plane_url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.runtime_url,
            EXECUTE_API_URL_ENV: self.api_url,
            # Clients poll the local cloud at its pace, not AWS's (l2c.local.pace).
            PACE_ENV: repr(PACE.factor),
            **LOCAL_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def start(self) -> "LocalCloud":
        for port, what in (
            (self.ports.control_plane, "the control plane"),
            (self.ports.runtime, "the inference runtime"),
            (self.ports.api, "the API gateway"),
        ):
            control_plane.ensure_port_free(HOST, port, what)
        try:
            self._start_servers()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_servers(self) -> None:
        import boto3

        from l2c.local.gateway import Gateway, GatewayServer
        from l2c.local.lambdas import LambdaHost

        # Its own process, started first: its imports overlap moto's start-up below.
        self.start_runtime(wait=False)
        self._moto = control_plane.start(self.ports.control_plane, HOST)
        # Tests and notebooks in this process find the cloud the standard way, through the environment.
        os.environ.update(self.env)
        session = boto3.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        )
        # Reads are answered from memory until moto counts a change, so the servers below can
        # read the control plane on every request (a redeploy shows at once) at no cost.
        control_plane.cache_reads(session)
        # What a function sees of the cloud: where AWS is, and nothing of l2c's own settings.
        worker_env = {key: value for key, value in self.env.items() if key not in (EXECUTE_API_URL_ENV, PACE_ENV)}
        self._lambdas = LambdaHost(
            session, self.control_plane_url, worker_env, control_plane.deployed_code, control_plane.write_logs
        )
        gateway = Gateway(session, self.control_plane_url, self._lambdas)
        self._gateway = GatewayServer(gateway, HOST, self.ports.api).start()
        # One edge URL: the control-plane port serves every data plane too.
        data_planes.add_runtime(self._moto.edge, self.runtime_url)
        data_planes.add_execute_api(self._moto.edge, gateway)
        from l2c.local.rules import iam as iam_rules, sagemaker as sagemaker_rules

        sagemaker_rules.register_admin(self._moto.edge)  # /_l2c/quotas
        iam_rules.register_admin(self._moto.edge)  # /_l2c/authorize, asked by the runtime
        self._runtime.wait_ready()

    def start_runtime(self, wait: bool = True) -> None:
        """Start the inference runtime's process (again, after :meth:`stop_runtime`)."""
        from l2c.local.runtime_process import RuntimeProcess

        if self._runtime is not None:
            return
        control_plane.ensure_port_free(HOST, self.ports.runtime, "the inference runtime")
        self._runtime = RuntimeProcess(HOST, self.ports.runtime, self.region, control_plane.changes, self.env).start()
        if wait:
            self._runtime.wait_ready()

    def stop_runtime(self) -> None:
        """Stop the inference runtime alone (the rest keeps serving; faults are tested so)."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.stop()

    def stop(self) -> None:
        for part in (self._gateway, self._lambdas, self._runtime, self._moto):
            if part is not None:
                try:
                    part.stop()
                except Exception as err:  # keep stopping the rest
                    log.warning("stopping %s: %s", type(part).__name__, err)
        self._moto = self._runtime = self._gateway = self._lambdas = None

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_state(self, path: Path | None = None) -> Path:
        """Tell other processes (`l2c deploy`, the test session) where this cloud listens."""
        path = path or local_cloud_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps({"pid": os.getpid(), "env": self.env}, indent=2) + "\n")
        staging.replace(path)
        return path

    def exports(self) -> list[str]:
        return [f"export {key}={value}" for key, value in self.env.items()]


def run_until_stopped(cloud: LocalCloud, state_file: Path | None = None, on_ready=None) -> None:
    """Start the cloud, announce it, and serve until Ctrl-C or SIGTERM; then stop cleanly."""
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    path = None
    try:
        cloud.start()
        path = cloud.write_state(state_file)
        if on_ready is not None:
            on_ready(cloud)
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        cloud.stop()
        if path is not None:
            path.unlink(missing_ok=True)


MIN_API_KEY_LENGTH = 20  # API Gateway refuses shorter key values (moto too)


def committed_local_api_key(console=None) -> str | None:
    """The key the committed Postman environment for the local cloud expects (postman/), if usable."""
    from l2c.cloud.stack import POSTMAN_DIR

    path = POSTMAN_DIR / "local.postman_environment.json"
    if not path.is_file():
        return None
    values = {item["key"]: item.get("value") for item in json.loads(path.read_text()).get("values", [])}
    key = values.get("apiKey") or ""
    if len(key) < MIN_API_KEY_LENGTH:
        if console is not None:
            console.print(
                f"[yellow]note[/]: the apiKey of {path.name} is shorter than API Gateway's minimum of "
                f"{MIN_API_KEY_LENGTH} characters; a generated key is used (see the filled environment below)"
            )
        return None
    return key


def up(
    ports: Ports | None = None, deploy_models: bool = True, models_dir: Path | str = "models", console=None,
    pace: float | None = None,
) -> None:
    """`l2c up`: start the local cloud, deploy both tutorial models, serve until Ctrl-C."""
    from rich.console import Console

    console = console or Console()
    _log_requests_to(console)

    def ready(cloud: LocalCloud) -> None:
        console.print("[bold green]local cloud up[/]: point boto3, a notebook or a shell at it with", highlight=False)
        for line in cloud.exports():
            console.print(f"  {line}", highlight=False)
        if deploy_models:
            _deploy_tutorial_models(models_dir, console)
        console.print("serving; Ctrl-C stops everything", highlight=False)

    run_until_stopped(LocalCloud(ports, pace=pace), on_ready=ready)
    console.print("local cloud stopped")


def _deploy_tutorial_models(models_dir, console) -> None:
    from l2c.cloud import stack
    from l2c.cloud.display import print_deployment
    from l2c.cloud.progress import ConsoleReporter
    from l2c.cloud.session import LOCAL, connect
    from l2c.local.demo import MODELS, TUTORIAL_BODIES, ensure_trained

    session = connect(LOCAL)
    # The committed Postman environment then works as it is, without copying a generated key.
    options = stack.DeployOptions(api_key_value=committed_local_api_key(console))
    for name in MODELS:
        model_dir = ensure_trained(name, models_dir, console)
        deployment = stack.deploy(name, model_dir, session=session, options=options, reporter=ConsoleReporter(console))
        print_deployment(deployment, console, json.dumps(TUTORIAL_BODIES[name]))


def _log_requests_to(console) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_path=False, show_level=False)
    for name in ("l2c.local", "l2c.serving"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
