"""Benchmark of the inference runtime against the naive Flask + joblib baseline.

Measures, on this machine, over loopback only:
1. single-row text/csv invocations: requests/s and p99 with wrk, 8 keep-alive connections,
   for l2c's container face (2 uvicorn workers) and for bench/naive_flask_server.py;
2. one 100,000-row (~2 MB) CSV request: median seconds, against in-process inplace_predict
   on the parsed array and the container stack's ~0.9 s (measured once on a machine of this kind, the container's
   serving code rebuilt from its public sources: nginx + gunicorn/gevent + Flask, 2 workers);
3. memory under sustained load: RSS of the server processes before and after a soak run.

Prints every figure with its target and writes bench/results/runtime.json.

    python -m bench runtime            # full run (~2 minutes)
    python -m bench runtime --quick    # shorter runs, same figures (noisier)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "runtime.json"
HOST = "127.0.0.1"
SINGLE_ROW = "5.1,3.5,1.4,0.2"
CONNECTIONS = 8
CONTAINER_STACK_LARGE_SECONDS = 0.9  # the container's own stack: gunicorn + gevent + Flask, 2 workers
TARGETS = {
    "single_row_rps": 3000.0,
    "single_row_p99_ms": 10.0,
    "speedup_vs_flask": 4.0,
    "large_csv_median_s": 0.15,
    "large_vs_inplace_ratio": 8.0,
    "rss_growth_pct": 10.0,
}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            if httpx.get(url + "/ping", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


@contextmanager
def running(command: list[str], port: int):
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{HOST}:{port}"
    try:
        wait_ready(url, process)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def tree_rss(pid: int) -> int:
    parent = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


# --------------------------------------------------------------------------- model


def iris_model_dir() -> Path:
    """models/iris as `l2c train iris` writes it, trained into a temporary folder if absent."""
    model_dir = REPO / "models" / "iris"
    if (model_dir / "model.tar.gz").is_file() and (model_dir / "xgboost_classifier.joblib").is_file():
        return model_dir
    from l2c import training

    print("models/iris is missing: training it into a temporary folder", flush=True)
    return training.train_and_save("iris", models_dir=Path(tempfile.mkdtemp(prefix="l2c-bench-")))


# --------------------------------------------------------------------------- wrk


def ensure_wrk() -> str | None:
    """wrk from Debian's packages; installed here when missing (the bench's load generator)."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get"):
        return found
    print("wrk is missing: apt-get install -y wrk", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            subprocess.run(command, check=False, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
    return shutil.which("wrk")


def wrk_post(wrk: str, url: str, body: str | bytes, seconds: int, connections: int = CONNECTIONS) -> dict:
    """POST ``body`` as text/csv to ``url``/invocations for ``seconds``; wrk's figures."""
    return wrk_run(wrk, url + "/invocations", body, {"Content-Type": "text/csv"}, seconds, connections)


def wrk_run(wrk: str, url: str, body: str | bytes, headers: dict[str, str], seconds: int, connections: int) -> dict:
    """POST ``body`` with ``headers`` to ``url`` over keep-alive connections for ``seconds``; wrk's figures."""
    folder = Path(tempfile.mkdtemp(prefix="l2c-wrk-"))
    body_file = folder / "body"
    body_file.write_bytes(body.encode() if isinstance(body, str) else body)
    script = folder / "post.lua"
    lines = ['wrk.method = "POST"', f'local file = io.open("{body_file}", "rb")', 'wrk.body = file:read("*a")',
             "file:close()"]
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(script), url]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return parse_wrk(output)


def parse_wrk(output: str) -> dict:
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    percentiles = {
        int(p): float(v) * scale[unit]
        for p, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


# --------------------------------------------------------------------------- the measures


def large_csv_body(rows: int = 100_000) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(42)
    values = np.round(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(rows, 4)), 2)
    text = "\n".join(",".join(f"{v:.2f}" for v in row) for row in values.tolist()) + "\n"
    return text.encode(), values


def check_large_answer(url: str, body: bytes, model_dir: Path, values: np.ndarray) -> None:
    """One big request, compared with the container's way of predicting and writing it."""
    import io

    import xgboost as xgb

    from l2c.artifact import load_artifact

    response = httpx.post(url + "/invocations", content=body, headers={"content-type": "text/csv"}, timeout=60)
    stream = io.StringIO()
    booster = load_artifact(model_dir).booster
    np.savetxt(stream, booster.predict(xgb.DMatrix(values), validate_features=False).tolist(), delimiter=",", fmt="%s")
    if response.status_code != 200 or response.content != stream.getvalue().encode():
        raise RuntimeError(f"the 100,000-row answer differs from the container's: {response.status_code}")


def time_large_requests(wrk: str | None, url: str, body: bytes, repeats: int, seconds: int) -> list[float]:
    """Seconds per big request: wrk's median over one connection, or a stdlib client without wrk."""
    if wrk:
        figures = wrk_post(wrk, url, body, seconds, connections=1)
        return [figures["p50_ms"] / 1000.0]
    import http.client
    from urllib.parse import urlparse

    address = urlparse(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        connection.request("POST", "/invocations", body=body, headers={"content-type": "text/csv"})
        connection.getresponse().read()
        timings.append(time.perf_counter() - start)
    return timings


def time_inplace_predict(model_dir: Path, values: np.ndarray, repeats: int) -> list[float]:
    from l2c.artifact import load_artifact

    booster = load_artifact(model_dir).booster  # XGBoost's defaults: every core
    rows = values.astype(np.float32)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        booster.inplace_predict(rows, validate_features=False)
        timings.append(time.perf_counter() - start)
    return timings


def check_answer(url: str) -> bytes:
    response = httpx.post(url + "/invocations", content=SINGLE_ROW, headers={"content-type": "text/csv"})
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response.content


def soak(wrk: str, url: str, pid: int, seconds: int) -> dict:
    wrk_post(wrk, url, SINGLE_ROW, 5)  # warm up allocators and caches first
    before = tree_rss(pid)
    load = wrk_post(wrk, url, SINGLE_ROW, seconds)
    after = tree_rss(pid)
    return {"seconds": seconds, "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
            "rss_growth_pct": 100.0 * (after - before) / before, "load": load}


# --------------------------------------------------------------------------- report


def machine() -> dict:
    model_name = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model_name = found.group(1).strip() if found else model_name
    return {"cpus": os.cpu_count(), "cpu_model": model_name, "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": os.getloadavg()}


def verdict(name: str, value: float, lower_is_better: bool) -> str:
    target = TARGETS[name]
    ok = value <= target if lower_is_better else value >= target
    return f"{'PASS' if ok else 'MISS'} (target {'<=' if lower_is_better else '>='} {target:g})"


def report(results: dict) -> bool:
    single, flask, large, memory = results["single_row"], results["flask_baseline"], results["large_csv"], results["soak"]
    checks = []

    def line(label, value, unit, key=None, lower=False):
        text = f"  {label:<44} {value:>10.2f} {unit}"
        if key:
            text += "   " + verdict(key, value, lower)
            checks.append(verdict(key, value, lower).startswith("PASS"))
        print(text)

    print("single-row text/csv, 8 connections:")
    if single:
        line("l2c container face (2 workers) req/s", single["requests_per_s"], "req/s", "single_row_rps")
        line("l2c p99 latency", single["p99_ms"], "ms", "single_row_p99_ms", lower=True)
        line("naive Flask + joblib req/s (baseline)", flask["requests_per_s"], "req/s")
        line("naive Flask + joblib p99 (baseline)", flask["p99_ms"], "ms")
        line("ratio l2c / Flask", results["speedup_vs_flask"], "x", "speedup_vs_flask")
    else:
        print("  NOT MEASURED: wrk is not available (apt-get install wrk)")
        checks.append(False)
    print("one 100,000-row CSV request (%.2f MB):" % large["body_mb"])
    line(f"l2c median ({large['measured_with']})", large["median_s"], "s", "large_csv_median_s", lower=True)
    line("in-process inplace_predict median", large["inplace_median_s"], "s")
    line("ratio l2c / inplace_predict", large["ratio_vs_inplace"], "x", "large_vs_inplace_ratio", lower=True)
    line("container stack (measured anchor)", CONTAINER_STACK_LARGE_SECONDS, "s")
    line("speed-up over the container stack", large["speedup_vs_container"], "x")
    print(f"memory over a {memory['seconds']} s soak:" if memory else "memory: NOT MEASURED (no wrk)")
    if memory:
        line("RSS before (all worker processes)", memory["rss_before_mb"], "MB")
        line("RSS after", memory["rss_after_mb"], "MB")
        line("RSS growth", memory["rss_growth_pct"], "%", "rss_growth_pct", lower=True)
    else:
        checks.append(False)
    return all(checks)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench runtime", description="Benchmark the inference runtime.")
    parser.add_argument("--quick", action="store_true", help="3 s load runs and a 15 s soak")
    parser.add_argument("--seconds", type=int, default=10, help="length of each throughput run")
    parser.add_argument("--soak-seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv or [])
    seconds, soak_seconds, repeats = (3, 15, 7) if args.quick else (args.seconds, args.soak_seconds, 15)

    model_dir = iris_model_dir()
    wrk = ensure_wrk()
    if wrk is None:
        print("wrk could not be installed: throughput and memory figures are skipped", flush=True)
    ours_port, flask_port = free_port(), free_port()
    ours_command = [sys.executable, "-m", "l2c.serving.server", "container", str(model_dir),
                    "--port", str(ours_port), "--workers", str(args.workers)]
    flask_command = [sys.executable, "-m", "bench.naive_flask_server",
                     "--model", str(model_dir / "xgboost_classifier.joblib"), "--port", str(flask_port)]
    shown_model = model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else model_dir
    results = {"machine": machine(), "model": str(shown_model), "connections": CONNECTIONS,
               "workers": args.workers, "targets": TARGETS, "load_generator": "wrk (Debian package)"}
    body, values = large_csv_body()

    with running(flask_command, flask_port) as (flask_url, _):
        check_answer(flask_url)
        results["flask_baseline"] = wrk_post(wrk, flask_url, SINGLE_ROW, seconds) if wrk else None
    with running(ours_command, ours_port) as (url, process):
        check_answer(url)
        results["single_row"] = wrk_post(wrk, url, SINGLE_ROW, seconds) if wrk else None
        check_large_answer(url, body, model_dir, values)
        timings = time_large_requests(wrk, url, body, repeats, seconds)
        inplace = time_inplace_predict(model_dir, values, repeats)
        results["large_csv"] = {
            "rows": len(values), "body_mb": len(body) / 1e6, "measured_with": "wrk, 1 connection" if wrk else "http.client",
            "median_s": statistics.median(timings), "inplace_median_s": statistics.median(inplace),
            "ratio_vs_inplace": statistics.median(timings) / statistics.median(inplace),
            "speedup_vs_container": CONTAINER_STACK_LARGE_SECONDS / statistics.median(timings),
        }
        results["soak"] = soak(wrk, url, process.pid, soak_seconds) if wrk else None
    if results["single_row"] and results["flask_baseline"]:
        results["speedup_vs_flask"] = results["single_row"]["requests_per_s"] / results["flask_baseline"]["requests_per_s"]
    results["machine"]["load_average_at_end"] = os.getloadavg()

    all_met = report(results)
    errors = sum(r["non_2xx"] + r["socket_errors"] for r in (results["single_row"], results["flask_baseline"]) if r)
    results["all_targets_met"] = all_met
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"errors during load: {errors}; results written to {RESULTS.relative_to(REPO)}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
