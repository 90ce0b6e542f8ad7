"""Soak: 60 s of sustained load through the local cloud's API, with zero failed requests and
the memory of every process bounded: the cloud's own process (moto, gateway), the runtime's
process (the inference server) and each Lambda worker.

The iris stack is deployed into a fresh local cloud (as in the e2e benchmark), warmed for 10 s
at the same load, then each process's RSS is sampled every second through the soak: start,
peak and end, their ratios, and the trend fitted over the soak's second half. The runtime and
the workers must show peak <= 1.10x start and no growth trend (under 1 % of the start per
minute); the cloud's process keeps every CloudWatch log event the soak writes (moto, like
CloudWatch without a retention policy, never drops them), so it is held to growth < 10 %. A
worker that appears during the soak (a crash replaced, say) is reported: there should be none.

    python -m bench soak                 # 60 s soak (~1.5 minutes in all)
    python -m bench soak --seconds 20    # shorter
"""

from __future__ import annotations

import json
import os
import sys

import psutil

from bench.e2e_bench import BODY, deployed_local_cloud, load_seconds, wrk_or_say_why
from bench.runtime_bench import REPO, TARGETS, machine, memory_summary, parse_wrk, sample_during, wrk_run, wrk_started

RESULTS = REPO / "bench" / "results" / "soak.json"
CONNECTIONS = 8
WARM_UP_SECONDS = 10
MAX_CLOUD_GROWTH_PCT = 10.0
MAX_PEAK_VS_START = TARGETS["rss_peak_vs_start"][0]
MAX_TREND_PCT_PER_MIN = TARGETS["rss_trend_pct_per_min"][0]


def cloud_processes() -> dict[int, tuple[str, psutil.Process]]:
    """This process (moto, gateway), the runtime's process and the Lambda workers; not the load generator."""
    me = psutil.Process()
    found = {me.pid: ("cloud", me)}
    for child in me.children(recursive=True):
        role = _role(child)
        if role:
            found[child.pid] = (role, child)
    return found


def _role(process: psutil.Process) -> str | None:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:  # a process that ended meanwhile
        return None
    if "lambda_runner.py" in command:
        return "lambda worker"
    if "l2c.local.runtime_process" in command:
        return "runtime"
    return None


def rss_of(processes: dict[int, tuple[str, psutil.Process]]) -> dict[int, float]:
    found = {}
    for pid, (_, process) in processes.items():
        try:
            found[pid] = process.memory_info().rss
        except psutil.Error:
            pass
    return found


def main(argv: list[str] | None = None) -> int:
    seconds = load_seconds(argv, "soak", __doc__.splitlines()[0], default=60, quick=15)
    wrk = wrk_or_say_why("the soak")
    if wrk is None:
        return 1
    results = {
        "machine": machine(),
        "seconds": seconds,
        "connections": CONNECTIONS,
        "body": BODY,
        "targets": {
            "max_peak_vs_start": MAX_PEAK_VS_START,
            "max_trend_pct_per_min": MAX_TREND_PCT_PER_MIN,
            "max_cloud_growth_pct": MAX_CLOUD_GROWTH_PCT,
        },
    }
    with deployed_local_cloud() as (_, deployment):
        headers = {"Content-Type": "application/json", "x-api-key": deployment.api_key}
        results["warm_up"] = wrk_run(wrk, deployment.url, BODY, headers, WARM_UP_SECONDS, CONNECTIONS)
        processes = cloud_processes()
        with wrk_started(wrk, deployment.url, BODY, headers, seconds, CONNECTIONS) as load:
            samples = sample_during(load, lambda: rss_of(processes))
            output, _ = load.communicate(timeout=60)
        results["load"] = parse_wrk(output)
        appeared = sorted(set(cloud_processes()) - set(processes))
    report = []
    for pid, (role, _) in processes.items():
        series = [(at, rss[pid] / 2**20) for at, rss in samples if pid in rss]
        summary = memory_summary(series) if len(series) == len(samples) and len(series) >= 2 else None
        if summary is None:
            met = False
        elif role == "cloud":
            met = 100.0 * (summary["end_mb"] - summary["start_mb"]) / summary["start_mb"] < MAX_CLOUD_GROWTH_PCT
        else:
            met = (
                summary["peak_vs_start"] <= MAX_PEAK_VS_START and summary["trend_pct_per_min"] <= MAX_TREND_PCT_PER_MIN
            )
        report.append(
            {
                "pid": pid,
                "role": role,
                "met": met,
                **(summary or {"gone": True}),
                "rss_mb": [round(mb, 1) for _, mb in series],
            }
        )
    results["processes"] = report
    results["new_processes_during_soak"] = appeared
    results["machine"]["load_average_at_end"] = os.getloadavg()
    load = results["load"]
    failures = load["non_2xx"] + load["socket_errors"]
    results["met"] = failures == 0 and all(p["met"] for p in report) and not appeared
    print(
        f"{seconds} s at {CONNECTIONS} connections through the API: {load['requests']:,} requests, "
        f"{load['requests_per_s']:.1f} req/s, p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms, "
        f"{failures} failed",
        flush=True,
    )
    for process in report:
        if process.get("gone"):
            print(f"  {process['role']:<14} pid {process['pid']:>7}: gone during the soak; MISS", flush=True)
            continue
        print(
            f"  {process['role']:<14} pid {process['pid']:>7}: RSS start / peak / end {process['start_mb']:7.1f} / "
            f"{process['peak_mb']:7.1f} / {process['end_mb']:7.1f} MB, peak/start {process['peak_vs_start']:.3f}x, "
            f"end/start {process['end_vs_start']:.3f}x, trend {process['trend_pct_per_min']:+.2f} %/min; "
            f"{'PASS' if process['met'] else 'MISS'}",
            flush=True,
        )
    print(
        f"targets: runtime and workers peak/start <= {MAX_PEAK_VS_START:g}x and trend <= {MAX_TREND_PCT_PER_MIN:g} %/min, "
        f"cloud growth < {MAX_CLOUD_GROWTH_PCT:g} %; new processes during the soak: {len(appeared)}; "
        f"{'PASS' if results['met'] else 'MISS'}",
        flush=True,
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
