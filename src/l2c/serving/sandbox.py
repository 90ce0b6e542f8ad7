"""The load check: an untrusted artifact is tried in a throw-away child process first.

XGBoost's parser and predictor trust the model file: a few hundred bytes of nested UBJSON
make it eat memory until the machine swaps, deeper nesting overflows its stack, and a split on
a feature index past the model's width reads outside the row on the first prediction (a
segfault). A server that loads such a file in its own process dies with it, and takes every
other endpoint along. So before a process loads an artifact it did not write, it asks
:func:`check_artifact`, which, in a child process with a memory and CPU limit and a wall-clock
deadline:

1. unpacks the archive with bounds (:func:`l2c.artifact.read_tarball_member`),
2. loads the booster (:func:`l2c.artifact.load_booster_bytes`: version, width limit),
3. checks the trees' structure (every split on a feature the model has, every child index
   inside its tree, no node reached twice, so no cycle),
4. predicts a few probe rows (missing values, zeros, random and extreme values) through the
   same in-place prediction the engine uses, dense and sparse.

The answer is a :class:`Verdict`: ok, or a one-line reason. A child killed by a signal
becomes e.g. "XGBoost crashed while loading the model (signal 11, SIGSEGV)". Only after an ok
may the caller load the artifact in its own process (:func:`load_checked`).

Children are forked from a fork server that has already imported XGBoost (started once per
process, on first use or by :func:`warm_up`), so a check costs a tenth of a second rather than
the seconds a fresh interpreter needs to import XGBoost. The fork server is single-threaded and
never runs XGBoost code, so forking it is safe (forking a threaded server would not be).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from l2c import artifact
from l2c.artifact import ArtifactError, LoadedModel
from l2c.serving.engine import DensePredictor

MIB = 1024 * 1024
# Unpacking is bounded by l2c.artifact's limits: the largest allowed archive and its member fit
# in this much memory above the interpreter's own, and bzip2 at its slowest unpacks it in time.
UNPACK_MEMORY_BYTES = 2 * artifact.MAX_UNPACKED_BYTES + 256 * MIB
UNPACK_CPU_SECONDS = 20.0
# Loading needs the parser's document, XGBoost's trees and the JSON dump the structural check
# reads (as Python lists: ~30 bytes a value): measured at well under 24x the booster's size,
# plus a fixed allowance for a width-sized probe matrix and the libraries' buffers.
LOAD_MEMORY_BYTES = 512 * MIB
LOAD_MEMORY_PER_BOOSTER_BYTE = 24
LOAD_MEMORY_CAP_BYTES = 8 * 1024 * MIB
LOAD_CPU_SECONDS = 20.0
LOAD_CPU_SECONDS_PER_MIB = 0.5
# A child that sleeps or deadlocks uses no CPU: the wall-clock deadline catches it.
WALL_SLACK = 2.0
WALL_EXTRA_SECONDS = 10.0
WALL_GRACE_SECONDS = 5.0
STARTUP_TIMEOUT_SECONDS = 60.0
PROBE_RANDOM_ROWS = 8

_XGBOOST_STAGES = ("loading the model", "checking the trees", "predicting with the model")


@dataclass(frozen=True)
class Verdict:
    """What the check found: ``ok``, or the one-line ``reason`` the artifact is refused for."""

    ok: bool
    reason: str = ""
    seconds: float = 0.0
    peak_memory_bytes: int = 0  # the checker's largest resident set (inherited pages included)


class CheckUnavailable(OSError):
    """The check itself could not run (no child process): says nothing about the artifact."""


# --------------------------------------------------------------------------- the parent's side


def check_artifact(data: bytes, is_tarball: bool = True) -> Verdict:
    """Check ``model.tar.gz`` bytes (or a bare booster file's, ``is_tarball=False``) in a child."""
    started = time.monotonic()
    ours, theirs = socket.socketpair()
    try:
        _CHECKER.hand_over(theirs)
    finally:
        theirs.close()
    with ours:
        ours.settimeout(_wall_seconds(UNPACK_CPU_SECONDS))
        try:
            ours.sendall(struct.pack(">?Q", is_tarball, len(data)))
            ours.sendall(data)
        except OSError:  # the child already answered (or died, or stalled) without reading everything
            pass
        ok, reason, peak = _await_verdict(ours)
    return Verdict(ok, reason, time.monotonic() - started, peak)


def load_checked(data: bytes, is_tarball: bool = True) -> LoadedModel:
    """Check an artifact in a child, then load it here; a refusal is an :class:`ArtifactError`."""
    verdict = check_artifact(data, is_tarball)
    if not verdict.ok:
        raise ArtifactError(verdict.reason)
    return artifact.load_artifact_data(data, is_tarball)


def warm_up() -> None:
    """Start the fork server now (importing XGBoost takes seconds), so the first check is quick."""
    _CHECKER.ensure_running()


def warm_up_in_background() -> None:
    def run():
        try:
            warm_up()
        except CheckUnavailable:  # the first check tries again, and reports why it cannot
            pass

    threading.Thread(target=run, name="l2c-model-check-warm-up", daemon=True).start()


class _ForkServer:
    """A single-threaded child process with XGBoost imported that forks one checker per
    connection handed to it (over a Unix socket, with SCM_RIGHTS). It ends when this process does."""

    def __init__(self):
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._owner = os.getpid()

    def ensure_running(self) -> None:
        with self._lock:
            self._ensure_running()

    def hand_over(self, connection: socket.socket) -> None:
        with self._lock:
            for attempt in (1, 2):  # a fork server that died is started again, once
                self._ensure_running()
                try:
                    socket.send_fds(self._control, [b"c"], [connection.fileno()])
                    return
                except OSError as err:
                    self._stop()
                    if attempt == 2:
                        raise CheckUnavailable(f"the model check is not running: {artifact.one_line(err)}") from None

    def _ensure_running(self) -> None:
        if self._owner != os.getpid():  # a forked copy of the process that started it: start our own
            self._process = self._control = None
            self._owner = os.getpid()
        if self._process is not None and self._process.poll() is None:
            return
        self._stop()
        ours, theirs = socket.socketpair()
        package_root = str(Path(artifact.__file__).resolve().parents[1])
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH")))),
        }
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _SERVER_CODE % theirs.fileno()],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as err:
            ours.close()
            raise CheckUnavailable(f"the model check could not start: {artifact.one_line(err)}") from None
        finally:
            theirs.close()
        ours.settimeout(STARTUP_TIMEOUT_SECONDS)
        try:
            ready = ours.recv(16)
        except OSError:
            ready = b""
        if ready != b"ready":
            process.kill()
            process.wait()
            ours.close()
            raise CheckUnavailable("the model check did not start (cannot import XGBoost in a child process?)")
        ours.settimeout(None)
        self._process, self._control = process, ours

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = self._control = None


