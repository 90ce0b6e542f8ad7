"""The local cloud's inference runtime, in a process of its own.

In the cloud's process it shared one GIL with moto and the gateway, which capped the whole
path near 250 req/s on two cores. Here it keeps what made it cheap there: its boto3 session
answers repeated control-plane reads from memory (:mod:`l2c.local.read_cache`) until moto's
change count moves, the count being read from the page the cloud's process shares with it.

The cloud's process owns this one: the child exits when its stdin reaches end of file, which
happens however the parent ends (even SIGKILL), so no runtime outlives its cloud. Its log
records come back as JSON lines on stdout and are handled by the parent's loggers (the console
of `l2c up`, pytest's capture); its stderr is the parent's. One ``RuntimeProcess`` is one life of
the child; :mod:`l2c.local.runtime_supervisor` starts another when one ends unasked.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from l2c.cloud.session import CloudError

READY = "l2c-runtime-ready"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
LOGGER = "l2c.serving"


class RuntimeProcess:
    """``start()`` spawns it and returns at once (its imports overlap the cloud's start-up);
    ``wait_ready()`` returns once it listens, or raises."""

    def __init__(self, host: str, port: int, region: str, changes, env: dict[str, str]):
        self.host, self.port, self.region = host, port, region
        self._changes, self._env = changes, env
        self._ready = threading.Event()
        self._stopping = threading.Lock()  # the supervisor and the cloud may both stop a dead one
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self._reader: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """It has listened (it may have exited since)."""
        return self._ready.is_set()

    def wait_listening(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def start(self) -> RuntimeProcess:
        fd = self._changes.fileno()
        level = logging.getLogger(LOGGER).getEffectiveLevel()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "l2c.local.runtime_process",
                self.host,
                str(self.port),
                self.region,
                str(fd),
                str(level),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **self._env},
            pass_fds=(fd,),
        )
        self.pid = self.process.pid
        self._reader = threading.Thread(target=self._read_stdout, name="l2c-runtime-stdout", daemon=True)
        self._reader.start()
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> RuntimeProcess:
        deadline = time.monotonic() + timeout
        process = self.process
        while not self._ready.wait(0.05):
            code = process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                from l2c.local.ports import ensure_port_free

                ensure_port_free(self.host, self.port, "the inference runtime")  # the likely cause, said clearly
                raise CloudError(
                    f"the inference runtime did not start on {self.host}:{self.port} "
                    + (f"(exit code {code}; its error is above)" if code is not None else f"within {timeout:.0f} s")
                )
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        with self._stopping:
            process, self.process = self.process, None
            if process is None:
                return
            if process.poll() is None:
                process.terminate()  # uvicorn finishes the requests in flight, then exits
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            try:
                process.stdin.close()
            except OSError:  # it died with bytes unread in the pipe: nothing left to tell it
                pass
            if self._reader is not None:
                self._reader.join(timeout)
            process.stdout.close()

    def _read_stdout(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line == READY:
                self._ready.set()
                continue
            try:
                item = json.loads(line)
                name, levelno, message = item["name"], item["levelno"], item["message"]
            except (ValueError, KeyError, TypeError):
                print(line, flush=True)  # something in the child printed: pass it on
                continue
            logger = logging.getLogger(name)
            if logger.isEnabledFor(levelno):
                record = logger.makeRecord(name, levelno, "(runtime process)", 0, message, None, None)
                record.exc_text = item.get("exc_text")
                logger.handle(record)


# --------------------------------------------------------------------------- the child


class _JsonLines(logging.Handler):
    def __init__(self, out):
        super().__init__()
        self._out = out
        self._lock_out = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc_text = logging.Formatter().formatException(record.exc_info) if record.exc_info else record.exc_text
            line = json.dumps(
                {"name": record.name, "levelno": record.levelno, "message": record.getMessage(), "exc_text": exc_text}
            )
            with self._lock_out:
                self._out.write(line + "\n")
                self._out.flush()
        except Exception:
            self.handleError(record)


def _exit_when_parent_goes() -> None:
    # The raw descriptor, not sys.stdin: a thread blocked in a buffered read aborts the
    # interpreter's shutdown. End of file: the parent closed the pipe or is gone.
    while os.read(0, 4096):
        pass
    os._exit(0)


def main(argv: list[str]) -> None:
    host, port, region, fd, level = argv[0], int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    # Ctrl-C reaches the whole process group; the parent decides when this one stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_parent_goes, name="l2c-parent-watch", daemon=True).start()
    out = sys.stdout
    sys.stdout = sys.stderr  # stdout is the parent's log channel
    logger = logging.getLogger(LOGGER)
    logger.addHandler(_JsonLines(out))
    logger.setLevel(level)
    logger.propagate = False
    # xgboost imports scikit-learn whenever it is installed (~1.7 s of this process's ~2.4 s of
    # imports, on `l2c up`'s critical path); the runtime loads native boosters only (pickles are
    # refused), so it never needs it.
    sys.modules.setdefault("sklearn", None)

    import boto3
    import uvicorn

    from l2c.config import LOCAL_CREDENTIALS
    from l2c.local.change_count import ChangeCount
    from l2c.local.read_cache import cache_reads
    from l2c.serving.runtime_api import BotoControlPlane, ContainerLog, LocalAuthorizer, runtime_app
    from l2c.serving.server import _config, settle_garbage_collector

    changes = ChangeCount(fd)  # moto's count, seen through the page the parent shares
    session = boto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )
    cache_reads(session, changes)
    # Re-resolved on every request (answered from memory until the count moves): a redeployed
    # endpoint answers with its new model at once.
    app = runtime_app(refresh_seconds=0.0, control_plane=BotoControlPlane(region, session))
    # A Lambda function's assumed-role credentials are checked against its role's policies, as
    # AWS checks them; the answers are kept until moto changes, so steady traffic asks nothing.
    app.authorizer = LocalAuthorizer(os.environ["AWS_ENDPOINT_URL"], changes)
    app.container_log = ContainerLog(session, region)
    settle_garbage_collector()
    server = uvicorn.Server(_config(app, host, port))

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.01)
        out.write(READY + "\n")
        out.flush()

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    out.flush()
    os._exit(0 if server.started else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
