"""API soak: 10 minutes of good traffic through the API, a slow function and hostile clients mixed in.

HTTP -> execute-api gateway -> Lambda worker -> runtime, on the local cloud: the good requests'
p99 against a baseline of the same run, zero lost answers, and flat memory.

A fresh local cloud (the LocalCloud `l2c up` runs) on free ports gets two stacks deployed by
`l2c deploy`'s own code, both from the iris model (models/iris, or trained into a temporary
folder), on the one shared REST API, stage, usage plan and key:
- ``iris``: the good route, POST /prod/irisprediction;
- ``iris-slow``: POST /prod/irisslowprediction, whose function is the same handler behind a
  wrapper that sleeps SLOW_SECONDS first, with a reserved concurrency of SLOW_RESERVED
  (PutFunctionConcurrency). Lambda's functions share the account's unreserved concurrency
  unless one reserves its own, and a reservation is both its floor and its ceiling ("Configuring
  reserved concurrency for a function", AWS Lambda developer guide): that reservation is how a
  slow function is kept from taking the executions other routes need. Past it Lambda throttles
  the call and API Gateway answers 500 (see l2c.local.gateway), at once.

The usage plan and the stage throttle are set wide (100,000 req/s, as in the e2e bench): every
caller here shares the one key, and the throttle itself is tested in tests/integration/.

The load runs in two processes of their own (children of this one, not counted in the cloud's
memory), stdlib asyncio over raw sockets, so the clients take nothing from the cloud's GIL:
- good: GOOD_CONNECTIONS keep-alive connections, each request a single iris row (the three
  classes in turn), every answer checked: status 200 and the row's known label; a request
  with no answer, another status or another label is LOST. Each is timed from its first byte
  sent to its last byte read.
- others: SLOW_CALLERS keep-alive connections to the slow route (200, or 500 when the function
  is at its reserved concurrency; 429 if throttled; a pause of SLOW_PAUSE_S after a refusal,
  as a client that retries); and the hostile clients, each bounded in number and rate:
  slowloris (SLOWLORIS connections trickling one header line every SLOWLORIS_LINE_S, never
  ending the head: 408 after the gateway's 30 s), oversized heads (12 kB and 40 kB of
  header, over API Gateway's 10,240 bytes: 431), garbage bytes (a TLS ClientHello and random
  bytes: 400), IDLE_CONNECTIONS (``--idle``) connections opened and never used (closed by the
  gateway after 30 s, then opened again), a wrong-key flood (WRONG_KEY_CONNECTIONS keep-alive
  connections: 403) and huge bodies (Content-Length 11 MiB, over the 10 MB payload: 413).

Phases: warm-up (every worker of both functions started), the BASELINE_SECONDS baseline (good
clients alone: no slow callers, no hostile clients), then the mixed soak of ``--seconds``. Through
the soak the RSS of the cloud's processes (this one: moto and the gateway; the runtime's; every
Lambda worker; the artifact check's fork servers) is sampled every SAMPLE_EVERY_S. Targets (PASS/MISS): zero lost answers in both
phases; mixed p99 / baseline p99 <= P99_RATIO_MAX; the cloud's total RSS peak <= 1.10x its
start and its trend over the soak's second half <= 1 % of the start per minute; every hostile
request answered with its expected status; the slow function saturated (both its 200s and its
refusals seen); no process appearing or vanishing during the soak; none left after shutdown.

Writes bench/results/api_soak.json.

    python -m bench api_soak                 # 10-minute soak (~12 minutes in all)
    python -m bench api_soak --seconds 60    # quick (~2 minutes; also --quick)
    python -m bench api_soak --idle 1500     # more idle connections, nearer the gateway's cap
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "api_soak.json"
GOOD_STACK, SLOW_STACK = "iris", "iris-slow"
# One row of each class, with the label the iris model gives it (checked before the load).
GOOD_ROWS = (("5.1,3.5,1.4,0.2", "setosa"), ("6.2,2.9,4.3,1.3", "versicolor"), ("7.7,3.0,6.1,2.3", "virginica"))
GOOD_CONNECTIONS = 4
SOAK_SECONDS = 600
QUICK_SECONDS = 60
BASELINE_SECONDS = 30
SLOW_SECONDS = 2.0
SLOW_RESERVED = 4
SLOW_CALLERS = 8
SLOW_PAUSE_S = 0.1
SLOWLORIS = 20
SLOWLORIS_LINE_S = 2.0
IDLE_CONNECTIONS = 200
MAX_IDLE = 4000  # both ends of each are open files of this machine's processes
WRONG_KEY_CONNECTIONS = 2
WRONG_KEY_PAUSE_S = 0.02  # at most ~50 requests/s per connection
OVERSIZED_EVERY_S = 0.2
GARBAGE_EVERY_S = 0.2
HUGE_EVERY_S = 1.0
HUGE_DECLARED_BYTES = 11 * 1024 * 1024
HUGE_SENT_BYTES = 64 * 1024  # what is sent of it before the answer: the gateway refuses on the declared length
# Longer than API Gateway's 29 s integration timeout: a request without an answer by then has none.
ANSWER_TIMEOUT_S = 35.0
SAMPLE_EVERY_S = 5.0
# The slow callers and hostile clients start this long before the good ones and stop this long
# after, so the good window is mixed from end to end.
SETTLE_S = 3.0
P99_RATIO_MAX = 3.0
MAX_PEAK_VS_START = 1.10
MAX_TREND_PCT_PER_MIN = 1.0
# What each client class must be answered (status codes; "closed": closed without an answer).
EXPECTED = {
    "slow": {200, 500, 429},
    "wrong_key": {403},
    "oversized": {431},
    "garbage": {400},
    "huge": {413},
    "slowloris": {408},
    "idle": {"closed"},
}
# Outcomes that say only that the run ended while the connection was still open or waiting.
AT_THE_END = "open at the end"

SLOW_HANDLER = '''"""The prediction function made slow: waits SLOW_SECONDS, then answers as lambda_function does."""
import os
import time

import lambda_function


def lambda_handler(event, context=None):
    time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    return lambda_function.lambda_handler(event, context)
'''


# =========================================================================== clients (child processes)


class Http:
    """One HTTP/1.1 connection over asyncio streams: just enough client for the gateway's answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Http:
        reader, writer = await asyncio.open_connection(host, port, limit=256 * 1024)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if value:
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def exchange(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        await self.send(data)
        return await asyncio.wait_for(self.answer(), ANSWER_TIMEOUT_S)

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass


def post_bytes(config: dict, path: str, body: bytes, key: str, extra: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {config['host']}:{config['port']}\r\nContent-Type: application/json\r\n"
        f"x-api-key: {key}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list (``share`` in 0..1)."""
    if not ordered:
        return float("nan")
    rank = max(1, int(round(share * len(ordered) + 0.4999)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "requests": len(ordered),
        "p50_ms": 1000 * percentile(ordered, 0.50),
        "p99_ms": 1000 * percentile(ordered, 0.99),
        "max_ms": 1000 * ordered[-1] if ordered else float("nan"),
    }


def judge_good(status: int, body: bytes, label: str) -> str:
    if status != 200:
        return f"status {status}"
    try:
        answer = json.loads(body)
    except ValueError:
        return "wrong answer"
    return "ok" if isinstance(answer, dict) and answer.get("prediction") == label else "wrong answer"


async def good_clients(config: dict, seconds: float) -> dict:
    """GOOD_CONNECTIONS closed-loop clients: every request timed and its answer checked."""
    records: list[tuple[float, float, str]] = []  # (start since t0, seconds, outcome)
    examples: list[str] = []
    requests = [
        (post_bytes(config, config["good_path"], json.dumps({"data": row}).encode(), config["key"]), label)
        for row, label in GOOD_ROWS
    ]
    t0 = time.monotonic()
    deadline = t0 + seconds

    async def client(index: int) -> None:
        connection, turn = None, index
        while time.monotonic() < deadline:
            data, label = requests[turn % len(requests)]
            turn += 1
            started = time.monotonic()
            try:
                if connection is None:
                    connection = await Http.open(config["host"], config["port"])
                status, headers, body = await connection.exchange(data)
                outcome = judge_good(status, body, label)
                if headers.get("connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as err:
                outcome = f"no answer ({type(err).__name__})"
                body = b""
                if connection is not None:
                    connection.close()
                    connection = None
            ended = time.monotonic()
            records.append((started - t0, ended - started, outcome))
            if outcome != "ok" and len(examples) < 10:
                examples.append(f"{started - t0:.1f} s: {outcome}: {body[:200]!r}")
        if connection is not None:
            connection.close()

    await asyncio.gather(*(client(i) for i in range(GOOD_CONNECTIONS)))
    elapsed = time.monotonic() - t0
    outcomes = Counter(outcome for _, _, outcome in records)
    return {
        "seconds": elapsed,
        "connections": GOOD_CONNECTIONS,
        "requests_per_s": len(records) / elapsed,
        **latency_summary([s for _, s, _ in records]),
        "outcomes": dict(outcomes),
        "lost": sum(count for outcome, count in outcomes.items() if outcome != "ok"),
        "lost_examples": examples,
        "per_minute": per_minute(records, elapsed),
    }


def per_minute(records: list[tuple[float, float, str]], elapsed: float) -> list[dict]:
    """Count, rate, latency and lost answers of each minute (a last part-minute of 1 s or more too)."""
    minutes = []
    for minute in range(int(elapsed // 60) + 1):
        window = [(seconds, outcome) for start, seconds, outcome in records if minute * 60 <= start < (minute + 1) * 60]
        span = min(60.0, elapsed - minute * 60)
        if window and span >= 1.0:
            minutes.append(
                {
                    "minute": minute + 1,
                    "seconds": span,
                    **latency_summary([s for s, _ in window]),
                    "requests_per_s": len(window) / span,
                    "lost": sum(1 for _, o in window if o != "ok"),
                }
            )
    return minutes


class Tally:
    """Outcomes per client class, and the lifetimes of the connections the gateway cut off."""

    def __init__(self):
        self.outcomes: dict[str, Counter] = {}
        self.lifetimes: dict[str, list[float]] = {}
        self.latencies: dict[str, list[float]] = {}
        self.opened: Counter = Counter()

    def count(self, kind: str, outcome) -> None:
        self.outcomes.setdefault(kind, Counter())[str(outcome)] += 1

    def report(self) -> dict:
        found = {}
        for kind, outcomes in self.outcomes.items():
            expected = {str(o) for o in EXPECTED[kind]}
            unexpected = sum(n for o, n in outcomes.items() if o not in expected and o != AT_THE_END)
            entry = {
                "outcomes": dict(outcomes),
                "expected": sorted(expected),
                "unexpected": unexpected,
                "connections_opened": self.opened[kind],
            }
            if self.lifetimes.get(kind):
                ordered = sorted(self.lifetimes[kind])
                entry["cut_off_after_s"] = {"min": ordered[0], "median": percentile(ordered, 0.5), "max": ordered[-1]}
            if self.latencies.get(kind):
                entry["latency"] = latency_summary(self.latencies[kind])
            found[kind] = entry
        return found


async def answer_or_closed(connection: Http) -> int | str:
    try:
        status, _, _ = await asyncio.wait_for(connection.answer(), ANSWER_TIMEOUT_S)
        return status
    except (asyncio.IncompleteReadError, ConnectionError):
        return "closed"
    except TimeoutError:
        return "no answer"


async def slow_caller(config: dict, tally: Tally, stop: asyncio.Event) -> None:
    body = json.dumps({"data": GOOD_ROWS[0][0]}).encode()
    data = post_bytes(config, config["slow_path"], body, config["key"])
    connection = None
    while not stop.is_set():
        started = time.monotonic()
        try:
            if connection is None:
                connection = await Http.open(config["host"], config["port"])
                tally.opened["slow"] += 1
            status, headers, answer = await connection.exchange(data)
            if status == 200 and judge_good(status, answer, GOOD_ROWS[0][1]) != "ok":
                status = "wrong answer"
            if headers.get("connection", "").lower() == "close":
                connection.close()
                connection = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as err:
            status = f"no answer ({type(err).__name__})"
            if connection is not None:
                connection.close()
                connection = None
        tally.count("slow", status)
        if status == 200:
            tally.latencies.setdefault("slow", []).append(time.monotonic() - started)
        else:
            await asyncio.sleep(SLOW_PAUSE_S)
    if connection is not None:
        connection.close()


async def wrong_key_flood(config: dict, tally: Tally, stop: asyncio.Event, index: int) -> None:
    body = json.dumps({"data": GOOD_ROWS[0][0]}).encode()
    data = post_bytes(config, config["good_path"], body, f"not-the-key-{index:04d}-" + "x" * 24)
    connection = None
    while not stop.is_set():
        try:
            if connection is None:
                connection = await Http.open(config["host"], config["port"])
                tally.opened["wrong_key"] += 1
            status, headers, _ = await connection.exchange(data)
            if headers.get("connection", "").lower() == "close":
                connection.close()
                connection = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            status = "closed"
            if connection is not None:
                connection.close()
                connection = None
        tally.count("wrong_key", status)
        await asyncio.sleep(WRONG_KEY_PAUSE_S)
    if connection is not None:
        connection.close()


async def one_shot(config: dict, tally: Tally, kind: str, data: bytes) -> None:
    """A new connection, one hostile request, its answer (or the connection's end)."""
    try:
        connection = await Http.open(config["host"], config["port"])
    except OSError:
        tally.count(kind, "connect failed")
        return
    tally.opened[kind] += 1
    try:
        try:
            await connection.send(data)
        except ConnectionError:
            pass  # refused before all of it was taken: the answer may still be there to read
        tally.count(kind, await answer_or_closed(connection))
    finally:
        connection.close()


def oversized_heads(config: dict) -> list[bytes]:
    body = json.dumps({"data": GOOD_ROWS[0][0]}).encode()
    # 12 kB: over API Gateway's 10,240 bytes of request line and headers, read whole and refused
    # by the gateway; 40 kB: over what the front end reads of a head at all, refused there.
    return [
        post_bytes(config, config["good_path"], body, config["key"], f"X-Pad: {'a' * size}\r\n")
        for size in (12_000, 40_000)
    ]


def garbage(seed: int) -> list[bytes]:
    # A TLS ClientHello's first bytes (https spoken to an http port), then random bytes; each
    # ends with a blank line so the parser sees an end of head either way.
    rng = random.Random(seed)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(32)
    return [hello + b"\r\n\r\n", bytes([rng.randrange(1, 32)]) + rng.randbytes(511) + b"\r\n\r\n"]


def huge_head(config: dict) -> bytes:
    head = (
        f"POST {config['good_path']} HTTP/1.1\r\nHost: {config['host']}:{config['port']}\r\n"
        f"Content-Type: application/json\r\nx-api-key: {config['key']}\r\n"
        f"Content-Length: {HUGE_DECLARED_BYTES}\r\n\r\n"
    )
    return head.encode() + b"7" * HUGE_SENT_BYTES


async def one_at_a_time(
    config: dict, tally: Tally, stop: asyncio.Event, kind: str, interval: float, requests: list[bytes]
) -> None:
    """One hostile request of ``kind`` every ``interval`` (the next waits for the last's answer)."""
    turn = 0
    while not stop.is_set():
        await one_shot(config, tally, kind, requests[turn % len(requests)])
        turn += 1
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass


async def slowloris(config: dict, tally: Tally, stop: asyncio.Event, index: int) -> None:
    """Opens a request and sends one more header line every SLOWLORIS_LINE_S, never ending the head."""
    while not stop.is_set():
        try:
            connection = await Http.open(config["host"], config["port"])
        except OSError:
            tally.count("slowloris", "connect failed")
            await asyncio.sleep(1.0)
            continue
        tally.opened["slowloris"] += 1
        opened = time.monotonic()
        reading = asyncio.ensure_future(answer_or_closed(connection))
        outcome, line = None, 0
        try:
            await connection.send(f"POST {config['good_path']} HTTP/1.1\r\nHost: {config['host']}\r\n".encode())
            while not stop.is_set():
                done, _ = await asyncio.wait({reading}, timeout=SLOWLORIS_LINE_S)
                if done:
                    break
                line += 1
                await connection.send(f"X-Slow-{index}-{line}: {'z' * 8}\r\n".encode())
        except ConnectionError:
            pass  # cut off: what it answered (if anything) is read below
        if reading.done() or not stop.is_set():
            outcome = await reading
            tally.lifetimes.setdefault("slowloris", []).append(time.monotonic() - opened)
        else:
            reading.cancel()
            outcome = AT_THE_END
        tally.count("slowloris", outcome)
        connection.close()


async def idle_connection(config: dict, tally: Tally, stop: asyncio.Event) -> None:
    """Opens a connection and sends nothing; opened again whenever the gateway closes it."""
    while not stop.is_set():
        try:
            connection = await Http.open(config["host"], config["port"])
        except OSError:
            tally.count("idle", "connect failed")
            await asyncio.sleep(1.0)
            continue
        tally.opened["idle"] += 1
        opened = time.monotonic()
        reading = asyncio.ensure_future(connection.reader.read(65536))
        waiting = asyncio.ensure_future(stop.wait())
        await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if reading.done():
            try:
                outcome = "closed" if reading.result() == b"" else "answered"
            except ConnectionError:
                outcome = "closed"
            tally.lifetimes.setdefault("idle", []).append(time.monotonic() - opened)
        else:
            reading.cancel()
            outcome = AT_THE_END
        waiting.cancel()
        tally.count("idle", outcome)
        connection.close()


async def other_clients(config: dict, seconds: float) -> dict:
    """The slow route's callers and every hostile client, for ``seconds``."""
    tally, stop = Tally(), asyncio.Event()
    heads, junk, huge = oversized_heads(config), garbage(7), huge_head(config)
    tasks = [asyncio.ensure_future(idle_connection(config, tally, stop)) for _ in range(config["idle"])]
    tasks += [asyncio.ensure_future(slowloris(config, tally, stop, i)) for i in range(SLOWLORIS)]
    tasks += [asyncio.ensure_future(slow_caller(config, tally, stop)) for _ in range(SLOW_CALLERS)]
    tasks += [asyncio.ensure_future(wrong_key_flood(config, tally, stop, i)) for i in range(WRONG_KEY_CONNECTIONS)]
    for kind, interval, requests in (
        ("oversized", OVERSIZED_EVERY_S, heads),
        ("garbage", GARBAGE_EVERY_S, junk),
        ("huge", HUGE_EVERY_S, [huge]),
    ):
        tasks.append(asyncio.ensure_future(one_at_a_time(config, tally, stop, kind, interval, requests)))
    started = time.monotonic()
    await asyncio.sleep(seconds)
    stop.set()
    # In-flight requests end by themselves (a slow call in SLOW_SECONDS); what still waits is cut.
    _, pending = await asyncio.wait(tasks, timeout=SLOW_SECONDS + 5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {"seconds": time.monotonic() - started, "classes": tally.report()}


def client_main(role: str, config_path: str, out_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    run = good_clients if role == "good" else other_clients
    result = asyncio.run(run(config, config["seconds"]))
    Path(out_path).write_text(json.dumps(result))
    return 0


# =========================================================================== the cloud and the run


class LogCount(logging.Handler):
    """Counts the local cloud's log records by logger and level instead of printing them: the
    hostile clients make the gateway warn a few times a second."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.counts: Counter = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name} {record.levelname}"] += 1


@contextmanager
def counted_logs():
    handler = LogCount()
    loggers = [logging.getLogger(name) for name in ("l2c", "uvicorn", "uvicorn.error")]
    saved = [(logger.handlers[:], logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield handler
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved):
            logger.handlers, logger.propagate = handlers, propagate


@contextmanager
def two_stacks():
    """A fresh local cloud on free ports with the good and the slow stacks; torn down afterwards."""
    from bench.e2e_bench import fresh_local_cloud
    from bench.runtime_bench import iris_model_dir
    from l2c.cloud import stack
    from l2c.cloud.progress import Reporter

    model_dir = iris_model_dir()
    with fresh_local_cloud("l2c-bench-api-soak-") as (cloud, session, options):
        good = stack.deploy(GOOD_STACK, model_dir, session=session, options=options, reporter=Reporter())
        slow = stack.deploy(SLOW_STACK, model_dir, session=session, options=options, reporter=Reporter())
        make_slow(session, slow.function)
        yield cloud, good, slow


def make_slow(session, function: str) -> None:
    """The deployed handler behind a wrapper that sleeps, and a reserved concurrency of its own."""
    from l2c.cloud import functions

    client = session.client("lambda")
    code = functions.build_zip(functions.lambda_source_dir(), {"slow_handler.py": SLOW_HANDLER.encode()})
    client.update_function_code(FunctionName=function, ZipFile=code)
    wait_updated(session, function)
    variables = client.get_function_configuration(FunctionName=function).get("Environment", {}).get("Variables", {})
    client.update_function_configuration(
        FunctionName=function,
        Handler="slow_handler.lambda_handler",
        Environment={"Variables": {**variables, "SLOW_SECONDS": repr(SLOW_SECONDS)}},
    )
    wait_updated(session, function)
    client.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=SLOW_RESERVED)


def wait_updated(session, function: str) -> None:
    # botocore's FunctionUpdatedV2 waiter, polled at the local cloud's pace (as l2c deploy does).
    session.client("lambda").get_waiter("function_updated_v2").wait(
        FunctionName=function, WaiterConfig={"Delay": session.poll_seconds(1.0), "MaxAttempts": 300}
    )


def check_and_warm(good, slow) -> None:
    """Every row's label through the good route, one slow answer; then every worker started."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    headers = {"x-api-key": good.api_key, "Content-Type": "application/json"}

    def post(url: str, row: str) -> httpx.Response:
        return httpx.post(url, json={"data": row}, headers=headers, timeout=60)

    for row, label in GOOD_ROWS:
        answer = post(good.url, row)
        if answer.status_code != 200 or answer.json().get("prediction") != label:
            raise RuntimeError(f"{row} -> {answer.status_code} {answer.text[:300]} (expected {label})")
    answer = post(slow.url, GOOD_ROWS[0][0])
    if answer.status_code != 200 or answer.json().get("prediction") != GOOD_ROWS[0][1]:
        raise RuntimeError(f"the slow route answered {answer.status_code}: {answer.text[:300]}")
    # Lambda starts an execution environment per concurrent invocation (~1 s each): started here,
    # so that no worker appears during the soak and the baseline is steady state.
    with ThreadPoolExecutor(GOOD_CONNECTIONS + SLOW_RESERVED) as pool:
        for _ in range(3):
            calls = [pool.submit(post, good.url, GOOD_ROWS[0][0]) for _ in range(GOOD_CONNECTIONS)]
            calls += [pool.submit(post, slow.url, GOOD_ROWS[0][0]) for _ in range(SLOW_RESERVED)]
            for call in calls:
                call.result()


@contextmanager
def client_process(role: str, config: dict, seconds: float, folder: Path):
    """``python -m bench.api_soak_bench --client ROLE``; yields the process and where its result lands."""
    config_path, out_path = folder / f"{role}-config.json", folder / f"{role}-result.json"
    out_path.unlink(missing_ok=True)
    config_path.write_text(json.dumps({**config, "seconds": seconds}))
    command = [
        sys.executable,
        "-m",
        "bench.api_soak_bench",
        "--client",
        role,
        "--config",
        str(config_path),
        "--out",
        str(out_path),
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield process, out_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def collect(process: subprocess.Popen, out_path: Path, seconds: float) -> dict:
    _, errors = process.communicate(timeout=seconds + 120)
    if process.returncode != 0 or not out_path.is_file():
        raise RuntimeError(f"the load process exited with {process.returncode}: {errors[-2000:]}")
    return json.loads(out_path.read_text())


def sample_rss(process: subprocess.Popen, processes: dict, read) -> list[tuple[float, dict[int, float]]]:
    """(seconds since the start, RSS per pid) every SAMPLE_EVERY_S while ``process`` (the good load) runs."""
    samples, start = [], time.monotonic()
    while True:
        samples.append((time.monotonic() - start, read(processes)))
        if process.poll() is not None:
            return samples
        deadline = time.monotonic() + SAMPLE_EVERY_S
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)


def memory_report(processes: dict, samples: list) -> dict:
    from bench.runtime_bench import memory_summary

    complete = [pid for pid in processes if all(pid in rss for _, rss in samples)]
    total = [(at, sum(rss[pid] for pid in complete) / 2**20) for at, rss in samples]
    per_process = []
    for pid, (role, _) in processes.items():
        series = [(at, rss[pid] / 2**20) for at, rss in samples if pid in rss]
        summary = memory_summary(series) if len(series) == len(samples) and len(series) >= 2 else {"gone": True}
        per_process.append({"pid": pid, "role": role, **summary})
    summary = memory_summary(total) if len(total) >= 2 else {}
    summary["met"] = (
        bool(summary)
        and len(complete) == len(processes)
        and (summary["peak_vs_start"] <= MAX_PEAK_VS_START and summary["trend_pct_per_min"] <= MAX_TREND_PCT_PER_MIN)
    )
    return {
        "total": summary,
        "total_mb": [round(mb, 1) for _, mb in total],
        "processes": per_process,
        "vanished": [pid for pid in processes if pid not in complete],
    }


# The artifact check's fork server (l2c.serving.sandbox), started in this process when the
# control plane's CreateModel rule first checks a model: it serves the process for its life and
# ends when the process does, so it is the cloud's while it runs and no leftover after it stops.
MODEL_CHECK = "l2c.serving.sandbox"


def command_of(process) -> str | None:
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # ended meanwhile
        return None


def soak_processes() -> dict:
    """The soak bench's cloud processes (this one, the runtime, the Lambda workers) and the model check's."""
    import psutil

    from bench.soak_bench import cloud_processes

    found = cloud_processes()
    for child in psutil.Process().children(recursive=True):
        if MODEL_CHECK in (command_of(child) or ""):
            found[child.pid] = ("model check", child)
    return found


def leftover_processes() -> list[str]:
    """Children of this process still running once the cloud stopped, but the model check's."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        command = command_of(child)
        if command is not None and MODEL_CHECK not in command:
            found.append(f"{child.pid} {command[:120]}")
    return found


def run(seconds: int, baseline_seconds: int, idle: int) -> dict:
    from bench.runtime_bench import machine
    from bench.soak_bench import rss_of

    results = {
        "machine": machine(),
        "seconds": seconds,
        "baseline_seconds": baseline_seconds,
        "setup": setup_description(idle),
        "targets": {
            "lost": 0,
            "p99_ratio_max": P99_RATIO_MAX,
            "max_peak_vs_start": MAX_PEAK_VS_START,
            "max_trend_pct_per_min": MAX_TREND_PCT_PER_MIN,
            "hostile_unexpected": 0,
        },
    }
    with counted_logs() as logs, tempfile.TemporaryDirectory(prefix="l2c-api-soak-") as scratch:
        folder = Path(scratch)
        with two_stacks() as (cloud, good, slow):
            target = urlsplit(good.url)
            config = {
                "host": target.hostname,
                "port": target.port,
                "good_path": target.path,
                "slow_path": urlsplit(slow.url).path,
                "key": good.api_key,
                "idle": idle,
            }
            results["setup"]["gateway_connection_cap"] = cloud._gateway.limits.max_connections
            check_and_warm(good, slow)
            print(f"baseline: {baseline_seconds} s of {GOOD_CONNECTIONS} good connections alone", flush=True)
            with client_process("good", config, baseline_seconds, folder) as (process, out):
                results["baseline"] = collect(process, out, baseline_seconds)
            print_good("baseline", results["baseline"])
            print(
                f"mixed soak: {seconds} s of good traffic, with {SLOW_CALLERS} callers of a {SLOW_SECONDS:g} s "
                f"function (reserved concurrency {SLOW_RESERVED}) and the hostile clients",
                flush=True,
            )
            processes = soak_processes()
            others_seconds = seconds + 2 * SETTLE_S
            with client_process("others", config, others_seconds, folder) as (others, others_out):
                time.sleep(SETTLE_S)
                with client_process("good", config, seconds, folder) as (process, out):
                    samples = sample_rss(process, processes, rss_of)
                    results["mixed"] = collect(process, out, seconds)
                results["others"] = collect(others, others_out, others_seconds)
            results["new_processes_during_soak"] = sorted(set(soak_processes()) - set(processes))
            results["memory"] = memory_report(processes, samples)
        results["leftover_processes"] = leftover_processes()
        results["cloud_log_records"] = dict(logs.counts)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def setup_description(idle: int) -> dict:
    return {
        "good": {"connections": GOOD_CONNECTIONS, "rows": [row for row, _ in GOOD_ROWS]},
        "slow": {
            "callers": SLOW_CALLERS,
            "sleep_s": SLOW_SECONDS,
            "reserved_concurrency": SLOW_RESERVED,
            "pause_after_refusal_s": SLOW_PAUSE_S,
        },
        "slowloris": {"connections": SLOWLORIS, "line_every_s": SLOWLORIS_LINE_S},
        "idle": {"connections": idle},
        "wrong_key": {"connections": WRONG_KEY_CONNECTIONS, "pause_s": WRONG_KEY_PAUSE_S},
        "oversized": {"every_s": OVERSIZED_EVERY_S, "header_bytes": [12_000, 40_000]},
        "garbage": {"every_s": GARBAGE_EVERY_S},
        "huge": {"every_s": HUGE_EVERY_S, "declared_bytes": HUGE_DECLARED_BYTES, "sent_bytes": HUGE_SENT_BYTES},
        "rss_sample_every_s": SAMPLE_EVERY_S,
    }


def verdicts(results: dict) -> dict[str, bool]:
    baseline, mixed = results["baseline"], results["mixed"]
    classes = results["others"]["classes"]
    slow = classes.get("slow", {}).get("outcomes", {})
    results["p99_ratio"] = mixed["p99_ms"] / baseline["p99_ms"]
    results["throughput_ratio"] = mixed["requests_per_s"] / baseline["requests_per_s"]
    hostile = sum(entry["unexpected"] for entry in classes.values())
    results["hostile_unexpected"] = hostile
    memory = results["memory"]
    return {
        "lost = 0 (baseline and mixed)": baseline["lost"] == 0 and mixed["lost"] == 0,
        f"mixed p99 / baseline p99 <= {P99_RATIO_MAX:g}x": results["p99_ratio"] <= P99_RATIO_MAX,
        f"cloud RSS peak <= {MAX_PEAK_VS_START:g}x start, trend <= {MAX_TREND_PCT_PER_MIN:g} %/min": memory["total"][
            "met"
        ],
        "every hostile request answered as expected": hostile == 0,
        "slow function saturated (200s and refusals)": slow.get("200", 0) > 0
        and slow.get("500", 0) + slow.get("429", 0) > 0,
        "no process appeared or vanished during the soak": not results["new_processes_during_soak"]
        and not memory["vanished"],
        "no process left after shutdown": not results["leftover_processes"],
    }


def print_good(label: str, figures: dict) -> None:
    print(
        f"  {label}: {figures['requests']:,} requests in {figures['seconds']:.0f} s, {figures['requests_per_s']:.1f} req/s, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms, "
        f"lost {figures['lost']} {figures['outcomes']}",
        flush=True,
    )


def print_report(results: dict, met: dict[str, bool]) -> None:
    mixed = results["mixed"]
    print_good("mixed", mixed)
    for minute in mixed["per_minute"]:
        print(
            f"    minute {minute['minute']:>2}: {minute['requests']:,} requests, {minute['requests_per_s']:.1f} req/s, "
            f"p50 {minute['p50_ms']:.1f} ms, p99 {minute['p99_ms']:.1f} ms, max {minute['max_ms']:.1f} ms, "
            f"lost {minute['lost']}",
            flush=True,
        )
    print(
        f"  good p99 mixed / baseline: {results['p99_ratio']:.2f}x; throughput mixed / baseline: "
        f"{results['throughput_ratio']:.2f}x",
        flush=True,
    )
    setup = results["setup"]
    print(
        f"  hostile and slow clients ({setup['idle']['connections']} idle connections held; the gateway's cap is "
        f"{setup['gateway_connection_cap']}):",
        flush=True,
    )
    for kind, entry in results["others"]["classes"].items():
        extra = ""
        if "cut_off_after_s" in entry:
            extra += f", cut off after {entry['cut_off_after_s']['median']:.1f} s (median)"
        if "latency" in entry:
            extra += f", 200s p50 {entry['latency']['p50_ms']:.0f} ms"
        print(
            f"    {kind:<10} {entry['outcomes']} expected {entry['expected']}: {entry['unexpected']} unexpected, "
            f"{entry['connections_opened']} connections{extra}",
            flush=True,
        )
    total = results["memory"]["total"]
    if total.get("samples"):
        print(
            f"  cloud RSS (all {len(results['memory']['processes'])} processes): start / peak / end "
            f"{total['start_mb']:.1f} / {total['peak_mb']:.1f} / {total['end_mb']:.1f} MB, peak/start "
            f"{total['peak_vs_start']:.3f}x, trend {total['trend_pct_per_min']:+.2f} %/min ({total['samples']} samples)",
            flush=True,
        )
    for process in results["memory"]["processes"]:
        if process.get("gone"):
            print(f"    {process['role']:<14} pid {process['pid']:>7}: gone during the soak", flush=True)
        else:
            alone = " (over the target on its own)" if process["trend_pct_per_min"] > MAX_TREND_PCT_PER_MIN else ""
            print(
                f"    {process['role']:<14} pid {process['pid']:>7}: {process['start_mb']:.1f} / {process['peak_mb']:.1f}"
                f" / {process['end_mb']:.1f} MB, trend {process['trend_pct_per_min']:+.2f} %/min{alone}",
                flush=True,
            )
    for name, ok in met.items():
        print(f"  {'PASS' if ok else 'MISS'}  {name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench api_soak", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, default=SOAK_SECONDS, help=f"length of the mixed soak (default {SOAK_SECONDS})"
    )
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SECONDS} s soak")
    parser.add_argument(
        "--idle",
        type=int,
        default=IDLE_CONNECTIONS,
        help=f"idle connections held open (default {IDLE_CONNECTIONS}; the gateway's cap is 2048 "
        "or a quarter of the open-file limit)",
    )
    parser.add_argument(
        "--baseline-seconds",
        type=int,
        default=BASELINE_SECONDS,
        help=f"length of the good-only baseline (default {BASELINE_SECONDS})",
    )
    parser.add_argument("--client", choices=("good", "others"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv or [])
    if args.client:
        return client_main(args.client, args.config, args.out)
    seconds = QUICK_SECONDS if args.quick else args.seconds
    if seconds < 10 or args.baseline_seconds < 5 or not 0 <= args.idle <= MAX_IDLE:
        parser.error(f"--seconds must be at least 10, --baseline-seconds at least 5, --idle within 0..{MAX_IDLE}")
    try:
        results = run(seconds, args.baseline_seconds, args.idle)
    except RuntimeError as err:  # the API or a load process failed: the cloud is already torn down
        print(f"the soak could not run: {err}", flush=True)
        return 1
    met = verdicts(results)
    results["verdicts"] = met
    results["met"] = all(met.values())
    print_report(results, met)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'PASS' if results['met'] else 'MISS'}; results written to {RESULTS.relative_to(REPO)}", flush=True)
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
