"""The Lambda data plane of the local cloud: runs the code that was deployed, as it was deployed.

For each invocation the function's configuration is read from the control plane; the zip it was
deployed with is unpacked once per code digest, and run in a separate worker process started
with exactly the function's environment variables plus what the Lambda runtime itself sets
(region, function name, credentials, and the endpoint variables that lead back to this local
cloud). A worker stays warm between invocations, as a Lambda execution environment does, and is
replaced when the code or configuration changes, killed when an invocation overruns the
function's timeout, and discarded when it dies.

A worker runs with the function's role, as on Lambda: its AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
and AWS_SESSION_TOKEN are temporary credentials of that role, from STS AssumeRole on the control
plane (kept per role until shortly before they expire, so starting a worker stays cheap).

Concurrency, as Lambda counts it: each execution running at once holds one worker. A function
with reserved concurrency (PutFunctionConcurrency) runs at most that many at once (0: none);
every other function draws from the local account's unreserved pool of
:data:`UNRESERVED_CONCURRENCY`. An invocation past its function's limit is refused at once with
:class:`InvocationThrottled` (Lambda's 429 ``TooManyRequestsException`` "Rate Exceeded."),
never queued: Lambda does not queue synchronous invocations, and a queue here would hold up
every caller of the gateway behind one slow function.

What differs from AWS: the worker runs this machine's Python (not the function's runtime
image), with no memory limit; the local account's concurrency is 10, not AWS's default 1,000
(each execution is a process on this machine), and reservations are not taken out of it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from l2c.local.lambda_runner import LOG_END_MARKER

RUNNER = Path(__file__).with_name("lambda_runner.py")
# Lambda quotas page: "Concurrent executions: 1,000" by default, and "New AWS accounts have
# reduced concurrency ... quotas". Locally each execution is a process, so the unreserved pool
# the functions share is small; a reservation gives its function its own count instead.
UNRESERVED_CONCURRENCY = 10
# Where each function's unpacked code lives while this process runs; a folder whose process is
# gone (killed with SIGKILL, say) is removed by the next LambdaHost.
ROOT_PREFIX = "l2c-lambda-"
MARKER_WAIT_S = 1.0
INIT_TIMEOUT_S = 10.0  # Lambda's limit for the init phase, which the function's timeout excludes
# CloudWatch Logs keeps a log group's events for its retention period (forever by default);
# locally each worker's log stream keeps its newest events only (some 500 invocations' worth),
# so the cloud's memory stays flat however long it serves.
LOG_EVENTS_PER_STREAM = 2_000
# Role credentials are renewed this long before they expire, so a worker never starts with stale ones.
CREDENTIALS_MARGIN_S = 300.0
log = logging.getLogger("l2c.local.lambdas")


class InvocationTimeout(Exception):
    """The function ran past its timeout; its worker was killed."""

    request_id = ""
    log_lines: list[str] = []


class InvocationCrashed(Exception):
    """The worker process died during the invocation (or could not be started)."""

    request_id = ""
    log_lines: list[str] = []
    exit_code: int | None = None  # the runtime process's, when it died


class InvocationThrottled(Exception):
    """The function is already running as many executions as its concurrency allows.

    ``reason`` is Lambda's TooManyRequestsException Reason (botocore's lambda model)."""

    def __init__(self, reason: str):
        super().__init__("Rate Exceeded.")
        self.reason = reason


def _exited(code: int | None) -> InvocationCrashed:
    crash = InvocationCrashed(f"the worker exited with code {code}")
    crash.exit_code = code
    return crash


@dataclass
class Invocation:
    ok: bool
    payload: object  # the handler's result, or Lambda's error object
    duration_ms: float
    request_id: str
    log_lines: list[str] = field(default_factory=list)


class Worker:
    """One warm execution environment: a Python process running lambda_runner.py."""

    def __init__(self, key: tuple, task_root: Path, handler: str, env: dict[str, str], log_stream: str):
        self.key = key
        self.log_stream = log_stream
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._invocation_logged = threading.Event()
        self._buffer = b""
        self._ready = False
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(RUNNER), str(task_root), handler, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(task_root),
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _drain_stderr(self) -> None:
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(LOG_END_MARKER):
                self._invocation_logged.set()
                continue
            with self._lines_lock:
                self._lines.append(line)

    def take_log_lines(self) -> list[str]:
        with self._lines_lock:
            lines, self._lines = self._lines, []
        return lines

    def invoke(self, request: dict, timeout_s: float) -> dict:
        if not self._ready:
            self._read_reply(time.monotonic() + INIT_TIMEOUT_S)
            self._ready = True
        self._invocation_logged.clear()
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _exited(self.process.poll()) from None
        reply = self._read_reply(time.monotonic() + timeout_s)
        self._invocation_logged.wait(MARKER_WAIT_S)
        return reply

    def _read_reply(self, deadline: float) -> dict:
        stdout = self.process.stdout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise InvocationTimeout()
                if not selector.select(remaining):
                    continue
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    self.process.wait(timeout=5)
                    raise _exited(self.process.returncode)
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Concurrency:
    """How many executions run at once: each reserved function on its own count, the others in
    one shared pool (Lambda's unreserved account concurrency)."""

    def __init__(self, unreserved: int):
        self.unreserved = unreserved
        self._running: dict[str | None, int] = {}  # a reserved function's ARN, or None for the pool
        self._freed = threading.Condition()

    @contextmanager
    def execution(self, arn: str, reserved: int | None, wait_s: float = 0.0):
        """Hold one execution for the block; past the limit, wait up to ``wait_s`` for one to end,
        then raise InvocationThrottled."""
        count = arn if reserved is not None else None
        limit = self.unreserved if reserved is None else reserved
        deadline = time.monotonic() + wait_s
        with self._freed:
            while self._running.get(count, 0) >= limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise InvocationThrottled(
                        "ConcurrentInvocationLimitExceeded"
                        if reserved is None
                        else "ReservedFunctionConcurrentInvocationLimitExceeded"
                    )
                self._freed.wait(remaining)
            self._running[count] = self._running.get(count, 0) + 1
        try:
            yield
        finally:
            with self._freed:
                self._running[count] -= 1
                if not self._running[count]:
                    del self._running[count]
                self._freed.notify_all()

    def running(self) -> int:
        with self._freed:
            return sum(self._running.values())


class LambdaHost:
    """Invokes functions deployed to the control plane, each in its own worker processes."""

    def __init__(self, boto_session, control_plane_url: str, cloud_env: dict[str, str], code_of, write_logs):
        """``cloud_env``: the AWS_* variables that point a worker back at this cloud.
        ``code_of(function_arn) -> bytes``: the deployed zip.
        ``write_logs(function_arn, group, stream, events, keep)``: stores log events without a
        round trip (the control plane's own store), keeping the stream's newest ``keep``."""
        self._lambda = boto_session.client("lambda", endpoint_url=control_plane_url)
        self._sts = boto_session.client("sts", endpoint_url=control_plane_url)
        self._credentials: dict[str, tuple[float, dict[str, str]]] = {}
        self._cloud_env = cloud_env
        self._code_of = code_of
        self._write_logs = write_logs
        remove_stale_roots()
        self._root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))
        self._lock = threading.Lock()
        self._idle: dict[str, list[Worker]] = {}
        self.concurrency = Concurrency(UNRESERVED_CONCURRENCY)
        self._workers: set[Worker] = set()

    def configuration(self, function: str) -> dict:
        return self._lambda.get_function_configuration(FunctionName=function)

    def reserved_concurrency(self, function: str) -> int | None:
        """The function's reserved concurrency (PutFunctionConcurrency), None when it has none."""
        try:
            reserved = self._lambda.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions")
        except self._lambda.exceptions.ResourceNotFoundException:
            return None
        return None if reserved is None else int(reserved)

    def resource_policy(self, function: str) -> list[dict]:
        try:
            return json.loads(self._lambda.get_policy(FunctionName=function)["Policy"]).get("Statement", [])
        except self._lambda.exceptions.ResourceNotFoundException:
            return []

    def invoke(self, config: dict, event: dict, timeout_s: float, wait_s: float = 0.0) -> Invocation:
        """Run one invocation; raises InvocationThrottled (at once, unless ``wait_s`` lets it wait
        for a running execution to end), InvocationTimeout or InvocationCrashed."""
        arn = config["FunctionArn"]
        request_id = str(uuid.uuid4())
        with self.concurrency.execution(arn, self.reserved_concurrency(arn), wait_s):
            worker = self._checkout(config)
            started = time.monotonic()
            request = {
                "event": event,
                "request_id": request_id,
                "function_arn": arn,
                "deadline_ms": time.time() * 1000 + timeout_s * 1000,
            }
            try:
                reply = worker.invoke(request, timeout_s)
            except InvocationTimeout as timed_out:
                timed_out.request_id = request_id
                timed_out.log_lines = self._forward_logs(
                    config, worker, request_id, started, f"Task timed out after {timeout_s:.2f} seconds"
                )
                self._retire(worker)
                raise
            except InvocationCrashed as crash:
                crash.request_id = request_id
                crash.log_lines = self._forward_logs(config, worker, request_id, started, f"Runtime exited: {crash}")
                self._retire(worker)
                raise
            lines = self._forward_logs(config, worker, request_id, started)
            self._checkin(arn, worker)
        duration = (time.monotonic() - started) * 1000
        payload = reply.get("result") if reply.get("ok") else {k: v for k, v in reply.items() if k != "ok"}
        return Invocation(bool(reply.get("ok")), payload, duration, request_id, lines)

    def _checkout(self, config: dict) -> Worker:
        arn, key = config["FunctionArn"], self._worker_key(config)
        with self._lock:
            idle = self._idle.setdefault(arn, [])
            stale = [worker for worker in idle if worker.key != key or not worker.alive]
            for worker in stale:
                idle.remove(worker)
                self._workers.discard(worker)
                worker.kill()
            if idle:
                return idle.pop()
        return self._start_worker(config, key)

    def _retire(self, worker: Worker) -> None:
        worker.kill()
        with self._lock:
            self._workers.discard(worker)

    def _checkin(self, arn: str, worker: Worker) -> None:
        if not worker.alive:
            self._retire(worker)
            return
        with self._lock:
            self._idle.setdefault(arn, []).append(worker)

    @staticmethod
    def _worker_key(config: dict) -> tuple:
        settings = {k: config.get(k) for k in ("Handler", "Timeout", "MemorySize", "Role", "Runtime", "Environment")}
        return config["CodeSha256"], json.dumps(settings, sort_keys=True)

    def _start_worker(self, config: dict, key: tuple) -> Worker:
        task_root = self._unpack(config)
        stream = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
        env = self.worker_environment(config, stream, task_root)
        worker = Worker(key, task_root, config["Handler"], env, stream)
        with self._lock:
            self._workers.add(worker)
        return worker

    def worker_environment(self, config: dict, log_stream: str, task_root: Path) -> dict[str, str]:
        """The function's own variables, then what the Lambda runtime sets (which wins)."""
        region = config["FunctionArn"].split(":")[3]
        env = dict((config.get("Environment") or {}).get("Variables") or {})
        env.update(self._cloud_env)
        env.update(self.role_credentials(config["Role"], config["FunctionName"]))
        env.update(
            {
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "AWS_LAMBDA_FUNCTION_NAME": config["FunctionName"],
                "AWS_LAMBDA_FUNCTION_VERSION": config.get("Version", "$LATEST"),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.get("MemorySize", 128)),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config['FunctionName']}",
                "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.get('Runtime', 'python')}",
                "LAMBDA_TASK_ROOT": str(task_root),
                "LANG": "en_US.UTF-8",
                "TZ": ":UTC",
                "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            }
        )
        return env

    def role_credentials(self, role_arn: str, function: str) -> dict[str, str]:
        """Temporary credentials of the function's role, as Lambda puts them in the environment."""
        with self._lock:
            kept = self._credentials.get(role_arn)
        if kept is not None and kept[0] > time.time():
            return kept[1]
        try:
            # Lambda names the session after the function (STS wants 2 to 64 characters).
            session_name = function[:64].ljust(2, "_")
            answer = self._sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
        except Exception as err:  # Lambda cannot run a function whose role it cannot assume
            raise InvocationCrashed(f"the function's role {role_arn} cannot be assumed: {err}") from None
        credentials = {
            "AWS_ACCESS_KEY_ID": answer["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": answer["SecretAccessKey"],
            "AWS_SESSION_TOKEN": answer["SessionToken"],
        }
        renew_at = answer["Expiration"].timestamp() - CREDENTIALS_MARGIN_S
        with self._lock:
            self._credentials[role_arn] = (renew_at, credentials)
        return credentials

    def _unpack(self, config: dict) -> Path:
        digest = config["CodeSha256"]
        folder = self._root / hashlib.sha256(digest.encode()).hexdigest()[:16]
        with self._lock:
            if folder.is_dir():
                return folder
            code = self._code_of(config["FunctionArn"])
            if base64.b64encode(hashlib.sha256(code).digest()).decode() != digest:
                raise InvocationCrashed("the stored package does not match the function's CodeSha256")
            staging = Path(tempfile.mkdtemp(dir=self._root))
            _extract_zip(code, staging)
            staging.rename(folder)
        return folder

    def _forward_logs(self, config, worker, request_id, started, failure: str | None = None) -> list[str]:
        duration = (time.monotonic() - started) * 1000
        lines = [f"START RequestId: {request_id} Version: $LATEST", *worker.take_log_lines()]
        if failure:
            lines.append(f"{_timestamp()} {request_id} {failure}")
        lines += [
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tMemory Size: {config.get('MemorySize', 128)} MB",
        ]
        self._put_logs(config, worker.log_stream, lines)
        return lines

    def _put_logs(self, config: dict, stream: str, lines: list[str]) -> None:
        function = config["FunctionName"]
        group = f"/aws/lambda/{function}"
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in lines]
        try:
            self._write_logs(config["FunctionArn"], group, stream, events, LOG_EVENTS_PER_STREAM)
        except Exception as err:  # logs are best effort; an invocation never fails for them
            log.warning("could not write logs of %s: %s", function, err)

    def stop(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers), set()
            self._idle.clear()
        for worker in workers:
            worker.kill()
        shutil.rmtree(self._root, ignore_errors=True)


def remove_stale_roots() -> None:
    """Remove the code folders of Lambda hosts whose process is gone (killed, so it could not)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*-*"):
        pid = folder.name.removeprefix(ROOT_PREFIX).split("-", 1)[0]
        try:
            mine = folder.is_dir() and folder.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed %s, left by a local cloud that did not stop (pid %s)", folder, pid)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def _extract_zip(code: bytes, target: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        for member in archive.infolist():
            destination = (target / member.filename).resolve()
            if not destination.is_relative_to(target.resolve()):
                raise InvocationCrashed(f"the package holds a path outside its folder: {member.filename}")
        archive.extractall(target)


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
