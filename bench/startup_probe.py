"""``python -m bench.startup_probe up ...``: `l2c up`, with a timestamped line at each phase.

The startup benchmark runs `l2c up` through this wrapper: the same CLI and code, plus lines
``@@ <epoch seconds> [thread] begin|end <phase>`` on stdout for what the console does not
show (imports, moto's start, the runtime process, the image lookup, the artifact check, each
deploy). Each function is wrapped only once its module is imported by `l2c up` itself, so the
probe changes neither what is imported nor when.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
import threading
import time

MARK = "@@"


def mark(phase: str) -> None:
    # One write per line: the deploy threads mark at the same time.
    sys.stdout.write(f"{MARK} {time.time():.4f} [{threading.current_thread().name}] {phase}\n")
    sys.stdout.flush()


def wrap(owner, name: str, phase: str, label=None) -> None:
    """Mark the start and the end of every call of ``owner.name``."""
    original = getattr(owner, name, None)
    if original is None or getattr(original, "_probed", False):
        return

    @functools.wraps(original)
    def probed(*args, **kwargs):
        what = f"{phase} {label(*args, **kwargs)}" if label else phase
        mark(f"begin {what}")
        try:
            return original(*args, **kwargs)
        finally:
            mark(f"end {what}")

    probed._probed = True
    setattr(owner, name, probed)


def _stack_name(name, *args, **kwargs) -> str:
    return name


def _model_dir(model_dir, *args, **kwargs) -> str:
    return str(model_dir).rstrip("/").rsplit("/", 1)[-1]


# module -> what to wrap in it, once it is imported
PROBES = {
    "l2c.local.control_plane": lambda m: wrap(m, "start", "moto start"),
    "l2c.local.runtime_process": lambda m: (
        wrap(m.RuntimeProcess, "start", "runtime spawn"),
        wrap(m.RuntimeProcess, "wait_ready", "runtime ready"),
    ),
    "l2c.local.cloud": lambda m: wrap(m.LocalCloud, "start", "cloud start"),
    "l2c.cloud.stack": lambda m: (
        wrap(m, "deploy", "deploy", _stack_name),
        wrap(m, "prepare", "prepare", _stack_name),
    ),
    "l2c.cloud.container": lambda m: wrap(m, "image_uri", "image uri"),
    "l2c.checks": lambda m: wrap(m, "check_model_dir", "artifact check", _model_dir),
    "l2c.cloud.sagemaker": lambda m: (
        wrap(m, "check_instance_quota", "instance quota check"),
        wrap(m, "check_hosting_change", "hosting change check"),
    ),
    "l2c.cloud.apigateway": lambda m: wrap(m, "refuse_route_collision", "route collision check"),
    "l2c.cloud.session": lambda m: wrap(m, "connect", "connect"),
}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Applies a probe right after its module has executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in PROBES:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def exec_and_probe(module, _exec=exec_module, _name=fullname):
                    _exec(module)
                    PROBES[_name](module)

                spec.loader.exec_module = exec_and_probe
                return spec
        return None


def main() -> None:
    mark("interpreter up")
    sys.meta_path.insert(0, _AfterImport())
    from l2c.cli import app

    mark("cli imported")
    sys.argv = ["l2c", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
