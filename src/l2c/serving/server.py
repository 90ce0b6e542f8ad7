"""Starting the two faces on uvicorn: blocking with N worker processes, or in a thread for tests.

- :func:`serve_container` / :func:`serve_command` — ``l2c serve MODEL``: the container face.
- :func:`serve_runtime` — the Runtime-API face in the foreground (`python -m l2c.serving.server runtime`).
- :func:`start_container_in_thread` / :func:`start_runtime_in_thread` — the same in a
  background thread of this process, on a free port; returns a :class:`RunningServer`.

Only loopback is a sensible host here: nothing authenticates the callers.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from l2c.artifact import ArtifactError, LoadedModel, load_artifact
from l2c.config import RUNTIME_REFRESH_ENV, SERVE_MODEL_ENV, SERVE_MODEL_SHA256_ENV
from l2c.serving.container import ContainerApp, container_app
from l2c.serving.engine import ContainerSettings
from l2c.serving.http_limits import CONTAINER_LIMITS, RUNTIME_LIMITS, HttpLimits, protocol_for

STARTUP_TIMEOUT_SECONDS = 20.0
# Idle keep-alive connections are closed after limits.keep_alive_seconds: 3 s on the container
# face (the container's nginx, `keepalive_timeout 3`), 60 s on the Runtime-API face (see
# l2c.serving.http_limits).


@dataclass
class RunningServer:
    """A uvicorn server running in a daemon thread of this process."""

    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _http_options(limits: HttpLimits) -> dict:
    # httptools (uvicorn's C parser, which the limits build on) and uvloop are in
    # requirements.txt; without uvloop the loop falls back to asyncio's. No upgrades (websockets)
    # are served: an upgraded connection would leave the limits behind.
    options = {
        "http": protocol_for(limits),
        "ws": "none",
        "timeout_keep_alive": limits.keep_alive_seconds,
        "loop": "asyncio",
    }
    if importlib.util.find_spec("uvloop"):
        options["loop"] = "uvloop"
    return options


def limits_for(app) -> HttpLimits:
    """The container face's limits (its nginx) or the Runtime-API face's (AWS's front end)."""
    return CONTAINER_LIMITS if isinstance(app, ContainerApp) else RUNTIME_LIMITS


def _config(app, host: str, port: int, limits: HttpLimits | None = None, **extra) -> uvicorn.Config:
    options = {**_http_options(limits or limits_for(app)), **extra}
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", server_header=False, **options
    )


def start_in_thread(
    app, host: str = "127.0.0.1", port: int = 0, limits: HttpLimits | None = None, **options
) -> RunningServer:
    """Serve an ASGI app from a daemon thread; ``port=0`` picks a free port.

    ``limits`` default to the face's own (:func:`limits_for`); ``options`` override the uvicorn
    settings above (keep-alive, protocol class, ...)."""
    server = uvicorn.Server(_config(app, host, port, limits, **options))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{host}:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start (port in use?)")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(host=host, port=bound_port, server=server, thread=thread)


# --------------------------------------------------------------------------- container face


def start_container_in_thread(
    model: LoadedModel | str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: ContainerSettings | None = None,
    limits: HttpLimits = CONTAINER_LIMITS,
) -> RunningServer:
    """The container face for a model (a LoadedModel, model folder or tarball) in a thread."""
    loaded = model if isinstance(model, LoadedModel) else load_artifact(model)
    return start_in_thread(container_app(loaded, settings), host, port, limits)


def container_app_from_env():
    """uvicorn factory for worker processes: the model path comes from ``L2C_SERVE_MODEL``.

    The serving process checked the file before starting the workers; a worker loads it only
    if it still has the checked content (``L2C_SERVE_MODEL_SHA256``), else it stops with one line.
    """
    from l2c.artifact import load_artifact_data, read_artifact_file, sha256_bytes

    try:
        data, is_tarball = read_artifact_file(os.environ[SERVE_MODEL_ENV])
        if sha256_bytes(data) != os.environ.get(SERVE_MODEL_SHA256_ENV):
            raise ArtifactError(f"{os.environ[SERVE_MODEL_ENV]} changed after it was checked; start l2c serve again")
        app = container_app(load_artifact_data(data, is_tarball))
    except (ArtifactError, OSError) as err:
        announce(f"error: {err}")
        raise SystemExit(1) from None
    settle_garbage_collector()
    return app


