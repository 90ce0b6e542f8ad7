"""Where the time of a `l2c serve` request goes: one row, and the 100,000-row (2 MB) CSV body.

Each step the server runs is timed here in-process on its own (the fastest of many runs,
which is the figure least moved by other work on the machine), then a server is started and
the whole request is timed over loopback (wrk, one connection, median): what is left is HTTP
(uvicorn, httptools, uvloop, the kernel's loopback, the client). Under load at 8 connections
the server's CPU time per request is read from its processes, for `l2c serve` and for the bare
ASGI baseline. Not part of `python -m bench` (no targets here); bench/README.md shows its output.

    python -m bench.runtime_profile
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import psutil

from bench.runtime_bench import (
    CONNECTIONS,
    REPO,
    SINGLE_ROW,
    ensure_wrk,
    free_port,
    iris_model_dir,
    large_csv_body,
    running,
    wrk_post,
)


def fastest(work, runs: int) -> float:
    """Seconds of the fastest of ``runs`` calls (after one warm-up call)."""
    work()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def show(label: str, seconds: float, unit: str = "ms") -> None:
    scale = {"ms": 1e3, "us": 1e6}[unit]
    print(f"  {label:<62} {seconds * scale:9.3f} {unit}", flush=True)


def single_row_steps(engine, formats) -> float:
    body = SINGLE_ROW.encode()
    print("one row, in-process (fastest of 20,000):")
    rows = engine.check_width(formats.parse_csv(body))
    predictions = engine.predict(rows)
    steps = {
        "Content-Type (content_kind)": lambda: formats.content_kind("text/csv"),
        "CSV parse (parse_csv: decode, sniff, split, cast, inf check)": lambda: formats.parse_csv(body),
        "width check": lambda: engine.check_width(rows),
        "XGBoost C call and copy (DensePredictor, one thread)": lambda: engine.one_thread.predict(rows),
        "  the same through Booster.inplace_predict (the bare app's)": lambda: (
            engine.one_thread.booster.inplace_predict(rows, validate_features=False)
        ),
        "Accept and encode (parse_accept, encode_predictions)": lambda: (
            formats.parse_accept(None, "text/csv"),
            formats.encode_predictions(predictions, "text/csv"),
        ),
        "the engine in all (Engine.invoke)": lambda: engine.invoke(body, "text/csv", None),
    }
    found = {label: fastest(work, 20_000) for label, work in steps.items()}
    for label, seconds in found.items():
        show(label, seconds, "us")
    return found["the engine in all (Engine.invoke)"]


def large_steps(engine, formats, pieces, body: bytes) -> float:
    print(f"100,000 rows ({len(body) / 1e6:.1f} MB), in-process (fastest of 15):")
    stripped = body.strip()
    text = stripped.decode()
    rows = formats.parse_csv(body)
    whole = engine.predict(rows)
    values = np.asarray(whole, dtype=np.float64)
    import orjson

    flat = orjson.dumps(values.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    steps = {
        "strip and UTF-8 decode": lambda: body.strip().decode(),
        "character check before pandas": lambda: stripped.translate(None, formats._FAST_CSV_CHARACTERS + b","),
        "line and delimiter counts (the shape proof)": lambda: (text.count("\n"), text.count(","), "\r" in text),
        "pandas read_csv, float32": lambda: formats._csv_fast(stripped, text, ","),
        "CSV parse in all (parse_csv)": lambda: formats.parse_csv(body),
        "prediction, one thread": lambda: engine.one_thread.predict(rows),
        "prediction, one thread per core (the whole-body path)": lambda: engine.all_threads.predict(rows),
        "orjson of the 300,000 doubles": lambda: orjson.dumps(values.ravel(), option=orjson.OPT_SERIALIZE_NUMPY),
        "row ends (comma -> newline) and magnitude checks": lambda: formats._end_rows_at_every(flat, values.shape[1]),
        "encode in all (encode_predictions)": lambda: formats.encode_predictions(whole, "text/csv"),
        "whole body on one thread + prediction on every core (Engine.invoke)": lambda: engine.invoke(
            body, "text/csv", None
        ),
        "in pieces on every core (pieces.invoke: the server's path)": lambda: pieces.invoke(
            engine, body, "text/csv", None
        ),
    }
    cpu_start = time.process_time()
    found = {label: fastest(work, 15) for label, work in steps.items()}
    for label, seconds in found.items():
        show(label, seconds)
    cpu_start = time.process_time()
    for _ in range(10):
        pieces.invoke(engine, body, "text/csv", None)
    show("  CPU time of the pieces path, all threads (mean of 10)", (time.process_time() - cpu_start) / 10)
    return found["in pieces on every core (pieces.invoke: the server's path)"]


def cpu_per_request(wrk: str, url: str, pid: int, seconds: int) -> tuple[float, float]:
    """(requests/s, server CPU seconds per request) under single-row load at 8 connections."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    before = sum(sum(p.cpu_times()[:2]) for p in processes)
    figures = wrk_post(wrk, url, SINGLE_ROW, seconds)
    after = sum(sum(p.cpu_times()[:2]) for p in processes)
    return figures["requests_per_s"], (after - before) / figures["requests"]


def main() -> int:
    from l2c.artifact import load_artifact
    from l2c.serving import formats, pieces
    from l2c.serving.engine import Engine

    model_dir = iris_model_dir()
    engine = Engine(load_artifact(model_dir))
    body, _ = large_csv_body()
    one_row = single_row_steps(engine, formats)
    large = large_steps(engine, formats, pieces, body)
    wrk = ensure_wrk()
    if wrk is None:
        print("wrk is not available: the HTTP shares are not measured")
        return 1
    ports = {"l2c": free_port(), "bare": free_port()}
    l2c = [
        sys.executable,
        "-m",
        "l2c.serving.server",
        "container",
        str(model_dir),
        "--port",
        str(ports["l2c"]),
        "--workers",
        "2",
    ]
    bare = [
        sys.executable,
        "-m",
        "bench.bare_asgi_server",
        "--model",
        str(model_dir),
        "--port",
        str(ports["bare"]),
        "--workers",
        "2",
    ]
    with running(l2c, ports["l2c"]) as (url, process), running(bare, ports["bare"]) as (bare_url, bare_process):
        print("over loopback (wrk; medians):")
        wrk_post(wrk, url, SINGLE_ROW, 1)
        sequential = wrk_post(wrk, url, SINGLE_ROW, 3, connections=1)["p50_ms"] / 1e3
        show("one row, one connection, the whole request", sequential, "us")
        show("  of which HTTP, event loop and client (whole minus the engine)", sequential - one_row, "us")
        for name, server_url, server in (("l2c serve", url, process), ("bare ASGI app", bare_url, bare_process)):
            rate, cpu = cpu_per_request(wrk, server_url, server.pid, 3)
            show(f"one row, {CONNECTIONS} connections, {name}: server CPU per request ({rate:,.0f} req/s)", cpu, "us")
        big = statistics.median([wrk_post(wrk, url, body, 3, connections=1)["p50_ms"] / 1e3 for _ in range(2)])
        show("100,000 rows, one connection, the whole request", big)
        show("  of which HTTP: 2 MB in, 6 MB out (whole minus the pieces path)", big - large)
    print(f"(load average {' / '.join(f'{v:.1f}' for v in psutil.getloadavg())}; figures move with it)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
