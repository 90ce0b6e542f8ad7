"""The console reporter in a notebook: no spinner without ipywidgets, so no warning and no empty output."""

import importlib.util
import io
import time
import warnings

from rich.console import Console

from l2c.cloud.progress import ConsoleReporter


def test_a_notebook_without_ipywidgets_gets_the_closing_line_and_no_warning(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else real_find_spec(name, *a)
    )
    reporter = ConsoleReporter(Console(file=io.StringIO(), force_jupyter=True, width=100))
    printed = []
    monkeypatch.setattr(
        reporter.console, "print", lambda text, **_: printed.append(text)
    )  # Jupyter shows it via IPython
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with reporter.waiting("waiting for endpoint l2c-iris"):
            time.sleep(0.3)  # a spinner would refresh (and warn, from its thread) several times by now
    assert not [w for w in caught if "ipywidgets" in str(w.message)]
    assert len(printed) == 1 and "waiting for endpoint l2c-iris" in printed[0]
    assert reporter.lines == ["waiting for endpoint l2c-iris"]


def test_a_terminal_still_gets_the_spinner(monkeypatch):
    reporter = ConsoleReporter(Console(file=io.StringIO(), force_terminal=True))
    assert reporter._can_animate()