def settle_garbage_collector() -> None:
    """Keep the collector off the request path in a long-running server process.

    Everything alive after start-up (numpy, pandas, xgboost, the model) is frozen out of the
    collector's scans, and young-generation passes run less often: a full pass over the
    imported libraries would otherwise add milliseconds to whichever request triggers it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def serve_container(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the container face in the foreground until interrupted.

    ``workers`` defaults to one per CPU, as the container's gunicorn does. The model is checked
    in a child process (:mod:`l2c.serving.sandbox`: a booster that crashes XGBoost crashes the
    child, not this process) and then loaded here, so that a bad artifact fails before any
    worker starts; then ``on_ready`` gets a one-line description of what is served where.
    """
    from l2c.artifact import read_artifact_file, sha256_bytes
    from l2c.serving.sandbox import load_checked

    data, is_tarball = read_artifact_file(model_path)
    loaded = load_checked(data, is_tarball)
    settings = ContainerSettings.from_env()
    workers = workers or os.cpu_count() or 1
    log_to_stderr()
    if on_ready is not None:
        on_ready(
            f"serving {model_path} ({loaded.objective}, {loaded.num_features} features) like the SageMaker XGBoost "
            f"container on http://{host}:{port} with {workers} worker(s): GET /ping, POST /invocations; Ctrl-C stops"
        )
    if workers == 1:
        app = container_app(loaded, settings)
        settle_garbage_collector()
        uvicorn.run(app, **_run_options(host, port))
        return
    os.environ[SERVE_MODEL_ENV] = str(Path(model_path).resolve())
    os.environ[SERVE_MODEL_SHA256_ENV] = sha256_bytes(data)
    del data
    uvicorn.run("l2c.serving.server:container_app_from_env", factory=True, workers=workers, **_run_options(host, port))


def serve_command(model: str, host: str = "127.0.0.1", port: int = 8080, workers: int | None = None) -> int:
    """``l2c serve MODEL``: returns the exit code; prints one line, never a stack trace, on errors."""
    try:
        serve_container(model, host=host, port=port, workers=workers, on_ready=announce)
    except (ArtifactError, OSError, ValueError) as err:  # the model check not starting is an OSError
        announce(f"error: {err}")
        return 1
    return 0


def announce(line: str) -> None:
    print(line, flush=True)


def _run_options(host: str, port: int, limits: HttpLimits = CONTAINER_LIMITS) -> dict:
    return {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "server_header": False,
        **_http_options(limits),
    }


# --------------------------------------------------------------------------- runtime-API face


def start_runtime_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    refresh_seconds: float | None = None,
    control_plane=None,
    limits: HttpLimits = RUNTIME_LIMITS,
) -> RunningServer:
    """The Runtime-API face in a thread, resolving endpoints through boto3.

    boto3 finds the control plane the usual way, so set ``AWS_ENDPOINT_URL`` (moto), region
    and credentials in the environment first. ``control_plane`` replaces boto3 in unit tests.
    """
    from l2c.serving.runtime_api import runtime_app

    return start_in_thread(
        runtime_app(refresh_seconds=refresh_seconds, control_plane=control_plane), host, port, limits
    )


def runtime_app_from_env():
    """uvicorn factory for the Runtime-API face's worker processes."""
    from l2c.serving.runtime_api import runtime_app

    app = runtime_app()
    settle_garbage_collector()
    return app


def serve_runtime(
    host: str = "127.0.0.1", port: int = 8081, workers: int = 1, refresh_seconds: float | None = None
) -> None:
    """Serve the Runtime-API face in the foreground until interrupted (for `python -m l2c.serving.server runtime`)."""
    if refresh_seconds is not None:
        os.environ[RUNTIME_REFRESH_ENV] = str(refresh_seconds)
    log_to_stderr()
    options = _run_options(host, port, RUNTIME_LIMITS)
    if workers == 1:
        uvicorn.run(runtime_app_from_env(), **options)
        return
    uvicorn.run("l2c.serving.server:runtime_app_from_env", factory=True, workers=workers, **options)


def log_to_stderr() -> None:
    """Show the server's warnings (failed look-ups, our own bugs) when it runs in the foreground."""
    logger = logging.getLogger("l2c.serving")
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """``python -m l2c.serving.server container MODEL`` or ``... runtime``: one face in the foreground."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m l2c.serving.server", description="Serve one face of l2c's runtime."
    )
    faces = parser.add_subparsers(dest="face", required=True)
    container = faces.add_parser("container", help="GET /ping, POST /invocations for one model")
    container.add_argument("model", help="a model folder, model.tar.gz or booster file")
    runtime = faces.add_parser("runtime", help="POST /endpoints/{name}/invocations, resolved through boto3")
    runtime.add_argument("--refresh-seconds", type=float, default=None)
    for face, default_port in ((container, 8080), (runtime, 8081)):
        face.add_argument("--host", default="127.0.0.1")
        face.add_argument("--port", type=int, default=default_port)
        face.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    if args.face == "container":
        return serve_command(args.model, host=args.host, port=args.port, workers=args.workers)
    serve_runtime(host=args.host, port=args.port, workers=args.workers or 1, refresh_seconds=args.refresh_seconds)
    return 0


logging.getLogger("l2c.serving").addHandler(logging.NullHandler())

if __name__ == "__main__":
    raise SystemExit(main())
