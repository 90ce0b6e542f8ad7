"""Rows per second of `l2c batch` on the local cloud against in-process prediction, in the same run.

1. A local cloud on free ports (the same LocalCloud `l2c up` runs) with the iris stack deployed,
   at pace 0 so the instances' paced start-up is not what gets measured (it is reported apart:
   at the default pace 0.01 it adds 2.4 s, on AWS about 4 minutes);
2. N jittered iris rows (default 1,000,000) written as CSV, run through
   :func:`l2c.cloud.batch.run_batch` as `l2c batch` runs it: upload, CreateTransformJob, wait,
   download, write the output file;
3. the baselines, same rows, same booster, in this process: ``Booster.inplace_predict`` of the
   already-parsed float32 matrix (the model alone), and the container's own logic
   (``Engine.invoke`` on the CSV bytes: parse, predict, format) in 6 MB mini-batches.

Prints rows/s of each and the ratios; writes bench/results/batch.json.

    python -m bench batch            # 1,000,000 rows (~1.5 minutes)
    python -m bench batch --quick    # 200,000 rows
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.e2e_bench import deployed_local_cloud
from bench.runtime_bench import REPO, iris_model_dir, machine

RESULTS = REPO / "bench" / "results" / "batch.json"
MINI_BATCH_BYTES = 6 * 1024 * 1024


def iris_rows(count: int) -> np.ndarray:
    from l2c.datasets import load_built_in

    features = load_built_in("iris").features.to_numpy(dtype=np.float64)
    rng = np.random.default_rng(0)
    rows = features[rng.integers(0, len(features), count)] + rng.normal(0, 0.2, (count, features.shape[1]))
    return np.round(np.clip(rows, 0.0, None), 2)


def in_process(model_dir: Path, rows: np.ndarray, csv_bytes: bytes) -> dict:
    from l2c import artifact
    from l2c.serving.engine import Engine

    booster = artifact.load_artifact(model_dir / "model.tar.gz").booster
    matrix = rows.astype(np.float32)
    started = time.perf_counter()
    booster.inplace_predict(matrix)
    predict_s = time.perf_counter() - started

    engine = Engine(artifact.load_artifact(model_dir / "model.tar.gz"))
    started = time.perf_counter()
    start = 0
    while start < len(csv_bytes):
        end = (
            len(csv_bytes)
            if start + MINI_BATCH_BYTES >= len(csv_bytes)
            else csv_bytes.rfind(b"\n", start, start + MINI_BATCH_BYTES) + 1
        )
        reply = engine.invoke(csv_bytes[start:end], "text/csv", "text/csv")
        assert reply.status == 200, reply.body[:200]
        start = end
    container_s = time.perf_counter() - started
    return {"inplace_predict_s": predict_s, "container_logic_s": container_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench batch", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    options = parser.parse_args(argv or [])
    count = 200_000 if options.quick else options.rows

    import httpx

    from l2c.cloud import batch
    from l2c.cloud.progress import Reporter
    from l2c.cloud.session import LOCAL, connect

    rows = iris_rows(count)
    results = {"machine": machine(), "rows": count, "stack": "iris", "max_payload_mb": 6}
    with tempfile.TemporaryDirectory(prefix="l2c-bench-batch-") as folder:
        source = Path(folder) / "rows.csv"
        np.savetxt(source, rows, fmt="%.2f", delimiter=",")
        csv_bytes = source.read_bytes()
        results["input_bytes"] = len(csv_bytes)
        baseline = in_process(iris_model_dir(), rows, csv_bytes)
        with deployed_local_cloud() as (cloud, _deployment):
            httpx.post(cloud.env["AWS_ENDPOINT_URL"] + "/_l2c/pace", json={"pace": 0}).raise_for_status()
            session = connect(LOCAL, env=cloud.env)
            started = time.perf_counter()
            result = batch.run_batch("iris", source, session=session, reporter=Reporter(), clean=True)
            batch_s = time.perf_counter() - started
            job = session.client("sagemaker").describe_transform_job(TransformJobName=result.job_name)
            # The job alone, as SageMaker times it: from the instances being up to the output written.
            results["job_s"] = (job["TransformEndTime"] - job["TransformStartTime"]).total_seconds()
            written = sum(1 for _ in result.output.open())
    if written != count:
        print(f"l2c batch wrote {written} lines for {count} rows", flush=True)
        return 1
    results["l2c_batch_s"] = batch_s
    results.update(baseline)
    results["rows_per_s"] = {
        "l2c_batch": count / batch_s,
        "in_process_inplace_predict": count / baseline["inplace_predict_s"],
        "in_process_container_logic": count / baseline["container_logic_s"],
    }
    per_s = results["rows_per_s"]
    results["l2c_batch_vs_inplace_predict"] = per_s["l2c_batch"] / per_s["in_process_inplace_predict"]
    results["l2c_batch_vs_container_logic"] = per_s["l2c_batch"] / per_s["in_process_container_logic"]
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(
        f"  the transform job itself (start to end): {results['job_s']:.1f} s; the rest is upload, download, "
        "and writing the output file",
        flush=True,
    )
    for name, value in per_s.items():
        print(f"  {value:12,.0f} rows/s  {name}", flush=True)
    print(
        f"l2c batch: {count:,} rows in {batch_s:.1f} s = {results['l2c_batch_vs_inplace_predict']:.3f}x in-process "
        f"inplace_predict, {results['l2c_batch_vs_container_logic']:.3f}x the container logic in-process",
        flush=True,
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {RESULTS.relative_to(REPO)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
