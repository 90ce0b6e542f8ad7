"""How deployments and status look on a console (the CLI, the demo and the notebooks share it)."""

from __future__ import annotations

from rich.console import Console

from l2c.cloud.inventory import Status
from l2c.cloud.stack import Deployment


def status_lines(status: Status) -> list[str]:
    """One block per stack (shared resources last), one line per resource: readable at any width."""
    where = "the local cloud" if status.target == "local" else "AWS"
    lines = [f"l2c on {where}, {status.region}"]
    for owner in [*status.stacks, None]:
        resources = status.of(owner)
        if not resources:
            continue
        lines.append(f"  {owner or 'shared by every stack'}")
        for resource in resources:
            detail = f"  ({resource.detail})" if resource.detail else ""
            lines.append(f"    {resource.service} {resource.kind}: {resource.name}{detail}")
    return lines


def runtime_line(runtime: dict | None) -> str | None:
    """What `l2c status` says of the local runtime: nothing while it has never crashed."""
    if not runtime:
        return None
    state, crashes, restarts = runtime.get("state"), runtime.get("crashes") or 0, runtime.get("restarts") or 0
    if state == "stopped":
        return "local runtime stopped: endpoints answer 503 until it is started again"
    if not crashes:
        return None
    last = runtime.get("last_exit") or {}
    exit_text = f"last exit: {last.get('reason', 'unknown')} at {_clock(last.get('at'))}"
    if state == "running":
        return f"local runtime restarted {_times(restarts)}; {exit_text}"
    retry = runtime.get("retry_in_s")
    when = f" (next try within {retry:.1f} s)" if isinstance(retry, (int, float)) else ""
    return f"local runtime restarting{when}, after {_times(crashes, 'exit')}; {exit_text}"


def _times(count: int, noun: str = "time") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _clock(stamp: str | None) -> str:
    """An ISO time from the cloud, as this machine's wall clock reads it."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except (AttributeError, ValueError):
        return "an unknown time"


def print_status(status: Status, console: Console | None = None) -> None:
    console = console or Console()
    if not status.resources:
        console.print("nothing deployed: no l2c resource in this account and region")
    for line in status_lines(status) if status.resources else []:
        console.print(line, highlight=False, soft_wrap=True)
    where = "would bill on AWS" if status.target == "local" else "bills"
    for endpoint in status.billing:
        console.print(
            f"[bold yellow]billing[/] endpoint {endpoint.name} {where} per instance-hour until destroyed",
            highlight=False,
        )
    runtime = runtime_line(status.runtime)
    if runtime:
        console.print(f"[bold yellow]{runtime}[/]", highlight=False, soft_wrap=True)


def print_deployment(
    deployment: Deployment, console: Console | None = None, body: str | None = None, show_key: bool | None = None
) -> None:
    """``show_key``: print the API key itself (None: only on the local cloud; masked on AWS)."""
    console = console or Console()
    console.print(f"[bold green]deployed[/] {deployment.stack} ({deployment.region})", highlight=False)
    for line in deployment.summary(show_key):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print("  try it:", highlight=False)
    curl = deployment.curl(body, show_key) if body else deployment.curl(show_key=show_key)
    console.print(f"  {curl}", highlight=False, soft_wrap=True)
