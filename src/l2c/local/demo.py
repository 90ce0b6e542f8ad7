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

from rich.console import Console

from l2c.cloud import inventory, stack, teardown
from l2c.cloud.display import print_deployment, print_status
from l2c.cloud.progress import ConsoleReporter
from l2c.cloud.session import LOCAL, connect
from l2c.config import STATE_DIR_ENV
from l2c.local.cloud import LocalCloud, Ports
from l2c.local.tutorial import MODELS, TUTORIAL_BODIES, answer_text, page_status, post
from l2c.training import ensure_trained


@dataclass
class DemoResult:
    answers: dict[str, dict]
    left_after_destroy: list
    pages: dict[str, int] = field(default_factory=dict)  # each stack's page URL: the HTTP status it got


@contextmanager
def _throwaway_state_dir():
    """The deploys' files (filled Postman environments) go to a temporary folder, not the
    working folder's .l2c/, for as long as the demo runs."""
    saved = os.environ.get(STATE_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="l2c-demo-") as folder:
        os.environ[STATE_DIR_ENV] = folder
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(STATE_DIR_ENV, None)
            else:
                os.environ[STATE_DIR_ENV] = saved


def run_demo(models_dir: Path | str = "models", console: Console | None = None) -> DemoResult:
    console = console or Console()
    model_dirs = {name: ensure_trained(name, models_dir, console) for name in MODELS}
    answers: dict[str, dict] = {}
    # Free ports and a throw-away state folder: the demo must not disturb an `l2c up` left running.
    with _throwaway_state_dir(), LocalCloud(Ports.free(), models_dir=Path(models_dir).resolve()) as cloud:
        console.rule("local cloud")
        for line in cloud.exports():
            console.print(f"  {line}", highlight=False)
        session = connect(LOCAL, env=cloud.env)
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
        print_status(inventory.status(session), console)
        console.rule("destroy")
        teardown.destroy(everything=True, session=session, reporter=reporter)
        left = inventory.status(session)
        print_status(left, console)
    console.print("[green]done[/]: the local cloud is stopped")
    return DemoResult(answers=answers, left_after_destroy=left.resources, pages=pages)
