"""Benchmark of the inference runtime (`l2c serve`) against baselines measured in the same run.

Three targets, each a ratio to a baseline measured here, on this machine, over loopback:
1. single-row text/csv, 8 keep-alive connections (wrk): `l2c serve` (2 uvicorn workers) gives
   >= 90 % of the requests/s of bench/bare_asgi_server.py, the prediction alone on the same
   server stack (same uvicorn options, same worker count), with a p99 <= 5 ms;
2. one 100,000-row (2 MB) CSV request, over one connection: within 1.5x of in-process
   ``Booster.inplace_predict`` of the already-parsed float32 matrix (the same booster, one
   thread per core, as `l2c serve` predicts a body this size), with an answer byte for byte
   the container's (``np.savetxt(..., fmt="%s")`` for text/csv, ``json.dumps`` for JSON);
3. memory bounded under a 60 s single-row soak: RSS of the server's processes sampled every
   second, peak <= 1.10x the start, and no growth trend (the slope fitted over the soak's
   second half is under 1 % of the start per minute).
The baselines and `l2c serve` are measured in alternating rounds, so that both see the same
load from whatever else the machine runs. The naive Flask server is measured once for context.

    python -m bench runtime            # ~2.5 minutes: 5 s load rounds, 60 s soak
    python -m bench runtime --quick    # ~1 minute: one 3 s round each, 15 s soak (noisier)
"""

from __future__ import annotations

import argparse
import io
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
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "runtime.json"
HOST = "127.0.0.1"
SINGLE_ROW = "5.1,3.5,1.4,0.2"
CONNECTIONS = 8
# name: (target, "min" when the measured figure must be at least the target, else "max")
TARGETS = {
    "single_row_vs_bare": (0.90, "min"),
    "single_row_p99_ms": (5.0, "max"),
    "large_vs_inplace": (1.5, "max"),
    "rss_peak_vs_start": (1.10, "max"),
    "rss_trend_pct_per_min": (1.0, "max"),
}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
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
    with wrk_started(wrk, url, body, headers, seconds, connections) as process:
        output, _ = process.communicate(timeout=seconds + 60)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}")
    return parse_wrk(output)


@contextmanager
def wrk_started(wrk: str, url: str, body: str | bytes, headers: dict[str, str], seconds: int, connections: int):
    """wrk POSTing ``body`` in the background (its stdout a pipe); the caller collects its output."""
    folder = Path(tempfile.mkdtemp(prefix="l2c-wrk-"))
    body_file = folder / "body"
    body_file.write_bytes(body.encode() if isinstance(body, str) else body)
    script = folder / "post.lua"
    lines = [
        'wrk.method = "POST"',
        f'local file = io.open("{body_file}", "rb")',
        'wrk.body = file:read("*a")',
        "file:close()",
    ]
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(script), url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)


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


# --------------------------------------------------------------------------- memory


def sample_during(process: subprocess.Popen, read, interval: float = 1.0) -> list[tuple[float, object]]:
    """(seconds since the start, ``read()``) every ``interval`` while ``process`` (the load) runs."""
    samples, start = [], time.monotonic()
    while True:
        samples.append((time.monotonic() - start, read()))
        if process.poll() is not None:
            return samples
        time.sleep(interval)


def memory_summary(samples: list[tuple[float, float]]) -> dict:
    """Start, peak and end of RSS samples, their ratios, and the trend of the second half.

    The trend is the least-squares slope over the samples of the soak's second half, as a
    percentage of the start per minute: the first half absorbs allocator warm-up, a leak
    keeps growing through the second."""
    seconds = np.array([t for t, _ in samples])
    megabytes = np.array([mb for _, mb in samples])
    start, peak, end = megabytes[0], megabytes.max(), megabytes[-1]
    late = seconds >= seconds[-1] / 2
    slope = np.polyfit(seconds[late], megabytes[late], 1)[0] if late.sum() >= 3 else 0.0
    return {
        "samples": len(samples),
        "start_mb": float(start),
        "peak_mb": float(peak),
        "end_mb": float(end),
        "peak_vs_start": float(peak / start),
        "end_vs_start": float(end / start),
        "trend_pct_per_min": float(100.0 * slope * 60.0 / start),
    }


# --------------------------------------------------------------------------- the measures


