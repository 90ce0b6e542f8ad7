"""End to end through the local cloud: HTTP -> execute-api gateway -> Lambda worker -> runtime.

What a Postman or curl user of `l2c up` gets, measured on this machine over loopback:
1. the iris model deployed with `l2c deploy`'s own code into a local cloud started here (the
   same LocalCloud that `l2c up` runs), with a usage plan wide enough that its throttle is not
   what gets measured (the throttle itself is tested in tests/integration/);
2. where one request's time goes, hop by hop: each part's own entry point is timed in this
   process (gateway, Lambda host, runtime, model) and the handler's own `latencyMs` log line is
   read from the invocation's log, over sequential requests;
3. requests/s and p50/p99 with wrk at 1, 8 and 10 keep-alive connections, the tutorial's
   JSON body `{"data": "5.1,3.5,1.4,0.2"}` with the API key;
4. the baseline, in the same run: the endpoint alone (`invoke_endpoint`'s HTTP call straight
   to the runtime, no gateway, no Lambda) at 8 connections.

Writes bench/results/e2e.json. Target: >= 300 requests/s at 8 connections with zero errors.

    python -m bench e2e            # ~1.5 minutes
    python -m bench e2e --quick    # 3 s per load run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import httpx

from bench.runtime_bench import REPO, ensure_wrk, iris_model_dir, machine, wrk_run

RESULTS = REPO / "bench" / "results" / "e2e.json"
# At most the local account's unreserved Lambda concurrency (10, l2c.local.lambdas): beyond it
# requests are throttled, on AWS too (API Gateway answers 500), and the figure says nothing
# about speed.
CONNECTIONS = (1, 8, 10)
TARGET_RPS_AT_8 = 300.0
BODY = json.dumps({"data": "5.1,3.5,1.4,0.2"})
ROW = "5.1,3.5,1.4,0.2"
PROFILE_REQUESTS = 100
STACK = "iris"


# --------------------------------------------------------------------------- the local cloud


@contextmanager
def fresh_local_cloud(prefix: str):
    """A fresh local cloud on free ports, a session on it, and deploy options wide enough that no
    throttle (the plan's or the stage's) is what a bench measures; the deploys' files go to a
    temporary folder, and every stack is destroyed afterwards."""
    from l2c.cloud import plan, teardown
    from l2c.cloud.apigateway import Limits
    from l2c.cloud.progress import Reporter
    from l2c.cloud.session import LOCAL, connect
    from l2c.config import STATE_DIR_ENV
    from l2c.local.cloud import LocalCloud, Ports

    saved = os.environ.get(STATE_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        os.environ[STATE_DIR_ENV] = folder
        cloud = LocalCloud(Ports.free()).start()
        try:
            session = connect(LOCAL, env=cloud.env)
            limits = Limits(rate_limit=100_000.0, burst_limit=100_000, quota_limit=100_000_000)
            try:
                yield cloud, session, plan.DeployOptions(limits=limits)
            finally:
                teardown.destroy(everything=True, session=session, reporter=Reporter())
        finally:
            cloud.stop()
            if saved is None:
                os.environ.pop(STATE_DIR_ENV, None)
            else:
                os.environ[STATE_DIR_ENV] = saved


@contextmanager
def deployed_local_cloud():
    """A fresh local cloud on free ports with the iris stack deployed; torn down afterwards."""
    from l2c.cloud import stack
    from l2c.cloud.progress import Reporter

    with fresh_local_cloud("l2c-bench-e2e-") as (cloud, session, options):
        yield cloud, stack.deploy(STACK, iris_model_dir(), session=session, options=options, reporter=Reporter())


# --------------------------------------------------------------------------- where the time goes


class HopTimer:
    """Wraps each part's entry point and records how long every call took (seconds)."""

    def __init__(self):
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.handler_ms: list[float] = []
        self._undo = []

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        timings = self.seconds[label]

        if _is_coroutine(original):

            async def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    timings.append(time.perf_counter() - started)
        else:

            def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    timings.append(time.perf_counter() - started)

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def read_handler_log(self, invocation) -> None:
        """The handler's own `latencyMs` from its JSON log line, as CloudWatch would show it."""
        for line in invocation.log_lines:
            start = line.find("{")
            if start >= 0 and '"latencyMs"' in line:
                self.handler_ms.append(json.loads(line[start:])["latencyMs"])

    def clear(self) -> None:
        for timings in self.seconds.values():
            timings.clear()  # in place: the wrappers hold these lists
        self.handler_ms.clear()

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def _is_coroutine(function) -> bool:
    import inspect

    return inspect.iscoroutinefunction(function)


