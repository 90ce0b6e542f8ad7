"""The embedded local cloud: AWS's path from API to model, on 127.0.0.1, without an account.

Three servers, two processes (and the Lambda workers' own):

- control plane (moto): S3, IAM, STS, SageMaker, Lambda, API Gateway, Logs, ... on ``AWS_ENDPOINT_URL``
- inference runtime (l2c.serving): ``POST /endpoints/{name}/invocations`` on
  ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, serving whatever model the endpoint points to in S3;
  in a child process (:mod:`l2c.local.runtime_process`), so that it does not share a GIL with
  moto and the gateway, which stay together because the gateway reads Lambda code from moto's
  memory. The child sees moto's change count through shared memory, so a redeploy shows at
  once there too, and it exits with this process however that ends. If it exits unasked (a
  crash), it is started again on the same port (:mod:`l2c.local.runtime_supervisor`); what
  happened is at ``GET /_l2c/runtime`` and in `l2c status`
- execute-api gateway (l2c.local.gateway): the deployed REST API, API keys, usage plans and
  Lambda functions, on ``L2C_EXECUTE_API_URL``

The deploy code, the notebooks and the Lambda handler reach it with the standard endpoint
variables only; nothing in them knows it is local.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from l2c.cloud.progress import ConsoleReporter
from l2c.cloud.session import EXECUTE_API_URL_ENV, LOCAL_CREDENTIALS, LOCAL_REGION, local_cloud_file, write_private
from l2c.local import control_plane, data_planes
from l2c.local.pace import PACE, PACE_ENV
from l2c.local.runtime_supervisor import RuntimeRecord

HOST = "127.0.0.1"
# Every connection to the gateway is an open file: the usual soft limit (1024) would run out
# before the gateway's connection cap, so it is raised towards this (as far as the hard limit lets).
OPEN_FILES_WANTED = 65536
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
    def __init__(
        self, ports: Ports | None = None, region: str = LOCAL_REGION, pace: float | None = None,
        models_dir: Path | str = "models",
    ):
        self.ports = ports or Ports()
        # Where each stack's prediction page finds its model card (models_dir/<stack>/model_card.json).
        self.models_dir = Path(models_dir)
        if pace is not None:
            PACE.set(pace)
        self.region = region
        # `l2c up` deploys while the runtime process is still starting (no deploy step needs it)
        # and waits for it before the first call; everyone else gets a cloud that serves at once.
        self.wait_for_runtime = True
        self._moto = self._runtime = self._gateway = self._lambdas = None
        # Kept across stop_runtime/start_runtime: crashes are the cloud's history, not one process's.
        self.runtime_record = RuntimeRecord(HOST, self.ports.runtime)

    @property
    def control_plane_url(self) -> str:
        return f"http://{HOST}:{self.ports.control_plane}"

    @property
    def runtime_url(self) -> str:
        return f"http://{HOST}:{self.ports.runtime}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.ports.api}"

    def page_url(self, stack: str) -> str:
        """The stack's prediction page, served by the edge (l2c.page.served)."""
        from l2c.page.served import page_url

        return page_url(self.control_plane_url, stack)

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
        raise_open_file_limit()
        try:
            self._start_servers()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_servers(self) -> None:
        # Its own process, started first: its imports (seconds) overlap this process's below.
        self.start_runtime(wait=False)
        import boto3

        from l2c.local.gateway import Gateway, GatewayServer
        from l2c.local.lambdas import LambdaHost

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
        gateway = Gateway(session, self.control_plane_url, self._lambdas, lambda: control_plane.changes.value)
        self._gateway = GatewayServer(gateway, HOST, self.ports.api).start()
        # One edge URL: the control-plane port serves every data plane too.
        data_planes.add_runtime(self._moto.edge, self.runtime_url, self.runtime_record)  # and /_l2c/runtime
        data_planes.add_execute_api(self._moto.edge, gateway)
        data_planes.add_lambda_invoke(self._moto.edge, self._lambdas)
        data_planes.add_test_invoke(self._moto.edge, gateway)
        from l2c.local.rules import iam as iam_rules, sagemaker as sagemaker_rules

        sagemaker_rules.register_admin(self._moto.edge)  # /_l2c/quotas
        iam_rules.register_admin(self._moto.edge)  # /_l2c/authorize, asked by the runtime
        from l2c.page import served as pages

        own = pages.cloud_session(session, self.region, self.control_plane_url, self.api_url)
        self._moto.edge.admin_tree(pages.PAGES, pages.LocalPages(own, self.models_dir))  # /_l2c/pages/<stack>/
        if self.wait_for_runtime:
            self._runtime.wait_ready()

    def wait_runtime_ready(self) -> None:
        """For a cloud started with ``wait_for_runtime = False``: until the runtime answers."""
        if self._runtime is not None:
            self._runtime.wait_ready()

    def start_runtime(self, wait: bool = True) -> None:
        """Start the inference runtime's process (again, after :meth:`stop_runtime`), supervised:
        should it exit unasked, it is started again."""
        from l2c.local.runtime_supervisor import RuntimeSupervisor

        if self._runtime is not None:
            return
        control_plane.ensure_port_free(HOST, self.ports.runtime, "the inference runtime")
        self._runtime = RuntimeSupervisor(self._spawn_runtime, self.runtime_record).start()
        if wait:
            self._runtime.wait_ready()

    def _spawn_runtime(self):
        from l2c.local.runtime_process import RuntimeProcess

        return RuntimeProcess(HOST, self.ports.runtime, self.region, control_plane.changes, self.env).start()

    def stop_runtime(self) -> None:
        """Stop the inference runtime alone, and its supervision: it stays stopped until
        :meth:`start_runtime` (the rest keeps serving; faults are tested so)."""
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
        # It holds the cloud's credentials: readable by this user only, as everything in .l2c/.
        return write_private(path or local_cloud_file(), json.dumps({"pid": os.getpid(), "env": self.env}, indent=2) + "\n")

    def exports(self) -> list[str]:
        return [f"export {key}={value}" for key, value in self.env.items()]


