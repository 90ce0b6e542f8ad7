"""`l2c demo` (and `make demo`): the whole tutorial on this machine, in well under a minute.

Train both models if they are missing, start the local cloud, deploy both, POST the tutorial's
two request bodies over HTTP with the API key (as Postman does), print the species and the
price, fetch each stack's prediction page from the edge, show the status, destroy everything,
show that nothing is left, and stop.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from l2c.artifact import TARBALL_NAME
from l2c.cloud import stack
from l2c.cloud.display import print_deployment, print_status
from l2c.cloud.progress import ConsoleReporter
from l2c.cloud.session import LOCAL, STATE_DIR_ENV, connect
from l2c.local.cloud import LocalCloud, Ports

MODELS = ("iris", "house-price")
# The request bodies of the tutorial's Postman screenshots (its test_point_*_sample.csv rows).
TUTORIAL_BODIES = {
    "iris": {
        "data": "5.099999999999999645e+00,3.299999999999999822e+00,"
        "1.699999999999999956e+00,5.000000000000000000e-01"
    },
    "house-price": {
        "data": "3.77E-02,8.00E+01,1.52E+00,0.00E+00,4.04E-01,7.27E+00,3.83E+01,"
        "7.31E+00,2.00E+00,3.29E+02,1.26E+01,3.92E+02,6.62E+00"
    },
}


@dataclass
class DemoResult:
    answers: dict[str, dict]
    left_after_destroy: list
    pages: dict[str, int] = field(default_factory=dict)  # each stack's page URL: the HTTP status it got


def ensure_trained(name: str, models_dir: Path | str = "models", console: Console | None = None) -> Path:
    """``models_dir/<name>``, trained first (with the package's defaults) if it is not there."""
    model_dir = Path(models_dir) / name
    if not (model_dir / TARBALL_NAME).is_file():
        from l2c.training import train_and_save

        if console is not None:
            console.print(f"training {name} (first run only) ...", highlight=False)
        train_and_save(name, models_dir=models_dir)
    return model_dir


def post(url: str, body: dict, api_key: str | None) -> tuple[int, dict]:
    headers = {"x-api-key": api_key} if api_key else {}
    response = httpx.post(url, json=body, headers=headers, timeout=60)
    return response.status_code, response.json()


def page_status(url: str) -> int:
    return httpx.get(url, timeout=30).status_code


def answer_text(name: str, status: int, answer: dict) -> str:
    if status != 200:
        return f"HTTP {status}: {json.dumps(answer)}"
    prediction = answer.get("prediction")
    if name == "house-price" and isinstance(prediction, (int, float)):
        return f"predicted median value {prediction:.2f} (in $1000s)"
    return f"predicted species {prediction}"


@contextmanager
def _scoped_environment():
    """The demo's cloud points this process's boto3 at itself; undo that (and keep the demo's
    files out of the working folder) once it is over."""
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="l2c-demo-") as folder:
        os.environ[STATE_DIR_ENV] = folder
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def run_demo(models_dir: Path | str = "models", console: Console | None = None) -> DemoResult:
    console = console or Console()
    model_dirs = {name: ensure_trained(name, models_dir, console) for name in MODELS}
    answers: dict[str, dict] = {}
    # Free ports and a throw-away state folder: the demo must not disturb an `l2c up` left running.
    with _scoped_environment(), LocalCloud(Ports.free(), models_dir=Path(models_dir).resolve()) as cloud:
        console.rule("local cloud")
        for line in cloud.exports():
            console.print(f"  {line}", highlight=False)
        session = connect(LOCAL)
        reporter = ConsoleReporter(console)
        deployments = {}
        for name, model_dir in model_dirs.items():
            console.rule(f"deploy {name}")
            deployments[name] = stack.deploy(name, model_dir, session=session, reporter=reporter)
            print_deployment(deployments[name], console, json.dumps(TUTORIAL_BODIES[name]))
        console.rule("call the API over HTTP, like Postman")
        for name, deployment in deployments.items():
            status, answer = post(deployment.url, TUTORIAL_BODIES[name], deployment.api_key)
            answers[name] = answer
            console.print(f"  POST {deployment.url}\n    -> {answer_text(name, status, answer)}", highlight=False)
        console.rule("prediction pages (served while the cloud runs; `l2c up` keeps them)")
        pages = {cloud.page_url(name): page_status(cloud.page_url(name)) for name in deployments}
        for url, status in pages.items():
            console.print(f"  GET {url} -> {status}", highlight=False)
        console.rule("status")
        print_status(stack.status(session), console)
        console.rule("destroy")
        stack.destroy(everything=True, session=session, reporter=reporter)
        left = stack.status(session)
        print_status(left, console)
    console.print("[green]done[/]: the local cloud is stopped")
    return DemoResult(answers=answers, left_after_destroy=left.resources, pages=pages)
