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
import threading
from dataclasses import dataclass
from pathlib import Path

from l2c.cloud.session import local_cloud_file, write_private
from l2c.config import EXECUTE_API_URL_ENV, LOCAL_CREDENTIALS, LOCAL_REGION, PACE_ENV
from l2c.local import change_count, control_plane, data_planes, moto_stores
from l2c.local.pace import PACE
from l2c.local.ports import HOST, ensure_port_free, free_ports
from l2c.local.read_cache import cache_reads
from l2c.local.runtime_supervisor import RuntimeRecord

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
    def free(cls) -> Ports:
        return cls(*free_ports(3))


class LocalCloud:
    def __init__(
        self,
        ports: Ports | None = None,
        region: str = LOCAL_REGION,
        pace: float | None = None,
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
        """What points boto3 (a shell, a notebook, a test session) at this cloud. Starting the cloud
        leaves this process's environment alone: code here opens ``connect(LOCAL, env=cloud.env)``."""
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

    def start(self) -> LocalCloud:
        for port, what in (
            (self.ports.control_plane, "the control plane"),
            (self.ports.runtime, "the inference runtime"),
            (self.ports.api, "the API gateway"),
        ):
            ensure_port_free(HOST, port, what)
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

        from l2c.local.gateway.server import GatewayServer
        from l2c.local.gateway.service import Gateway
        from l2c.local.lambdas import LambdaHost

        self._moto = control_plane.start(self.ports.control_plane, HOST)
        session = boto3.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        )
        # Reads are answered from memory until moto counts a change, so the servers below can
        # read the control plane on every request (a redeploy shows at once) at no cost.
        cache_reads(session, change_count.changes)
        # What a function sees of the cloud: where AWS is, and nothing of l2c's own settings.
        worker_env = {key: value for key, value in self.env.items() if key not in (EXECUTE_API_URL_ENV, PACE_ENV)}
        self._lambdas = LambdaHost(
            session, self.control_plane_url, worker_env, moto_stores.deployed_code, moto_stores.write_logs
        )
        gateway = Gateway(session, self.control_plane_url, self._lambdas, lambda: change_count.changes.value)
        self._gateway = GatewayServer(gateway, HOST, self.ports.api).start()
        # One edge URL: the control-plane port serves every data plane too.
        data_planes.add_runtime(self._moto.edge, self.runtime_url, self.runtime_record)  # and /_l2c/runtime
        data_planes.add_execute_api(self._moto.edge, gateway)
        data_planes.add_lambda_invoke(self._moto.edge, self._lambdas)
        data_planes.add_test_invoke(self._moto.edge, gateway)
        from l2c.local.rules import iam as iam_rules
        from l2c.local.rules import sagemaker as sagemaker_rules

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
        ensure_port_free(HOST, self.ports.runtime, "the inference runtime")
        self._runtime = RuntimeSupervisor(self._spawn_runtime, self.runtime_record).start()
        if wait:
            self._runtime.wait_ready()

    def _spawn_runtime(self):
        from l2c.local.runtime_process import RuntimeProcess

        return RuntimeProcess(HOST, self.ports.runtime, self.region, change_count.changes, self.env).start()

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

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_state(self, path: Path | None = None) -> Path:
        """Tell other processes (`l2c deploy`, the test session) where this cloud listens."""
        # It holds the cloud's credentials: readable by this user only, as everything in .l2c/.
        return write_private(
            path or local_cloud_file(), json.dumps({"pid": os.getpid(), "env": self.env}, indent=2) + "\n"
        )

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