def large_csv_body(rows: int = 100_000) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(42)
    values = np.round(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(rows, 4)), 2)
    text = "\n".join(",".join(f"{v:.2f}" for v in row) for row in values.tolist()) + "\n"
    return text.encode(), values


def container_answers(model_dir: Path, values: np.ndarray) -> dict[str, bytes]:
    """The container's bytes for these rows: DMatrix prediction, np.savetxt / json.dumps."""
    import xgboost as xgb

    from l2c.artifact import load_artifact

    predictions = load_artifact(model_dir).booster.predict(xgb.DMatrix(values), validate_features=False).tolist()
    stream = io.StringIO()
    np.savetxt(stream, predictions, delimiter=",", fmt="%s")
    return {
        "text/csv": stream.getvalue().encode(),
        "application/json": json.dumps({"predictions": [{"score": p} for p in predictions]}).encode(),
    }


def check_large_answers(url: str, body: bytes, expected: dict[str, bytes]) -> dict[str, bool]:
    identical = {}
    for accept, answer in expected.items():
        response = httpx.post(
            url + "/invocations", content=body, timeout=60, headers={"content-type": "text/csv", "accept": accept}
        )
        identical[accept] = response.status_code == 200 and response.content == answer
    return identical


def time_large_requests(wrk: str | None, url: str, body: bytes, seconds: int) -> list[float]:
    """Seconds per big request: wrk's median over one connection, or a stdlib client without wrk."""
    if wrk:
        return [wrk_post(wrk, url, body, seconds, connections=1)["p50_ms"] / 1000.0]
    import http.client
    from urllib.parse import urlparse

    address = urlparse(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    timings, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        connection.request("POST", "/invocations", body=body, headers={"content-type": "text/csv"})
        connection.getresponse().read()
        timings.append(time.perf_counter() - start)
    return timings


def inplace_predictor(model_dir: Path, values: np.ndarray):
    """In-process ``inplace_predict`` of the parsed matrix, one thread per core: a timing function."""
    from l2c.artifact import load_artifact

    booster = load_artifact(model_dir).booster
    booster.set_param({"nthread": os.cpu_count() or 1})  # what `l2c serve` uses for a body this size
    rows = np.ascontiguousarray(values, dtype=np.float32)
    booster.inplace_predict(rows, validate_features=False)  # first call allocates its buffers

    def timings(repeats: int) -> list[float]:
        found = []
        for _ in range(repeats):
            start = time.perf_counter()
            booster.inplace_predict(rows, validate_features=False)
            found.append(time.perf_counter() - start)
        return found

    return timings


def check_answer(url: str) -> bytes:
    response = httpx.post(url + "/invocations", content=SINGLE_ROW, headers={"content-type": "text/csv"})
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response.content


def soak(wrk: str, url: str, pid: int, seconds: int) -> dict:
    wrk_post(wrk, url, SINGLE_ROW, 5)  # warm up allocators and caches first (RSS settles after ~100,000 requests)
    with wrk_started(wrk, url + "/invocations", SINGLE_ROW, {"Content-Type": "text/csv"}, seconds, CONNECTIONS) as load:
        samples = sample_during(load, lambda: tree_rss(pid) / 2**20)
        output, _ = load.communicate(timeout=60)
    return {
        "seconds": seconds,
        **memory_summary(samples),
        "rss_mb": [round(mb, 1) for _, mb in samples],
        "load": parse_wrk(output),
    }


# --------------------------------------------------------------------------- report


def machine() -> dict:
    model_name = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model_name = found.group(1).strip() if found else model_name
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model_name,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def verdict(name: str, value: float | None) -> str:
    target, kind = TARGETS[name]
    if value is None:
        return "NOT MEASURED"
    met = value >= target if kind == "min" else value <= target
    return f"{'PASS' if met else 'MISS'} (target {'>=' if kind == 'min' else '<='} {target:g})"


def report(results: dict) -> dict[str, str]:
    """Print every figure, the targets' verdicts last on their lines; returns the verdicts."""
    verdicts = {}

    def line(label, value, unit, key=None):
        text = f"  {label:<58} {value:>10.3f} {unit}" if value is not None else f"  {label:<58} {'-':>10}"
        if key:
            verdicts[key] = verdict(key, value)
            text += "   " + verdicts[key]
        print(text)

    single, bare, flask = results["single_row"], results["bare_asgi"], results["flask_context"]
    print(f"1. single-row text/csv, {CONNECTIONS} connections, {results['rounds']} alternating round(s):")
    if single:
        line(
            "l2c serve / bare ASGI app (same stack), req/s ratio",
            results["single_row_vs_bare"],
            "x",
            "single_row_vs_bare",
        )
        line("l2c serve p99 (worst round)", single["p99_ms"], "ms", "single_row_p99_ms")
        line("  l2c serve req/s (mean of rounds)", single["requests_per_s"], "req/s")
        line("  bare ASGI app req/s (mean of rounds; baseline)", bare["requests_per_s"], "req/s")
        line("  bare ASGI app p99 (worst round)", bare["p99_ms"], "ms")
        if flask:
            line("  naive Flask + joblib req/s (context)", flask["requests_per_s"], "req/s")
            line("  l2c serve / naive Flask", results["single_row_vs_flask"], "x")
    else:
        print("  NOT MEASURED: wrk is not available (apt-get install wrk)")
        verdicts["single_row_vs_bare"] = verdicts["single_row_p99_ms"] = "NOT MEASURED"
    large = results["large_csv"]
    print(
        f"2. one {large['rows']:,}-row CSV request ({large['body_mb']:.2f} MB), {results['rounds']} alternating round(s):"
    )
    line("l2c serve / in-process inplace_predict, median ratio", large["ratio_vs_inplace"], "x", "large_vs_inplace")
    line("  l2c serve median (" + large["measured_with"] + ")", large["median_s"], "s")
    line(
        f"  in-process inplace_predict median ({large['inplace_threads']} threads; baseline)",
        large["inplace_median_s"],
        "s",
    )
    for accept, same in large["identical_to_container"].items():
        print(f"  answer byte-identical to the container's ({accept}): {'yes' if same else 'NO'}")
    if not all(large["identical_to_container"].values()):
        verdicts["large_vs_inplace"] = "MISS (answer differs from the container's)"
    memory = results["soak"]
    print(
        f"3. memory of the server's processes over a {memory['seconds']} s soak:"
        if memory
        else "3. memory: NOT MEASURED (no wrk)"
    )
    if memory:
        line("RSS peak / start", memory["peak_vs_start"], "x", "rss_peak_vs_start")
        line(
            "RSS trend over the second half, % of start per minute",
            memory["trend_pct_per_min"],
            "%/min",
            "rss_trend_pct_per_min",
        )
        line("  RSS end / start", memory["end_vs_start"], "x")
        print(
            f"  RSS start / peak / end: {memory['start_mb']:.1f} / {memory['peak_mb']:.1f} / {memory['end_mb']:.1f} MB "
            f"({memory['samples']} samples, {memory['load']['requests']:,} requests)"
        )
    else:
        verdicts["rss_peak_vs_start"] = verdicts["rss_trend_pct_per_min"] = "NOT MEASURED"
    return verdicts


# --------------------------------------------------------------------------- main


def rounds_mean(runs: list[dict]) -> dict:
    """wrk figures over alternating rounds: mean rate, worst p99, summed counts."""
    return {
        "rounds": runs,
        "requests_per_s": statistics.mean(r["requests_per_s"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench runtime", description="Benchmark the inference runtime.")
    parser.add_argument("--quick", action="store_true", help="one 3 s round per figure and a 15 s soak")
    parser.add_argument("--seconds", type=int, default=5, help="length of each load round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each measure")
    parser.add_argument("--soak-seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv or [])
    seconds, rounds, soak_seconds = (3, 1, 15) if args.quick else (args.seconds, args.rounds, args.soak_seconds)

    model_dir = iris_model_dir()
    wrk = ensure_wrk()
    if wrk is None:
        print("wrk could not be installed: throughput and memory figures are skipped", flush=True)
    ports = {name: free_port() for name in ("l2c", "bare", "flask")}
    commands = {
        "l2c": [
            sys.executable,
            "-m",
            "l2c.serving.server",
            "container",
            str(model_dir),
            "--port",
            str(ports["l2c"]),
            "--workers",
            str(args.workers),
        ],
        "bare": [
            sys.executable,
            "-m",
            "bench.bare_asgi_server",
            "--model",
            str(model_dir),
            "--port",
            str(ports["bare"]),
            "--workers",
            str(args.workers),
        ],
        "flask": [
            sys.executable,
            "-m",
            "bench.naive_flask_server",
            "--model",
            str(model_dir / "xgboost_classifier.joblib"),
            "--port",
            str(ports["flask"]),
        ],
    }
    shown_model = model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else model_dir
    results = {
        "machine": machine(),
        "model": str(shown_model),
        "connections": CONNECTIONS,
        "workers": args.workers,
        "rounds": rounds,
        "round_seconds": seconds,
        "targets": {name: {"target": t, "kind": k} for name, (t, k) in TARGETS.items()},
        "load_generator": "wrk (Debian package)",
    }
    body, values = large_csv_body()
    expected = container_answers(model_dir, values)
    inplace = inplace_predictor(model_dir, values)

    with ExitStack() as servers:
        urls, processes = {}, {}
        logs = {}
        for name, command in commands.items():  # all three start together; each is idle while another is measured
            # a file, not a pipe: uvicorn's worker processes inherit it and may outlive a failed start
            logs[name] = servers.enter_context(tempfile.TemporaryFile())
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=logs[name])
            servers.callback(_stop, process)
            urls[name], processes[name] = f"http://{HOST}:{ports[name]}", process
        for name in commands:
            try:
                wait_ready(urls[name], processes[name])
            except RuntimeError as err:
                logs[name].seek(0)
                raise RuntimeError(f"{name}: {err}: {logs[name].read().decode(errors='replace')[-2000:]}") from None
        answers = {name: check_answer(urls[name]) for name in ("l2c", "bare")}
        if answers["l2c"] != answers["bare"]:
            raise RuntimeError(f"l2c and the bare app disagree: {answers}")

        if wrk:
            wrk_post(wrk, urls["l2c"], SINGLE_ROW, 1)  # first requests of each worker: imports, caches
            wrk_post(wrk, urls["bare"], SINGLE_ROW, 1)
        single, bare = [], []
        for _ in range(rounds if wrk else 0):
            bare.append(wrk_post(wrk, urls["bare"], SINGLE_ROW, seconds))
            single.append(wrk_post(wrk, urls["l2c"], SINGLE_ROW, seconds))
        results["single_row"] = rounds_mean(single) if single else None
        results["bare_asgi"] = rounds_mean(bare) if bare else None
        results["flask_context"] = wrk_post(wrk, urls["flask"], SINGLE_ROW, 3) if wrk else None
        if single:
            results["single_row_vs_bare"] = (
                results["single_row"]["requests_per_s"] / results["bare_asgi"]["requests_per_s"]
            )
            results["single_row_vs_flask"] = (
                results["single_row"]["requests_per_s"] / results["flask_context"]["requests_per_s"]
            )

        identical = check_large_answers(urls["l2c"], body, expected)
        large, baseline = [], []
        for _ in range(rounds):
            baseline += inplace(15)
            large += time_large_requests(wrk, urls["l2c"], body, seconds)
        results["large_csv"] = {
            "rows": len(values),
            "body_mb": len(body) / 1e6,
            "inplace_threads": os.cpu_count() or 1,
            "measured_with": "wrk, 1 connection" if wrk else "http.client",
            "median_s": statistics.median(large),
            "inplace_median_s": statistics.median(baseline),
            "ratio_vs_inplace": statistics.median(large) / statistics.median(baseline),
            "rounds_s": large,
            "identical_to_container": identical,
        }
        results["soak"] = soak(wrk, urls["l2c"], processes["l2c"].pid, soak_seconds) if wrk else None
    results["machine"]["load_average_at_end"] = os.getloadavg()

    results["verdicts"] = report(results)
    results["all_targets_met"] = all(v.startswith("PASS") for v in results["verdicts"].values())
    loads = [
        r
        for r in (
            results["single_row"],
            results["bare_asgi"],
            results["flask_context"],
            (results["soak"] or {}).get("load"),
        )
        if r
    ]
    errors = sum(r["non_2xx"] + r["socket_errors"] for r in loads)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"load average {results['machine']['load_average_at_start'][0]:.1f} at the start, "
        f"{results['machine']['load_average_at_end'][0]:.1f} at the end; errors during load: {errors}; "
        f"targets {'all met' if results['all_targets_met'] else 'NOT all met'}; "
        f"results written to {RESULTS.relative_to(REPO)}"
    )
    return 0 if errors == 0 and all(results["large_csv"]["identical_to_container"].values()) else 1


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