def run_until_stopped(cloud: LocalCloud, state_file: Path | None = None, on_ready=None) -> None:
    """Start the cloud, announce it, and serve until Ctrl-C or SIGTERM; then stop cleanly."""
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    path = None
    try:
        remove_stale_state(state_file or local_cloud_file())
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


def remove_stale_state(path: Path) -> None:
    """A state file whose cloud is gone (killed with SIGKILL, it could not remove it) is removed,
    so nothing finds a cloud that no longer listens while this one starts."""
    from l2c.local.lambdas import process_alive

    try:
        pid = int(json.loads(path.read_text())["pid"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        pid = None  # unreadable: no live cloud can be behind it
    if pid is not None and pid != os.getpid() and process_alive(pid):
        return  # another cloud's; the port check says whether it is in the way
    path.unlink(missing_ok=True)
    log.info("removed %s, left by a local cloud that did not stop (pid %s)", path, pid)


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


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
    cloud = LocalCloud(ports, pace=pace, models_dir=models_dir)
    if deploy_models:
        cloud.wait_for_runtime = False  # no deploy step needs it; the first calls below wait for it
        if _trained(models_dir):
            _keep_scikit_learn_out()

    def ready(cloud: LocalCloud) -> None:
        console.print("[bold green]local cloud up[/]: point boto3, a notebook or a shell at it with", highlight=False)
        for line in cloud.exports():
            console.print(f"  {line}", highlight=False)
        if deploy_models:
            deployments = _deploy_tutorial_models(models_dir, console)
            cloud.wait_runtime_ready()
            _call_each_api(deployments, console)
            print_pages(cloud, deployments, console)
        console.print("serving; Ctrl-C stops everything", highlight=False)

    run_until_stopped(cloud, on_ready=ready)
    console.print("local cloud stopped")


# l2c.local.demo.MODELS and l2c.artifact.TARBALL_NAME, named here because importing either
# imports xgboost (a unit test keeps them equal).
TUTORIAL_MODELS = ("iris", "house-price")
TARBALL = "model.tar.gz"


def _trained(models_dir) -> bool:
    return all((Path(models_dir) / name / TARBALL).is_file() for name in TUTORIAL_MODELS)


def _keep_scikit_learn_out() -> None:
    """xgboost imports scikit-learn whenever it is installed: ~1.7 s of this process's start on
    two cores, before the first deploy can check its artifact. With both models trained, nothing
    here needs it (the cloud and the deploys use native boosters; only training uses the
    scikit-learn wrapper), so it is not imported. A process that already has xgboost is left alone."""
    if "xgboost" not in sys.modules:
        sys.modules.setdefault("sklearn", None)


# What stack.deploy runs. The API step is shared between stacks (one REST API, key and usage
# plan), so concurrent deploys take it one at a time; and since neither the function nor the API
# needs the endpoint InService, they are made while it is Creating (AWS's longest wait).
DEPLOY_CLIENTS = ("s3", "iam", "sagemaker", "lambda", "logs", "apigateway", "service-quotas")
STEPS_BEFORE_ENDPOINT = ("upload_model", "create_roles", "create_model", "create_endpoint_config")
ENDPOINT_STEP = "create_endpoint"
STEPS_WHILE_CREATING = ("create_function",)


def _deploy_tutorial_models(models_dir, console) -> dict:
    """Both models at once: each one's endpoint is Creating while the other's steps run."""
    from l2c.cloud import stack
    from l2c.cloud.display import print_deployment
    from l2c.cloud.session import LOCAL, connect
    from l2c.local.demo import MODELS, TUTORIAL_BODIES, ensure_trained

    model_dirs = {name: ensure_trained(name, models_dir, console) for name in MODELS}
    session = connect(LOCAL)
    # boto3 creates clients safely one at a time only; once made, threads may share them.
    for service in DEPLOY_CLIENTS:
        session.client(service)
    # The committed Postman environment then works as it is, without copying a generated key.
    options = stack.DeployOptions(api_key_value=committed_local_api_key(console))
    shared_api = threading.Lock()
    deployments, failures = {}, {}

    def deploy(name: str) -> None:
        try:
            deployments[name] = _deploy_stack(name, model_dirs[name], session, options, StackReporter(console, name), shared_api)
        except BaseException as err:  # re-raised below, in the main thread
            failures[name] = err

    # Daemons: Ctrl-C stops the cloud under them, and the process need not wait for their retries.
    threads = [threading.Thread(target=deploy, args=(name,), name=f"l2c-deploy-{name}", daemon=True) for name in MODELS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in MODELS:
        if name in failures:
            raise failures[name]
    for name in MODELS:
        print_deployment(deployments[name], console, json.dumps(TUTORIAL_BODIES[name]))
    return deployments


def _deploy_stack(name, model_dir, session, options, reporter, shared_api: threading.Lock):
    from l2c.cloud import stack

    prepared = stack.prepare(name, model_dir, session=session, options=options, reporter=reporter)
    for step in STEPS_BEFORE_ENDPOINT:
        getattr(stack, step)(prepared)
    failure: list[BaseException] = []

    def endpoint() -> None:
        try:
            getattr(stack, ENDPOINT_STEP)(prepared)
        except BaseException as err:  # re-raised below
            failure.append(err)

    waiting = threading.Thread(target=endpoint, name=f"l2c-endpoint-{name}", daemon=True)
    waiting.start()
    try:
        for step in STEPS_WHILE_CREATING:
            getattr(stack, step)(prepared)
        with shared_api:
            api = stack.create_api(prepared)
    finally:
        waiting.join()
    if failure:
        raise failure[0]
    deployment = stack.deployment_of(prepared)  # now with the endpoint's outcome
    deployment.postman_environment = api.postman_environment
    return deployment


def _call_each_api(deployments: dict, console) -> None:
    """One tutorial request per API, as Postman sends it: `serving` then means answering (and the
    functions' first, cold, invocations are behind us)."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.markup import escape

    from l2c.local.demo import TUTORIAL_BODIES, answer_text, post

    def call(item):
        name, deployment = item
        try:
            return name, *post(deployment.url, TUTORIAL_BODIES[name], deployment.api_key)
        except Exception as err:  # the cloud keeps serving; say what happened
            return name, None, {"error": str(err)}

    with ThreadPoolExecutor(len(deployments) or 1) as pool:
        for name, status, answer in pool.map(call, deployments.items()):
            line = f"[{name}] POST {deployments[name].url} -> {answer_text(name, status, answer)}"
            mark = "[green]✓[/]" if status == 200 else "[bold yellow]![/]"
            console.print(f"  {mark} {escape(line)}", highlight=False, soft_wrap=True)


def print_pages(cloud: LocalCloud, stacks, console) -> None:
    """Each stack's prediction page: open it in a browser, the form calls the local API."""
    from rich.markup import escape

    for name in stacks:
        console.print(f"  prediction page {escape(f'[{name}]')} {cloud.page_url(name)}", highlight=False, soft_wrap=True)


class StackReporter(ConsoleReporter):
    """A console reporter for one of several deploys running at once: every line names its stack,
    and a wait prints a line when it starts instead of a spinner (a console shows one at a time)."""

    def __init__(self, console, stack: str) -> None:
        super().__init__(console)
        self.prefix = f"[{stack}] "

    def step(self, message: str) -> None:
        self.lines.append(message)
        self._print("[green]✓[/]", message)

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")
        self._print("[bold yellow]![/]", message)

    @contextmanager
    def waiting(self, message: str) -> Iterator[None]:
        self.lines.append(message)
        started = time.monotonic()
        self._print("…", f"{message} ...")
        yield
        self._print("[green]✓[/]", f"{message} ({time.monotonic() - started:.1f} s)")

    def _print(self, mark: str, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"  {mark} {escape(self.prefix + message)}", highlight=False, soft_wrap=True)


def _log_requests_to(console) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_path=False, show_level=False)
    for name in ("l2c.local", "l2c.serving"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