_CHECKER = _ForkServer()
# xgboost imports scikit-learn whenever it is installed (most of its import time); the check
# loads native boosters only, so the fork server never needs it.
_SERVER_CODE = "import sys; sys.modules.setdefault('sklearn', None); from l2c.serving.sandbox import _serve; _serve(%d)"


def _await_verdict(connection: socket.socket) -> tuple[bool, str, int]:
    """Read the checker's messages: its pid, each stage, then its verdict and how it ended."""
    stage, cpu_seconds, pid, verdict = "reading the archive", UNPACK_CPU_SECONDS, None, None
    lines = _lines(connection)
    while True:
        connection.settimeout(_wall_seconds(cpu_seconds) + WALL_GRACE_SECONDS)
        try:
            message = next(lines)
        except StopIteration:  # no word on how the checker ended: the fork server itself went away
            raise CheckUnavailable(f"the model check stopped while {stage}") from None
        except TimeoutError:  # the checker's own alarm did not end it: stop waiting
            if pid is not None:
                _kill(pid)
            return False, f"{stage} took more than {_wall_seconds(cpu_seconds):.0f} s", 0
        if "pid" in message:
            pid = message["pid"]
        elif "stage" in message:
            stage, cpu_seconds = message["stage"], message["cpu"]
        elif "verdict" in message:
            verdict = tuple(message["verdict"])
        elif "exit" in message:
            ok, reason = verdict or (False, _death_reason(message["exit"], stage, cpu_seconds))
            return ok, reason, message["peak_kib"] * 1024


