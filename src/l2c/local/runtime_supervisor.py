"""Keeps the local cloud's inference runtime up: a runtime process that exits unasked is started
again, on the same port, after a delay that grows while it keeps failing.

A crash there (XGBoost reading a crafted booster can take the process down with a signal) would
otherwise leave every endpoint answering 503 "retry shortly" forever while the control plane
still says InService. The delay starts at :data:`FIRST_DELAY_S`, doubles on each exit up to
:data:`MAX_DELAY_S`, and starts over once a process has served for :data:`STABLE_S`: a model
that crashes the runtime on every request cannot make it spin. A start that fails because the
port is still held (the dead process's socket, a stray listener) is one more exit: it is tried
again, later.

Only an exit nobody asked for is undone: :meth:`RuntimeSupervisor.stop` (the cloud stopping, or
a test stopping the runtime to see the 503s) ends supervision first. The very first start is not
retried either: its failure is `l2c up`'s error to report (a port in use, a broken install).

What happened is kept in a :class:`RuntimeRecord`, which the edge answers at ``GET /_l2c/runtime``
and `l2c status` shows.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from l2c.cloud.session import CloudError
from l2c.local.runtime_process import STARTUP_TIMEOUT_SECONDS, STOP_TIMEOUT_SECONDS, RuntimeProcess

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0
STABLE_S = 10.0  # served this long, its next exit is a new incident, not part of a crash loop
log = logging.getLogger("l2c.local")


class Backoff:
    """How long to wait before the next start, given how long the last process served."""

    def __init__(self, first: float = FIRST_DELAY_S, cap: float = MAX_DELAY_S, stable: float = STABLE_S):
        self.first, self.cap, self.stable = first, cap, stable
        self._next = first

    def after_exit(self, served_s: float) -> float:
        if served_s >= self.stable:
            self._next = self.first
        delay, self._next = self._next, min(self.cap, self._next * 2)
        return delay


def exit_reason(code: int | None) -> str:
    """``-11`` -> ``signal 11 (SIGSEGV)``, as Popen reports a death by signal."""
    if code is None:
        return "not started"
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class RuntimeRecord:
    """The runtime's story since the cloud started: kept across stop/start, read from any thread."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._state, self._pid = "stopped", None
        self._crashes = self._restarts = 0
        self._last_exit: dict | None = None
        self._last_restart_at: str | None = None
        self._retry_in_s: float | None = None

    def starting(self, pid: int, again: bool) -> None:
        with self._lock:
            self._state, self._pid, self._retry_in_s = ("restarting" if again else "starting"), pid, None

    def running(self, again: bool) -> None:
        with self._lock:
            self._state = "running"
            if again:
                self._restarts += 1
                self._last_restart_at = _now()

    def exited(self, code: int | None, delay_s: float) -> None:
        with self._lock:
            self._crashes += 1
            self._state, self._pid, self._retry_in_s = "restarting", None, delay_s
            self._last_exit = {"code": code, "reason": exit_reason(code), "at": _now(), "restart_delay_s": delay_s}

    def stopped(self) -> None:
        with self._lock:
            self._state, self._pid, self._retry_in_s = "stopped", None, None

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "state": self._state,
                "pid": self._pid,
                "url": f"http://{self.host}:{self.port}",
                "crashes": self._crashes,
                "restarts": self._restarts,
                "last_exit": dict(self._last_exit) if self._last_exit else None,
                "last_restart_at": self._last_restart_at,
                "retry_in_s": self._retry_in_s,
            }


class RuntimeSupervisor:
    """One supervised runtime: ``start()`` spawns it, a watcher thread restarts it when it exits
    unasked, ``stop()`` ends both. ``spawn`` starts one :class:`RuntimeProcess` (not waiting)."""

    def __init__(self, spawn: Callable[[], RuntimeProcess], record: RuntimeRecord, backoff: Backoff | None = None):
        self._spawn = spawn
        self.record = record
        self._backoff = backoff or Backoff()
        self._stopping = threading.Event()
        self._serving = threading.Event()  # the current process listens
        self._lock = threading.Lock()  # between a restart's spawn and stop()
        self._current: RuntimeProcess | None = None
        self._first: RuntimeProcess | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> RuntimeSupervisor:
        self._first = self._current = self._spawn()
        self.record.starting(self._current.pid, again=False)
        self._watcher = threading.Thread(target=self._watch, name="l2c-runtime-supervisor", daemon=True)
        self._watcher.start()
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Until it listens. The first start's failure is raised, as before supervision; after
        that, a runtime that is restarting is waited for."""
        if not self._first.ready:
            self._first.wait_ready(timeout)
            return
        if not self._serving.wait(timeout):
            raise CloudError(f"the inference runtime is restarting and did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        with self._lock:
            self._stopping.set()  # first: the exit below is asked for
            current = self._current
        if current is not None:
            current.stop(timeout)
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout)
        self._serving.clear()
        self.record.stopped()

    # ----------------------------------------------------------------- the watcher

    def _watch(self) -> None:
        try:
            self._supervise()
        except Exception:  # a bug here must say that supervision ended, not end it silently
            log.exception("the inference runtime's supervision failed; a crash of it is no longer undone")

    def _supervise(self) -> None:
        runtime, again = self._current, False
        while True:
            code, served_s = self._until_exit(runtime, again)
            if self._stopping.is_set():
                return
            if not again and not runtime.ready:
                return  # the first start failed: wait_ready reports it to whoever started the cloud
            delay = self._backoff.after_exit(served_s)
            self.record.exited(code, delay)
            log.warning(
                "the inference runtime %s (%s, pid %s); starting it again on %s:%d in %.1f s",
                "exited unexpectedly" if runtime.ready else "did not come back",
                exit_reason(code),
                runtime.pid,
                runtime.host,
                runtime.port,
                delay,
            )
            runtime.stop()  # closes the dead one's pipes
            if self._stopping.wait(delay):
                return
            runtime, again = self._restart(), True
            if runtime is None:
                return

    def _until_exit(self, runtime: RuntimeProcess, again: bool) -> tuple[int | None, float]:
        """Blocks until the process exits: its exit code, and how long it served."""
        process = runtime.process
        if process is None:  # stopped already
            return None, 0.0
        started = time.monotonic()
        while not runtime.wait_listening(0.02):
            if process.poll() is not None or self._stopping.is_set():
                return process.poll(), 0.0
            if time.monotonic() - started > STARTUP_TIMEOUT_SECONDS:
                process.kill()  # hung in its start: as good as dead
        ready_at = time.monotonic()
        self._serving.set()
        self.record.running(again)
        if again:
            log.info("the inference runtime is back on %s:%d (pid %s)", runtime.host, runtime.port, runtime.pid)
        code = process.wait()
        self._serving.clear()
        return code, time.monotonic() - ready_at

    def _restart(self) -> RuntimeProcess | None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return None
                try:
                    self._current = self._spawn()
                    break
                except OSError as err:  # no process at all (out of descriptors, say): later, again
                    failure = err
            delay = self._backoff.after_exit(0.0)
            self.record.exited(None, delay)
            log.warning("the inference runtime could not be started again (%s); trying in %.1f s", failure, delay)
            if self._stopping.wait(delay):
                return None
        self.record.starting(self._current.pid, again=True)
        return self._current
