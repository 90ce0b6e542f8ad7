"""`l2c up`: start the local cloud, deploy both tutorial models at once, call each API, serve until Ctrl-C."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from l2c.cloud.progress import ConsoleReporter
from l2c.local.cloud import LocalCloud, Ports, run_until_stopped
from l2c.local.tutorial import MODELS, TUTORIAL_BODIES, answer_text, post

MIN_API_KEY_LENGTH = 20  # API Gateway refuses shorter key values (moto too)


def committed_local_api_key(console=None) -> str | None:
    """The key the committed Postman environment for the local cloud expects (src/l2c/postman/), if usable."""
    from l2c.config import POSTMAN_DIR

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
    ports: Ports | None = None,
    deploy_models: bool = True,
    models_dir: Path | str = "models",
    console=None,
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
            deployments = _deploy_tutorial_models(models_dir, console, cloud.env)
            cloud.wait_runtime_ready()
            _call_each_api(deployments, console)
            print_pages(cloud, deployments, console)
        console.print("serving; Ctrl-C stops everything", highlight=False)

    run_until_stopped(cloud, on_ready=ready)
    console.print("local cloud stopped")


# l2c.artifact.TARBALL_NAME, named here because importing it imports xgboost (a unit test keeps them equal).
TARBALL = "model.tar.gz"


def _trained(models_dir) -> bool:
    return all((Path(models_dir) / name / TARBALL).is_file() for name in MODELS)


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


def _model_dirs(models_dir, console) -> dict[str, Path]:
    """Each tutorial model's folder, trained first if missing. When both are trained (the usual
    start) l2c.training, which imports scikit-learn, is not imported (_keep_scikit_learn_out)."""
    if _trained(models_dir):
        return {name: Path(models_dir) / name for name in MODELS}
    from l2c.training import ensure_trained

    return {name: ensure_trained(name, models_dir, console) for name in MODELS}


def _deploy_tutorial_models(models_dir, console, env: dict[str, str]) -> dict:
    """Both models at once: each one's endpoint is Creating while the other's steps run."""
    from l2c.cloud import plan
    from l2c.cloud.display import print_deployment
    from l2c.cloud.session import LOCAL, connect

    model_dirs = _model_dirs(models_dir, console)
    session = connect(LOCAL, env=env)
    # boto3 creates clients safely one at a time only; once made, threads may share them.
    for service in DEPLOY_CLIENTS:
        session.client(service)
    # The committed Postman environment then works as it is, without copying a generated key.
    options = plan.DeployOptions(api_key_value=committed_local_api_key(console))
    shared_api = threading.Lock()
    deployments, failures = {}, {}

    def deploy(name: str) -> None:
        try:
            deployments[name] = _deploy_stack(
                name, model_dirs[name], session, options, StackReporter(console, name), shared_api
            )
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
        console.print(
            f"  prediction page {escape(f'[{name}]')} {cloud.page_url(name)}", highlight=False, soft_wrap=True
        )


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