def _lines(connection: socket.socket):
    pending = b""
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield json.loads(line)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _wall_seconds(cpu_seconds: float) -> float:
    return cpu_seconds * WALL_SLACK + WALL_EXTRA_SECONDS


def _death_reason(status: int, stage: str, cpu_seconds: float) -> str:
    """The reason for a checker that ended without a verdict, from its ``waitpid`` status."""
    if not os.WIFSIGNALED(status):
        return f"the model check ended without an answer while {stage} (exit status {os.WEXITSTATUS(status)})"
    number = os.WTERMSIG(status)
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown signal"
    if number == signal.SIGXCPU:
        return f"{stage} took more than {cpu_seconds:.0f} s of CPU"
    if number == signal.SIGALRM:
        return f"{stage} took more than {_wall_seconds(cpu_seconds):.0f} s"
    if number == signal.SIGKILL:
        return f"the model check was killed while {stage} (signal {number}, {name}), probably out of memory"
    who = "XGBoost" if stage in _XGBOOST_STAGES else "the model check"
    return f"{who} crashed while {stage} (signal {number}, {name})"


# --------------------------------------------------------------------------- the fork server


def _serve(control_fd: int) -> None:
    """Fork a checker for every connection the parent hands over; end when the parent does."""
    control = socket.socket(fileno=control_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the monitors reap themselves
    control.sendall(b"ready")
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 16, 1)
        except OSError:
            return
        if not fds:  # the parent closed its end: it is gone
            return
        connection = socket.socket(fileno=fds[0])
        if os.fork() == 0:
            control.close()
            _monitor(connection)
        connection.close()


