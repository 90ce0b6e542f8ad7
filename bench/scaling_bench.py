"""How the runtime's latency and throughput grow with rows per request and with trees per model.

1. Rows: one request of 1 to 100,000 rows (the iris model, 50 rounds x 3 classes), repeated
   over one keep-alive connection; median latency and rows/s, against in-process
   ``Booster.inplace_predict`` on the same parsed array (the floor: no HTTP, no parsing).
2. Trees: house-price regressors of 10 to 1,000 trees (depth 3, the package's regression
   settings otherwise); for each, single-row requests/s and p50/p99 with wrk at 8 connections,
   and one 1,000-row request, against in-process prediction of the same rows.

Writes bench/results/scaling.json and the two plots bench/results/scaling_rows.png and
bench/results/scaling_trees.png (shown in bench/README.md).

    python -m bench scaling            # ~3 minutes
    python -m bench scaling --quick    # ~1 minute, fewer repeats (noisier)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.runtime_bench import REPO, ensure_wrk, free_port, iris_model_dir, machine, running, wrk_post

RESULTS = REPO / "bench" / "results"
ROW_COUNTS = (1, 10, 100, 1_000, 10_000, 100_000)
TREE_COUNTS = (10, 30, 100, 300, 1_000)
WIDE_REQUEST_ROWS = 1_000
# Each latency point stops at whichever comes first; both bound the run.
MAX_REPEATS = 200
MIN_REPEATS = 3


def csv_of(values: np.ndarray) -> bytes:
    return ("\n".join(",".join(f"{v:.4g}" for v in row) for row in values.tolist()) + "\n").encode()


def iris_like_rows(count: int, rng: np.random.Generator) -> np.ndarray:
    return np.round(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(count, 4)), 2)


def time_requests(url: str, body: bytes, seconds: float) -> list[float]:
    """Seconds per POST /invocations over one keep-alive connection, for about ``seconds``."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    timings: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while len(timings) < MAX_REPEATS and (len(timings) < MIN_REPEATS or time.monotonic() < deadline):
            started = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers={"content-type": "text/csv"})
            response = connection.getresponse()
            payload = response.read()
            timings.append(time.perf_counter() - started)
            if response.status != 200 or not payload:
                raise RuntimeError(f"{url} answered {response.status}: {payload[:200]!r}")
    finally:
        connection.close()
    return timings


def in_process_boosters(booster) -> tuple:
    """The booster as the server configures it: one thread for small requests, every core for big ones.

    XGBoost's default (every core for any request) is slower on a busy 2-core machine, where
    a one-row prediction then waits for an OpenMP team; the server would not do that either.
    """
    one, every = booster.copy(), booster.copy()
    one.set_param({"nthread": 1})
    every.set_param({"nthread": os.cpu_count() or 1})
    return one, every


def time_in_process(boosters: tuple, rows: np.ndarray, seconds: float) -> list[float]:
    from l2c.serving.engine import MANY_ROWS

    booster = boosters[1] if len(rows) >= MANY_ROWS else boosters[0]
    values = rows.astype(np.float32)
    timings: list[float] = []
    deadline = time.monotonic() + seconds
    while len(timings) < MAX_REPEATS and (len(timings) < MIN_REPEATS or time.monotonic() < deadline):
        started = time.perf_counter()
        booster.inplace_predict(values, validate_features=False)
        timings.append(time.perf_counter() - started)
    return timings


