"""Soak: 60 s of sustained load through the local cloud's API, with zero failed requests and
RSS growth under 10 % in every process (the cloud's own process and each Lambda worker).

The iris stack is deployed into a fresh local cloud (as in the e2e benchmark), warmed for 10 s
at the same load, then each process's RSS is read before and after the soak. A worker that
appears during the soak (a crash replaced, say) is reported: there should be none.

    python -m bench soak                 # 60 s soak (~1.5 minutes in all)
    python -m bench soak --seconds 20    # shorter
"""

from __future__ import annotations

import json
import os
import sys

import psutil

from bench.e2e_bench import BODY, deployed_local_cloud, load_seconds, wrk_or_say_why
from bench.runtime_bench import REPO, machine, wrk_run

RESULTS = REPO / "bench" / "results" / "soak.json"
CONNECTIONS = 8
WARM_UP_SECONDS = 10
MAX_GROWTH_PCT = 10.0


def cloud_processes() -> dict[int, psutil.Process]:
    """This process (moto, gateway, runtime) and its Lambda workers; not the load generator."""
    me = psutil.Process()
    workers = [child for child in me.children(recursive=True) if _runs_lambda_runner(child)]
    return {process.pid: process for process in [me, *workers]}


def _runs_lambda_runner(process: psutil.Process) -> bool:
    try:
        return "lambda_runner.py" in " ".join(process.cmdline())
    except psutil.Error:  # a process that ended meanwhile
        return False


def rss_by_process() -> dict[int, dict]:
    found = {}
    for pid, process in cloud_processes().items():
        try:
            found[pid] = {"role": "cloud" if pid == os.getpid() else "lambda worker",
                          "rss_mb": process.memory_info().rss / 2**20}
        except psutil.Error:
            pass
    return found


def main(argv: list[str] | None = None) -> int:
    seconds = load_seconds(argv, "soak", __doc__.splitlines()[0], default=60, quick=15)
    wrk = wrk_or_say_why("the soak")
    if wrk is None:
        return 1
    results = {"machine": machine(), "seconds": seconds, "connections": CONNECTIONS, "body": BODY,
               "max_growth_pct": MAX_GROWTH_PCT}
    with deployed_local_cloud() as (_, deployment):
        headers = {"Content-Type": "application/json", "x-api-key": deployment.api_key}
        results["warm_up"] = wrk_run(wrk, deployment.url, BODY, headers, WARM_UP_SECONDS, CONNECTIONS)
        before = rss_by_process()
        results["load"] = wrk_run(wrk, deployment.url, BODY, headers, seconds, CONNECTIONS)
        after = rss_by_process()
    processes = []
    for pid, first in before.items():
        last = after.get(pid)
        growth = None if last is None else 100.0 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"]
        processes.append({"pid": pid, "role": first["role"], "rss_before_mb": first["rss_mb"],
                          "rss_after_mb": last["rss_mb"] if last else None, "growth_pct": growth})
    results["processes"] = processes
    results["new_processes_during_soak"] = sorted(set(after) - set(before))
    results["machine"]["load_average_at_end"] = os.getloadavg()
    load = results["load"]
    failures = load["non_2xx"] + load["socket_errors"]
    worst = max((p["growth_pct"] for p in processes if p["growth_pct"] is not None), default=float("nan"))
    vanished = [p["pid"] for p in processes if p["growth_pct"] is None]
    results["met"] = (failures == 0 and worst < MAX_GROWTH_PCT and not vanished
                      and not results["new_processes_during_soak"])
    print(f"{seconds} s at {CONNECTIONS} connections through the API: {load['requests']:,} requests, "
          f"{load['requests_per_s']:.1f} req/s, p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms, "
          f"{failures} failed", flush=True)
    for process in processes:
        growth = "gone" if process["growth_pct"] is None else f"{process['growth_pct']:+.2f} %"
        after_mb = f"{process['rss_after_mb']:.1f}" if process["rss_after_mb"] else "-"
        print(f"  {process['role']:<14} pid {process['pid']:>7}: {process['rss_before_mb']:7.1f} -> {after_mb} MB ({growth})",
              flush=True)
    print(f"worst RSS growth {worst:+.2f} % (limit {MAX_GROWTH_PCT:g} %); new processes during the soak: "
          f"{len(results['new_processes_during_soak'])}; {'PASS' if results['met'] else 'MISS'}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