def _monitor(connection: socket.socket) -> None:
    """Runs the checker in its own process and reports how that process ended."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    status = 0
    try:
        pid = os.fork()
        if pid == 0:
            _check_in_child(connection)
        _send(connection, {"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        _send(connection, {"exit": status, "peak_kib": usage.ru_maxrss})
    finally:
        os._exit(0)


def _send(connection: socket.socket, message: dict) -> None:
    try:
        connection.sendall(json.dumps(message).encode() + b"\n")
    except OSError:  # the parent stopped listening
        pass


# --------------------------------------------------------------------------- the child's side


def _check_in_child(connection: socket.socket) -> None:
    stage = "reading the archive"
    try:
        base = _address_space_bytes()
        _limit(base + UNPACK_MEMORY_BYTES, UNPACK_CPU_SECONDS)
        data, is_tarball = _read_request(connection)
        booster_data = artifact.read_tarball_member(data) if is_tarball else _bare_booster(data)
        del data
        stage = "loading the model"
        cpu_seconds = LOAD_CPU_SECONDS + LOAD_CPU_SECONDS_PER_MIB * len(booster_data) / MIB
        _limit(base + load_memory_bytes(len(booster_data)), cpu_seconds)
        _send(connection, {"stage": stage, "cpu": cpu_seconds})
        model = artifact.load_booster_bytes(booster_data)
        stage = "checking the trees"
        _send(connection, {"stage": stage, "cpu": cpu_seconds})
        check_trees(model)
        stage = "predicting with the model"
        _send(connection, {"stage": stage, "cpu": cpu_seconds})
        predict_probe_rows(model)
        _send(connection, {"verdict": [True, ""]})
    except BaseException as err:  # everything becomes a one-line reason, never a traceback
        _send(connection, {"verdict": [False, _refusal(err, stage)]})
    finally:
        os._exit(0)


def _read_request(connection: socket.socket) -> tuple[bytes, bool]:
    header = _read_exactly(connection, 9)
    is_tarball, size = struct.unpack(">?Q", header)
    if size > artifact.MAX_UNPACKED_BYTES:
        raise ArtifactError(f"the artifact is {size} bytes, over the {artifact.MAX_UNPACKED_BYTES}-byte limit")
    return _read_exactly(connection, size), is_tarball


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = connection.recv_into(view[got:])
        if n == 0:
            raise ArtifactError("the artifact was not sent completely")
        got += n
    return bytes(buffer)


def load_memory_bytes(booster_size: int) -> int:
    """The memory (above the interpreter's) a booster of this size may use while it is checked."""
    return min(LOAD_MEMORY_BYTES + LOAD_MEMORY_PER_BOOSTER_BYTE * booster_size, LOAD_MEMORY_CAP_BYTES)


def _memory_budget_text(stage: str) -> str:
    if stage == "reading the archive":
        return f"{UNPACK_MEMORY_BYTES // MIB} MiB"
    return (
        f"{LOAD_MEMORY_BYTES // MIB} MiB plus {LOAD_MEMORY_PER_BOOSTER_BYTE} bytes per byte of the model file, "
        f"at most {LOAD_MEMORY_CAP_BYTES // MIB} MiB"
    )


def _bare_booster(data: bytes) -> bytes:
    if len(data) > artifact.MAX_BOOSTER_BYTES:
        raise ArtifactError(f"the model file is {len(data)} bytes, over the {artifact.MAX_BOOSTER_BYTES}-byte limit")
    return data


def _refusal(err: BaseException, stage: str) -> str:
    if isinstance(err, MemoryError) or artifact.NOT_ENOUGH_MEMORY in str(err) or "bad_alloc" in str(err):
        return f"{stage} needed more memory than the model check allows ({_memory_budget_text(stage)})"
    if isinstance(err, ArtifactError):
        return artifact.one_line(err)
    if stage == "predicting with the model":
        return f"XGBoost cannot predict with the model: {artifact.one_line(err)}"
    return f"{stage} failed: {artifact.one_line(err)}"


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _limit(memory_bytes: int, cpu_seconds: float) -> None:
    """Bound the next stage: address space, CPU seconds from now, and wall-clock seconds from now
    (SIGALRM's default action ends the process even inside XGBoost's C++ code).

    Soft limits only: the data is hostile, not the code, and a later stage may raise them.
    """
    signal.alarm(int(_wall_seconds(cpu_seconds)) + 1)
    try:
        import resource
    except ImportError:  # not a Unix: the alarm and the parent's deadline still apply
        return
    cpu_limit = int(time.process_time() + cpu_seconds) + 1
    for which, soft in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_limit)):
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):  # e.g. RLIMIT_AS where the platform does not enforce it
            pass


# --------------------------------------------------------------------------- what the child checks


def check_trees(model: LoadedModel) -> None:
    """Refuse a booster whose trees would make XGBoost read or write out of bounds."""
    document = json.loads(bytes(model.booster.save_raw(raw_format="json")))
    learner = document["learner"]
    params = learner["learner_model_param"]
    num_feature = int(params["num_feature"])
    if num_feature > artifact.MAX_FEATURES:
        raise ArtifactError(
            f"the booster declares {num_feature} features, over the {artifact.MAX_FEATURES}-feature limit"
        )
    outputs = max(1, int(params.get("num_class", "0")), int(params.get("num_target", "1")))
    gradient_booster = learner["gradient_booster"]
    if gradient_booster["name"] == "gblinear":
        _check_linear(gradient_booster["model"], num_feature, outputs)
        return
    trees_model = (
        gradient_booster["gbtree"]["model"] if gradient_booster["name"] == "dart" else gradient_booster["model"]
    )
    trees, tree_info = trees_model["trees"], trees_model["tree_info"]
    if len(tree_info) != len(trees):
        raise ArtifactError(f"the booster has {len(trees)} trees but output groups for {len(tree_info)}")
    groups = np.asarray(tree_info, dtype=np.int64)
    if groups.size and (groups.min() < 0 or groups.max() >= outputs):
        raise ArtifactError(f"a tree writes to output group {int(groups.max())} of a model with {outputs}")
    _check_iteration_bounds(trees_model.get("iteration_indptr"), len(trees))
    for number, tree in enumerate(trees):
        _check_tree(number, tree, num_feature)


