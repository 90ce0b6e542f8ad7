"""How long `l2c up` takes until both tutorial models are deployed and answering, and where it goes.

Each run starts `l2c up` as a user does (a subprocess on free ports, trained models, a fresh
state folder), through :mod:`bench.startup_probe`, which prints a timestamped line at each
phase the console does not show. The bench reads those lines and the console's own step lines,
and as soon as `l2c up` says it is serving, POSTs the tutorial's body to both APIs with the key:
the run is done when both answer 200. Printed per run: interpreter and CLI import, the cloud's
start (moto, the runtime process), each model's deploy and its steps, the first successful API
call of each model, and the total.

Baselines measured in the same run: ``python -c "import boto3, moto.server"`` (the floor of
any Python process that runs moto) and the bare local cloud, ``python -m l2c.local`` on free
ports without deploys (until it writes its state file).

The first run uses an empty cache folder (``XDG_CACHE_HOME``), as on a fresh machine; the later
ones reuse it, as every later `l2c up` does. Target: ready in at most 10 s (later runs).

    python -m bench startup             # 3 runs of `l2c up` (~1.5 minutes)
    python -m bench startup --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.runtime_bench import REPO, machine

RESULTS = REPO / "bench" / "results" / "startup.json"
TARGET_S = 10.0
MODELS = ("iris", "house-price")
START_TIMEOUT_S = 120
# A console step: "  ✓ [iris] bucket ..." (concurrent deploys) or "  ✓ bucket ..." (one at a time).
STEP = re.compile(r"^\s*✓ (?:\[(?P<stack>[\w-]+)\] )?(?P<what>.+)$")


@dataclass
class Run:
    started: float  # epoch seconds when the process was spawned
    marks: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, thread, phase)
    steps: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, stack, step line)
    serving: float | None = None
    answered: dict[str, float] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    output: list[str] = field(default_factory=list)

    def at(self, phase: str) -> float | None:
        return next((t for t, _, p in self.marks if p == phase), None)

    def span(self, phase: str) -> float | None:
        begin, end = self.at(f"begin {phase}"), self.at(f"end {phase}")
        return None if begin is None or end is None else end - begin

    @property
    def total(self) -> float | None:
        return max(self.answered.values()) if len(self.answered) == len(MODELS) else None


# --------------------------------------------------------------------------- models and processes


def trained_models() -> Path:
    """models/ when both tutorial models are trained there, else both trained into a temporary folder."""
    models = REPO / "models"
    if all((models / name / "model.tar.gz").is_file() for name in MODELS):
        return models
    from l2c.training import train_and_save

    folder = Path(tempfile.mkdtemp(prefix="l2c-bench-startup-models-"))
    print(f"training both tutorial models into {folder} (not part of the figures)", flush=True)
    for name in MODELS:
        train_and_save(name, models_dir=folder)
    return folder


def free_ports() -> list[str]:
    from l2c.local.ports import free_ports as pick

    return [str(port) for port in pick(3)]


def base_env(folder: Path, cache: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "L2C_"))}
    return {
        **env,
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "220",
        "L2C_STATE_DIR": str(folder / "state"),
        "XDG_CACHE_HOME": str(cache),
        # The bench's own package first; an l2c tree given in PYTHONPATH (a before/after comparison) next.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def time_imports(repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import boto3, moto.server"], check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def time_bare_cloud(cache: Path) -> float:
    """``python -m l2c.local`` until its state file exists: the cloud alone, no deploy."""
    with tempfile.TemporaryDirectory(prefix="l2c-bench-startup-") as name:
        folder = Path(name)
        state = folder / "local-cloud.json"
        cp, rt, api = free_ports()
        command = [
            sys.executable,
            "-m",
            "l2c.local",
            "--control-plane-port",
            cp,
            "--runtime-port",
            rt,
            "--api-port",
            api,
            "--state-file",
            str(state),
        ]
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=folder, env=base_env(folder, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while not state.is_file():
                if process.poll() is not None or time.monotonic() - started > START_TIMEOUT_S:
                    raise RuntimeError("the bare local cloud did not start")
                time.sleep(0.02)
            return time.monotonic() - started
        finally:
            process.terminate()
            process.wait(timeout=30)


def run_up(models: Path, cache: Path) -> Run:
    """One `l2c up` (through the probe) until both APIs answered 200; then stopped."""
    with tempfile.TemporaryDirectory(prefix="l2c-bench-startup-") as name:
        folder = Path(name)
        cp, rt, api = free_ports()
        command = [
            sys.executable,
            "-m",
            "bench.startup_probe",
            "up",
            "--control-plane-port",
            cp,
            "--runtime-port",
            rt,
            "--api-port",
            api,
            "--models-dir",
            str(models),
        ]
        run = Run(started=time.time())
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=base_env(folder, cache),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        serving = threading.Event()
        reader = threading.Thread(target=_read_output, args=(process, run, serving), daemon=True)
        reader.start()
        try:
            if not serving.wait(START_TIMEOUT_S):
                raise RuntimeError("`l2c up` did not get to serving:\n" + "\n".join(run.output[-30:]))
            for stack in MODELS:
                _first_answer(run, stack)
        finally:
            process.terminate()
            process.wait(timeout=30)
        return run


def _read_output(process, run: Run, serving: threading.Event) -> None:
    for line in process.stdout:
        now = time.time() - run.started
        line = line.rstrip("\n")
        run.output.append(line)
        if line.startswith("@@ "):
            _, stamp, thread, phase = line.split(" ", 3)
            run.marks.append((float(stamp) - run.started, thread.strip("[]"), phase))
            continue
        found = STEP.match(line)
        if found:
            run.steps.append((now, found["stack"] or "", found["what"]))
        url = re.search(r"invoke URL (\S+/(\w+)prediction)", line)
        if url:
            run.urls[url.group(1).rsplit("/", 1)[1]] = url.group(1)
        key = re.search(r"API key\s+(\S{20,})", line)
        if key:
            run.api_key = key.group(1)
        if "serving; Ctrl-C" in line:
            run.serving = now
            serving.set()


def _first_answer(run: Run, stack: str) -> None:
    from l2c.local.tutorial import TUTORIAL_BODIES

    resource = stack.replace("-", "") + "prediction"
    url = run.urls.get(resource)
    if url is None:
        raise RuntimeError(f"`l2c up` printed no invoke URL for {stack}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = httpx.post(url, json=TUTORIAL_BODIES[stack], headers={"x-api-key": run.api_key or ""}, timeout=60)
        if reply.status_code == 200:
            run.answered[stack] = time.time() - run.started
            return
        time.sleep(0.05)
    raise RuntimeError(f"{url} never answered 200")


# --------------------------------------------------------------------------- report


def split(run: Run) -> dict:
    """Where one run's time went, in seconds from the process's spawn."""
    rows = {
        "interpreter + CLI import": run.at("cli imported"),
        "cloud start (from spawn)": run.at("end cloud start"),
        "  moto start": run.span("moto start"),
        # `l2c up` waits for the runtime only before its first API calls: ready by then at the latest.
        "  runtime process ready, seen from its spawn": _since(
            run.at("end runtime ready"), run.at("begin runtime spawn")
        ),
        "  waited for the runtime": run.span("runtime ready"),
        "image URI lookup (first)": run.span("image uri"),
        "artifact check (first: imports xgboost if not yet)": run.span(f"artifact check {MODELS[0]}"),
        "route collision check (first API Gateway calls)": run.span("route collision check"),
    }
    for stack in MODELS:
        begin = run.at(f"begin prepare {stack}")
        last = max((t for t, s, what in run.steps if s == stack or (not s and stack in what)), default=None)
        rows[f"deploy {stack}: from its start to its last step"] = _since(last, begin)
        rows[f"deploy {stack}: started at"] = begin
    rows["serving printed"] = run.serving
    for stack in MODELS:
        rows[f"first 200 from the {stack} API"] = run.answered.get(stack)
    rows["total (both answering)"] = run.total
    return {name: (round(value, 2) if value is not None else None) for name, value in rows.items()}


def _since(end: float | None, begin: float | None) -> float | None:
    return None if end is None or begin is None else end - begin


def step_lines(run: Run) -> list[str]:
    lines, previous = [], {}
    for at, stack, what in run.steps:
        key = stack or "-"
        took = at - previous.get(key, at)
        previous[key] = at
        lines.append(f"    {at:6.2f} s  (+{took:5.2f})  {('[' + stack + '] ') if stack else ''}{what[:90]}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of `l2c up` (the first with an empty cache)")
    args = parser.parse_args(argv)
    facts = machine()
    models = trained_models()
    with tempfile.TemporaryDirectory(prefix="l2c-bench-cache-") as cache_name:
        cache = Path(cache_name)
        imports = time_imports()
        print(f"baseline: python -c 'import boto3, moto.server'      {imports:6.2f} s", flush=True)
        runs = []
        for number in range(max(1, args.runs)):
            run = run_up(models, cache)
            runs.append(run)
            label = "empty cache" if number == 0 else "cache kept"
            print(f"\n`l2c up` run {number + 1} ({label}): ready in {run.total:.2f} s", flush=True)
            for name, value in split(run).items():
                print(f"  {name:<48} {'-' if value is None else f'{value:6.2f} s'}")
            print("  console steps (seconds from spawn, +since the stack's previous step):")
            print("\n".join(step_lines(run)), flush=True)
        bare = time_bare_cloud(cache)
        print(f"\nbaseline: python -m l2c.local (no deploys) until ready {bare:6.2f} s", flush=True)
    warm = [run.total for run in runs[1:]] or [runs[0].total]
    median = statistics.median(warm)
    facts["load_average_at_end"] = os.getloadavg()
    verdict = "met" if median <= TARGET_S else "MISSED"
    print(f"\nready (median of the runs with a cache): {median:.2f} s; target <= {TARGET_S:.0f} s: {verdict}")
    print(f"load average at start {facts['load_average_at_start']}, at end {facts['load_average_at_end']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": facts,
                "baselines_s": {"import boto3, moto.server": round(imports, 2), "python -m l2c.local": round(bare, 2)},
                "runs": [
                    {"cache": "empty" if i == 0 else "kept", "split_s": split(run), "steps": step_lines(run)}
                    for i, run in enumerate(runs)
                ],
                "ready_median_s": round(median, 2),
                "target_s": TARGET_S,
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if median <= TARGET_S else 1