def profile_one_request(cloud, deployment, requests: int) -> dict:
    """Median milliseconds of each hop over ``requests`` sequential calls."""
    from l2c.local.gateway.service import Gateway
    from l2c.local.lambdas import LambdaHost

    timer = HopTimer()
    timer.wrap(Gateway, "handle", "gateway")
    timer.wrap(LambdaHost, "invoke", "lambda")
    original_invoke = LambdaHost.invoke

    def invoke_and_read_log(host, *args, **kwargs):
        invocation = original_invoke(host, *args, **kwargs)
        timer.read_handler_log(invocation)
        return invocation

    LambdaHost.invoke = invoke_and_read_log
    client_seconds = []
    try:
        with httpx.Client(timeout=30) as client:
            headers = {"x-api-key": deployment.api_key, "content-type": "application/json"}
            for _ in range(5):  # warm: worker started, model loaded, caches filled
                client.post(deployment.url, content=BODY, headers=headers).raise_for_status()
            timer.clear()
            for _ in range(requests):
                started = time.perf_counter()
                client.post(deployment.url, content=BODY, headers=headers).raise_for_status()
                client_seconds.append(time.perf_counter() - started)
    finally:
        LambdaHost.invoke = original_invoke
        timer.restore()
    median_ms = {label: 1000 * statistics.median(values) for label, values in timer.seconds.items()}
    # The runtime runs in a process of its own, out of reach of the wrappers: timed from outside.
    median_ms["runtime"] = runtime_round_trip_ms(cloud, deployment, requests)
    total = 1000 * statistics.median(client_seconds)
    handler = statistics.median(timer.handler_ms) if timer.handler_ms else float("nan")
    hops = {
        "client <-> gateway HTTP": total - median_ms["gateway"],
        "gateway: route, API key, usage plan, permission (control-plane reads)": median_ms["gateway"]
        - median_ms["lambda"],
        "Lambda host <-> worker process (pipe, event JSON, log forwarding)": median_ms["lambda"] - handler,
        "handler: parse, boto3 invoke_endpoint call, answer": handler - median_ms["runtime"],
        "runtime process: HTTP, resolve endpoint, parse CSV, predict, format": median_ms["runtime"],
    }
    return {"requests": requests, "total_ms": total, "hops_ms": hops, "measured_ms": {**median_ms, "handler": handler}}


def runtime_round_trip_ms(cloud, deployment, requests: int) -> float:
    """Median of ``requests`` sequential InvokeEndpoint requests straight to the runtime (raw HTTP)."""
    url = f"{cloud.runtime_url}/endpoints/{deployment.endpoint}/invocations"
    headers = {"Content-Type": "text/csv", "Accept": "application/json"}
    seconds = []
    with httpx.Client(timeout=30) as client:
        for _ in range(5):
            client.post(url, content=ROW, headers=headers).raise_for_status()
        for _ in range(requests):
            started = time.perf_counter()
            client.post(url, content=ROW, headers=headers).raise_for_status()
            seconds.append(time.perf_counter() - started)
    return 1000 * statistics.median(seconds)


# --------------------------------------------------------------------------- load


def load_runs(wrk: str, deployment, seconds: int) -> dict:
    headers = {"Content-Type": "application/json", "x-api-key": deployment.api_key}
    # Lambda starts a worker per concurrent invocation (up to 4 here), each a ~1 s cold start:
    # warm them all first, so the figures are steady state; the cold start is reported apart.
    wrk_run(wrk, deployment.url, BODY, headers, 2, max(CONNECTIONS))
    runs = {}
    for connections in CONNECTIONS:
        runs[str(connections)] = wrk_run(wrk, deployment.url, BODY, headers, seconds, connections)
        figures = runs[str(connections)]
        print(
            f"  {connections:>2} connections: {figures['requests_per_s']:8.1f} req/s  p50 {figures['p50_ms']:7.2f} ms"
            f"  p99 {figures['p99_ms']:7.2f} ms  errors {figures['non_2xx'] + figures['socket_errors']}",
            flush=True,
        )
    return runs


