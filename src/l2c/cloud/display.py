"""How deployments and status look on a console (the CLI, the demo and the notebooks share it)."""

from __future__ import annotations

from rich.console import Console

from l2c.cloud.stack import Deployment, Status


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


def print_status(status: Status, console: Console | None = None) -> None:
    console = console or Console()
    if not status.resources:
        console.print("nothing deployed: no l2c resource in this account and region")
        return
    for line in status_lines(status):
        console.print(line, highlight=False, soft_wrap=True)
    where = "would bill on AWS" if status.target == "local" else "bills"
    for endpoint in status.billing:
        console.print(f"[bold yellow]billing[/] endpoint {endpoint.name} {where} per instance-hour until destroyed", highlight=False)


def print_deployment(deployment: Deployment, console: Console | None = None, body: str | None = None) -> None:
    console = console or Console()
    console.print(f"[bold green]deployed[/] {deployment.stack} ({deployment.region})", highlight=False)
    for line in deployment.summary():
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print("  try it:", highlight=False)
    console.print(f"  {deployment.curl(body) if body else deployment.curl()}", highlight=False, soft_wrap=True)