def server_command(model: Path, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "l2c.serving.server",
        "container",
        str(model),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


# --------------------------------------------------------------------------- rows per request


def scale_rows(model_dir: Path, workers: int, seconds: float) -> list[dict]:
    from l2c.artifact import load_artifact

    boosters = in_process_boosters(load_artifact(model_dir).booster)
    rng = np.random.default_rng(1)
    points = []
    port = free_port()
    with running(server_command(model_dir, port, workers), port) as (url, _):
        for count in ROW_COUNTS:
            rows = iris_like_rows(count, rng)
            body = csv_of(rows)
            served = statistics.median(time_requests(url, body, seconds))
            alone = statistics.median(time_in_process(boosters, rows, seconds))
            points.append(
                {
                    "rows": count,
                    "body_bytes": len(body),
                    "median_s": served,
                    "rows_per_s": count / served,
                    "in_process_median_s": alone,
                    "ratio_vs_in_process": served / alone,
                }
            )
            print(
                f"  {count:>7,} rows  {served * 1000:9.2f} ms  {count / served:12,.0f} rows/s"
                f"   in-process {alone * 1000:8.3f} ms   ratio {served / alone:7.1f}x",
                flush=True,
            )
    return points


# --------------------------------------------------------------------------- trees per model


def house_price_models(folder: Path) -> dict[int, Path]:
    """One regressor per tree count, trained like `l2c train house-price` apart from the count."""
    from l2c import training
    from l2c.artifact import write_tarball
    from l2c.datasets import load_built_in

    dataset = load_built_in("house-price")
    x_train, _, y_train, _ = training.split(dataset)
    models = {}
    for trees in TREE_COUNTS:
        params = {**training.DEFAULT_PARAMS["regression"], "n_estimators": trees}
        estimator = training.make_estimator("regression", params).fit(x_train, y_train)
        models[trees] = write_tarball(estimator.get_booster(), folder / f"trees-{trees}" / "model.tar.gz")
    return models


def scale_trees(wrk: str | None, workers: int, seconds: float) -> list[dict]:
    from l2c.artifact import load_artifact
    from l2c.datasets import load_built_in

    features = load_built_in("house-price").features.to_numpy()
    one_row = features[:1]
    wide = features[np.arange(WIDE_REQUEST_ROWS) % len(features)]
    points = []
    with tempfile.TemporaryDirectory(prefix="l2c-scaling-") as folder:
        for trees, tarball in house_price_models(Path(folder)).items():
            boosters = in_process_boosters(load_artifact(tarball).booster)
            port = free_port()
            with running(server_command(tarball, port, workers), port) as (url, _):
                load = wrk_post(wrk, url, csv_of(one_row), int(max(seconds, 1))) if wrk else None
                single = statistics.median(time_requests(url, csv_of(one_row), seconds))
                wide_served = statistics.median(time_requests(url, csv_of(wide), seconds))
            point = {
                "trees": trees,
                "single_row_load": load,
                "single_row_median_s": single,
                "single_row_in_process_s": statistics.median(time_in_process(boosters, one_row, seconds)),
                "wide_rows": WIDE_REQUEST_ROWS,
                "wide_median_s": wide_served,
                "wide_in_process_s": statistics.median(time_in_process(boosters, wide, seconds)),
            }
            point["wide_ratio_vs_in_process"] = point["wide_median_s"] / point["wide_in_process_s"]
            points.append(point)
            rps = (
                f"{load['requests_per_s']:9,.0f} req/s p50 {load['p50_ms']:6.2f} ms p99 {load['p99_ms']:6.2f} ms"
                if load
                else "load not measured (no wrk)"
            )
            print(
                f"  {trees:>5} trees  single row: {rps}   {WIDE_REQUEST_ROWS:,} rows: {wide_served * 1000:7.2f} ms"
                f" (in-process {point['wide_in_process_s'] * 1000:6.2f} ms)",
                flush=True,
            )
    return points


# --------------------------------------------------------------------------- plots


def plot_rows(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [p["rows"] for p in points]
    figure, (latency, rate) = plt.subplots(1, 2, figsize=(11, 4.2))
    latency.loglog(rows, [p["median_s"] * 1000 for p in points], "o-", label="l2c container face, over HTTP")
    latency.loglog(rows, [p["in_process_median_s"] * 1000 for p in points], "s--", label="in-process inplace_predict")
    latency.set(xlabel="rows per request", ylabel="median latency (ms)", title="Latency vs rows per request")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend()
    rate.loglog(rows, [p["rows_per_s"] for p in points], "o-", label="l2c, one connection")
    rate.loglog(rows, [p["rows"] / p["in_process_median_s"] for p in points], "s--", label="in-process inplace_predict")
    rate.set(xlabel="rows per request", ylabel="rows predicted per second", title="Throughput vs rows per request")
    rate.grid(True, which="both", alpha=0.3)
    rate.legend()
    figure.suptitle("iris model (50 rounds x 3 classes), text/csv, 2-core machine", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_trees(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trees = [p["trees"] for p in points]
    figure, (rate, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    loaded = [p for p in points if p["single_row_load"]]
    if loaded:
        rate.semilogx([p["trees"] for p in loaded], [p["single_row_load"]["requests_per_s"] for p in loaded], "o-")
    rate.set(
        xlabel="trees in the model", ylabel="single-row requests/s (8 connections)", title="Throughput vs model size"
    )
    rate.set_ylim(bottom=0)
    rate.grid(True, which="both", alpha=0.3)
    latency.loglog(trees, [p["single_row_median_s"] * 1000 for p in points], "o-", label="1 row, l2c")
    latency.loglog(trees, [p["single_row_in_process_s"] * 1000 for p in points], "s--", label="1 row, in-process")
    latency.loglog(trees, [p["wide_median_s"] * 1000 for p in points], "o-", label=f"{WIDE_REQUEST_ROWS:,} rows, l2c")
    latency.loglog(
        trees, [p["wide_in_process_s"] * 1000 for p in points], "s--", label=f"{WIDE_REQUEST_ROWS:,} rows, in-process"
    )
    latency.set(xlabel="trees in the model", ylabel="median latency (ms)", title="Latency vs model size")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize=8)
    figure.suptitle("house-price regressor (depth 3), text/csv, 2-core machine", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter measurements (noisier)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv or [])
    seconds = 1.0 if args.quick else 3.0

    started = time.monotonic()
    wrk = ensure_wrk()
    results = {"machine": machine(), "workers": args.workers, "load_generator": "wrk (Debian package)" if wrk else None}
    print("rows per request (one keep-alive connection):", flush=True)
    results["rows"] = scale_rows(iris_model_dir(), args.workers, seconds)
    print("trees per model:", flush=True)
    results["trees"] = scale_trees(wrk, args.workers, seconds)
    results["machine"]["load_average_at_end"] = os.getloadavg()

    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_rows(results["rows"], RESULTS / "scaling_rows.png")
    plot_trees(results["trees"], RESULTS / "scaling_trees.png")
    (RESULTS / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    errors = sum(
        p["single_row_load"]["non_2xx"] + p["single_row_load"]["socket_errors"]
        for p in results["trees"]
        if p["single_row_load"]
    )
    print(
        f"errors during load: {errors}; {time.monotonic() - started:.0f} s; results in bench/results/scaling.json, "
        "plots scaling_rows.png and scaling_trees.png",
        flush=True,
    )
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
