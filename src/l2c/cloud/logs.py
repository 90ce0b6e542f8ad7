"""`l2c logs NAME`: a stack's CloudWatch logs, where AWS writes them, interleaved by time.

Two log groups tell a request's story:

- ``/aws/lambda/l2c-NAME``: the function's START / END / REPORT lines and its own lines;
- ``/aws/sagemaker/Endpoints/l2c-NAME``: the endpoint's container.

Both are read with CloudWatch Logs FilterLogEvents (every page of it), on AWS and on the local
cloud alike. A group that does not exist yet (an endpoint that has not logged anything, a
stack not deployed) is one line, not an error. ``--follow`` polls for new events until Ctrl-C.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from l2c.cloud import functions, sagemaker
from l2c.cloud.session import CloudError, CloudSession

DEFAULT_SINCE = "10m"
# FilterLogEvents is limited to a few calls per second per account and region: poll gently.
FOLLOW_POLL_S = 2.0
LOCAL_FOLLOW_POLL_S = 0.5
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SINCE = re.compile(r"(\d+)([smhdw])")


@dataclass(frozen=True)
class LogGroup:
    name: str
    label: str  # "lambda" or "endpoint": what the reader sees in front of each line


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # ms since the epoch
    group: LogGroup
    stream: str
    message: str
    event_id: str


def parse_since(text: str) -> float:
    """``10m``, ``90s``, ``2h``, ``1d``, ``1h30m`` -> seconds; anything else is a CloudError."""
    cleaned = (text or "").strip().lower()
    parts = _SINCE.findall(cleaned)
    if not parts or "".join(number + unit for number, unit in parts) != cleaned:
        raise CloudError(f"--since takes a duration such as 30s, 10m, 2h, 1d or 1h30m (got {text!r})")
    return float(sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts))


def stack_log_groups(stack: str) -> list[LogGroup]:
    return [
        LogGroup(functions.log_group_name(functions.function_name(stack)), "lambda"),
        LogGroup(sagemaker.log_group_name(sagemaker.endpoint_name(stack)), "endpoint"),
    ]


def start_millis(since_seconds: float, now: float | None = None) -> int:
    return int(((time.time() if now is None else now) - since_seconds) * 1000)


class MissingGroup(Exception):
    """The log group does not exist (yet)."""


def fetch_events(client, group: LogGroup, start_ms: int) -> list[LogEvent]:
    """Every event of ``group`` from ``start_ms`` on, across all pages of FilterLogEvents."""
    events: list[LogEvent] = []
    request = {"logGroupName": group.name, "startTime": start_ms}
    while True:
        try:
            page = client.filter_log_events(**request)
        except ClientError as err:
            if err.response["Error"]["Code"] == "ResourceNotFoundException":
                raise MissingGroup(group.name) from None
            raise
        events += [_event(group, item) for item in page.get("events", [])]
        token = page.get("nextToken")
        if not token or token == request.get("nextToken"):
            return events
        request["nextToken"] = token


def _event(group: LogGroup, item: dict) -> LogEvent:
    return LogEvent(
        timestamp=int(item["timestamp"]),
        group=group,
        stream=item.get("logStreamName", ""),
        message=item.get("message", "").rstrip("\n"),
        event_id=item.get("eventId", ""),
    )


def interleave(*groups_events: Iterable[LogEvent]) -> list[LogEvent]:
    """One timeline: by timestamp; at the same millisecond, each group keeps its own order."""
    tagged = [
        (event.timestamp, rank, index, event)
        for rank, events in enumerate(groups_events)
        for index, event in enumerate(events)
    ]
    return [event for *_, event in sorted(tagged, key=lambda item: item[:3])]


def format_event(event: LogEvent) -> str:
    when = datetime.fromtimestamp(event.timestamp / 1000, tz=UTC)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return f"{stamp}  {event.group.label:<8}  {event.message}"


def missing_line(group: LogGroup) -> str:
    return f"no log group {group.name} yet: nothing has logged there ({group.label})"


@dataclass
class LogReader:
    """Reads a stack's groups from a start time on, remembering what it has shown already."""

    client: object
    groups: list[LogGroup]
    start_ms: int
    seen: set = field(default_factory=set)  # (group, eventId) already printed
    missing_told: set = field(default_factory=set)  # groups already reported missing

    def read_new(self) -> tuple[list[LogEvent], list[LogGroup]]:
        """Events not shown before, interleaved, and groups newly found missing."""
        per_group, newly_missing = [], []
        for group in self.groups:
            try:
                events = fetch_events(self.client, group, self.start_ms)
            except MissingGroup:
                if group.name not in self.missing_told:
                    self.missing_told.add(group.name)
                    newly_missing.append(group)
                continue
            per_group.append([event for event in events if (group.name, event.event_id) not in self.seen])
        fresh = interleave(*per_group)
        for event in fresh:
            self.seen.add((event.group.name, event.event_id))
        if fresh:
            # The next poll starts at the newest millisecond: events sharing it are filtered by id.
            self.start_ms = max(self.start_ms, fresh[-1].timestamp)
        return fresh, newly_missing


def show_logs(
    stack: str,
    session: CloudSession,
    print_line: Callable[[str], None],
    since: str = DEFAULT_SINCE,
    follow: bool = False,
    polls: int | None = None,
) -> int:
    """Print the stack's log events since ``since`` (and, with ``follow``, new ones as they come).

    Returns how many events were printed. ``polls`` bounds the follow loop (tests); None: until Ctrl-C.
    """
    from l2c.cloud.names import check_stack_name

    check_stack_name(stack)
    reader = LogReader(session.client("logs"), stack_log_groups(stack), start_millis(parse_since(since)))
    shown = _print_new(reader, print_line)
    if not follow:
        if not shown:
            print_line(f"no log events of stack {stack} in the last {since}")
        return shown
    interval = LOCAL_FOLLOW_POLL_S if session.is_local else FOLLOW_POLL_S
    done = 0
    while polls is None or done < polls:
        time.sleep(interval)
        shown += _print_new(reader, print_line)
        done += 1
    return shown


def _print_new(reader: LogReader, print_line: Callable[[str], None]) -> int:
    events, missing = reader.read_new()
    for group in missing:
        print_line(missing_line(group))
    for event in events:
        print_line(format_event(event))
    return len(events)