def endpoint_alone(wrk: str, cloud, deployment, seconds: int) -> dict:
    """The baseline: the runtime's InvokeEndpoint route, as boto3 calls it, without gateway or Lambda."""
    url = f"{cloud.runtime_url}/endpoints/{deployment.endpoint}/invocations"
    headers = {"Content-Type": "text/csv", "Accept": "application/json"}
    figures = wrk_run(wrk, url, ROW, headers, seconds, 8)
    print(
        f"  endpoint alone, 8 connections: {figures['requests_per_s']:8.1f} req/s  p50 {figures['p50_ms']:7.2f} ms"
        f"  p99 {figures['p99_ms']:7.2f} ms",
        flush=True,
    )
    return figures


def load_seconds(argv: list[str] | None, name: str, description: str, default: int, quick: int) -> int:
    """The ``--seconds`` / ``--quick`` options the load benchmarks share."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}", description=description)
    parser.add_argument("--quick", action="store_true", help=f"{quick} s load runs (noisier)")
    parser.add_argument("--seconds", type=int, default=default, help="length of each load run")
    args = parser.parse_args(argv or [])
    return quick if args.quick else args.seconds


def wrk_or_say_why(what: str) -> str | None:
    wrk = ensure_wrk()
    if wrk is None:
        print(f"wrk is not available: {what} cannot be measured", flush=True)
    return wrk


def main(argv: list[str] | None = None) -> int:
    seconds = load_seconds(argv, "e2e", __doc__.splitlines()[0], default=10, quick=3)
    wrk = wrk_or_say_why("the end-to-end load figures")
    if wrk is None:
        return 1
    results = {
        "machine": machine(),
        "stack": STACK,
        "body": BODY,
        "load_generator": "wrk (Debian package)",
        "target_rps_at_8": TARGET_RPS_AT_8,
    }
    with deployed_local_cloud() as (cloud, deployment):
        answer = httpx.post(deployment.url, content=BODY, headers={"x-api-key": deployment.api_key}, timeout=30)
        if answer.status_code != 200 or answer.json().get("prediction") != "setosa":
            print(f"the API answered {answer.status_code}: {answer.text[:300]}", flush=True)
            return 1
        print(f"where one request's time goes (median of {PROFILE_REQUESTS} sequential requests):", flush=True)
        results["profile"] = profile_one_request(cloud, deployment, PROFILE_REQUESTS)
        for hop, ms in results["profile"]["hops_ms"].items():
            print(f"  {ms:7.2f} ms  {hop}", flush=True)
        print(f"  {results['profile']['total_ms']:7.2f} ms  in all, as the client sees it", flush=True)
        print("through the API (HTTP -> gateway -> Lambda worker -> runtime):", flush=True)
        results["api"] = load_runs(wrk, deployment, seconds)
        results["endpoint_alone"] = endpoint_alone(wrk, cloud, deployment, seconds)
    at_8 = results["api"]["8"]
    results["api_vs_endpoint_alone_at_8"] = at_8["requests_per_s"] / results["endpoint_alone"]["requests_per_s"]
    errors = sum(run["non_2xx"] + run["socket_errors"] for run in [*results["api"].values(), results["endpoint_alone"]])
    results["errors"] = errors
    results["target_met"] = at_8["requests_per_s"] >= TARGET_RPS_AT_8 and errors == 0
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(
        f"8 connections: {at_8['requests_per_s']:.1f} req/s through the API = "
        f"{results['api_vs_endpoint_alone_at_8']:.2f}x the endpoint alone; "
        f"{'PASS' if results['target_met'] else 'MISS'} (target >= {TARGET_RPS_AT_8:g} req/s, zero errors)",
        flush=True,
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"errors during load: {errors}; results written to {RESULTS.relative_to(REPO)}", flush=True)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
