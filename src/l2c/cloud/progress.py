"""How deploy and destroy tell a person what they are doing.

The steps talk to a reporter, not to a terminal: the CLI and notebooks show a console with a
spinner while waiting on AWS, tests pass a silent one and read what was said.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext


class Reporter:
    """Silent; keeps every line so callers (and tests) can read what happened."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    @contextmanager
    def waiting(self, message: str) -> Iterator[None]:
        self.lines.append(message)
        yield


class ConsoleReporter(Reporter):
    """A line per step, a spinner with elapsed time while waiting (rich renders in Jupyter too)."""

    def __init__(self, console=None) -> None:
        super().__init__()
        from rich.console import Console

        self.console = console or Console()

    def _can_animate(self) -> bool:
        """rich animates in Jupyter only through ipywidgets: without it, it prints a warning to
        install them and leaves an empty output behind, so a notebook gets the closing line only."""
        return not self.console.is_jupyter or importlib.util.find_spec("ipywidgets") is not None

    def step(self, message: str) -> None:
        super().step(message)
        self.console.print(f"  [green]✓[/] {message}", highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        super().warn(message)
        self.console.print(f"  [bold yellow]![/] {message}", highlight=False, soft_wrap=True)

    @contextmanager
    def waiting(self, message: str) -> Iterator[None]:
        self.lines.append(message)
        started = time.monotonic()
        spinner = self.console.status(f"{message} ...", spinner="dots") if self._can_animate() else nullcontext()
        with spinner:
            yield
        self.console.print(
            f"  [green]✓[/] {message} ({time.monotonic() - started:.0f} s)", highlight=False, soft_wrap=True
        )