def _check_linear(model: dict, num_feature: int, outputs: int) -> None:
    expected = (num_feature + 1) * outputs
    if len(model["weights"]) != expected:
        raise ArtifactError(
            f"the linear booster has {len(model['weights'])} weights, not the {expected} its width needs"
        )


def _check_iteration_bounds(indptr, num_trees: int) -> None:
    if indptr is None:
        return
    bounds = np.asarray(indptr, dtype=np.int64)
    if bounds.size == 0 or bounds[0] != 0 or bounds[-1] != num_trees or np.any(np.diff(bounds) < 0):
        raise ArtifactError("the booster's iteration boundaries do not match its trees")


def _check_tree(number: int, tree: dict, num_feature: int) -> None:
    size = int(tree["tree_param"]["num_nodes"])
    arrays = {
        key: np.asarray(tree[key], dtype=np.int64) for key in ("left_children", "right_children", "split_indices")
    }
    for key, values in arrays.items():
        if values.shape != (size,):
            raise ArtifactError(f"tree {number} has {values.size} {key} for {size} nodes")
    if size < 1:
        raise ArtifactError(f"tree {number} has no nodes")
    left, right, split = arrays["left_children"], arrays["right_children"], arrays["split_indices"]
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        node = int(np.flatnonzero(leaf != (right == -1))[0])
        raise ArtifactError(f"node {node} of tree {number} has one child")
    children = np.concatenate([left[~leaf], right[~leaf]])
    outside = (children <= 0) | (children >= size)
    if np.any(outside):
        raise ArtifactError(f"tree {number} points to node {int(children[outside][0])}, outside its {size} nodes")
    # No node is anyone's child twice and the root is nobody's: what the root reaches is a tree.
    if np.unique(children).size != children.size:
        raise ArtifactError(f"tree {number} reaches a node twice (a cycle or a shared node)")
    bad_split = ~leaf & ((split < 0) | (split >= num_feature))
    if np.any(bad_split):
        node = int(np.flatnonzero(bad_split)[0])
        raise ArtifactError(
            f"node {node} of tree {number} splits on feature {int(split[node])}, but the model has {num_feature} features"
        )
    _check_categories(number, tree, size)


def _check_categories(number: int, tree: dict, size: int) -> None:
    nodes = np.asarray(tree.get("categories_nodes", []), dtype=np.int64)
    if nodes.size == 0:
        return
    segments = np.asarray(tree.get("categories_segments", []), dtype=np.int64)
    sizes = np.asarray(tree.get("categories_sizes", []), dtype=np.int64)
    total = len(tree.get("categories", []))
    if not (segments.shape == sizes.shape == nodes.shape):
        raise ArtifactError(f"tree {number} has inconsistent categorical splits")
    if np.any((nodes < 0) | (nodes >= size) | (segments < 0) | (sizes < 0) | (segments + sizes > total)):
        raise ArtifactError(f"tree {number} has a categorical split outside its category list")


def predict_probe_rows(model: LoadedModel) -> None:
    """Predict rows that reach every kind of branch, as the engine predicts (in place, one thread)."""
    width = model.num_features
    if width == 0:
        return
    rng = np.random.default_rng(0)
    rows = np.vstack(
        [
            np.full((1, width), np.nan),
            np.zeros((1, width)),
            np.full((1, width), 3e38),
            np.full((1, width), -3e38),
            rng.normal(scale=10.0 ** rng.integers(-3, 7, size=(PROBE_RANDOM_ROWS, 1)), size=(PROBE_RANDOM_ROWS, width)),
        ]
    ).astype(np.float32)
    predictor = DensePredictor(model.booster, threads=1)
    predictor.predict(rows)
    # The engine's libsvm path: a few rows, since a sparse copy of wide rows costs 12 bytes a value.
    predictor.booster.inplace_predict(sparse.csr_matrix(rows[1:6]), validate_features=False)
