"""`l2c logs`: reading --since, one timeline out of two log groups, pages and missing groups."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from l2c.cloud.logs import (
    LogEvent,
    LogGroup,
    LogReader,
    fetch_events,
    format_event,
    interleave,
    parse_since,
    stack_log_groups,
    start_millis,
)
from l2c.cloud.session import CloudError

LAMBDA = LogGroup("/aws/lambda/l2c-iris", "lambda")
ENDPOINT = LogGroup("/aws/sagemaker/Endpoints/l2c-iris", "endpoint")


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400), (" 10M ", 600)],
)
def test_since_reads_durations(text, seconds):
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "-5m", "10 m", "1.5h", "10mm", "yesterday", "10m30"])
def test_since_refuses_anything_else_with_an_example(text):
    with pytest.raises(CloudError, match="30s, 10m"):
        parse_since(text)


def test_since_counts_back_from_now():
    assert start_millis(600, now=1_000_000.0) == 999_400_000


def test_a_stack_has_its_function_group_and_its_endpoint_group():
    assert stack_log_groups("iris") == [LAMBDA, ENDPOINT]


def event(ms: int, group: LogGroup, message: str, event_id: str | None = None) -> LogEvent:
    return LogEvent(ms, group, "stream", message, event_id or f"{group.label}-{ms}-{message}")


def test_two_groups_make_one_timeline():
    lambda_events = [event(1, LAMBDA, "START"), event(5, LAMBDA, "END"), event(6, LAMBDA, "REPORT")]
    endpoint_events = [event(3, ENDPOINT, "invocation"), event(7, ENDPOINT, "later")]
    merged = interleave(lambda_events, endpoint_events)
    assert [e.message for e in merged] == ["START", "invocation", "END", "REPORT", "later"]


def test_events_of_one_millisecond_keep_their_order_and_group_order():
    same = [event(5, LAMBDA, "START"), event(5, LAMBDA, "line"), event(5, LAMBDA, "END")]
    merged = interleave(same, [event(5, ENDPOINT, "container")])
    assert [e.message for e in merged] == ["START", "line", "END", "container"]


def test_a_line_shows_utc_time_and_where_it_comes_from():
    line = format_event(event(1_764_643_407_123, LAMBDA, "REPORT RequestId: 1"))
    assert line == "2025-12-02 02:43:27.123  lambda    REPORT RequestId: 1"


class FakeLogs:
    """FilterLogEvents over pages, or ResourceNotFoundException for a group that is not there."""

    def __init__(self, pages: dict[str, list[list[dict]]]):
        self.pages, self.calls = pages, []

    def filter_log_events(self, logGroupName, startTime, nextToken=None):
        self.calls.append((logGroupName, startTime, nextToken))
        if logGroupName not in self.pages:
            raise ClientError(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "The specified log group does not exist."}},
                "FilterLogEvents",
            )
        pages = self.pages[logGroupName]
        index = int(nextToken or 0)
        answer = {"events": [e for e in pages[index] if e["timestamp"] >= startTime]}
        if index + 1 < len(pages):
            answer["nextToken"] = str(index + 1)
        return answer


def raw(ms: int, message: str) -> dict:
    return {"timestamp": ms, "message": message + "\n", "logStreamName": "s", "eventId": f"{ms}-{message}"}


def test_every_page_is_read():
    client = FakeLogs({LAMBDA.name: [[raw(1, "a")], [raw(2, "b")], [raw(3, "c")]]})
    assert [e.message for e in fetch_events(client, LAMBDA, 0)] == ["a", "b", "c"]
    assert [call[2] for call in client.calls] == [None, "1", "2"]


def test_a_missing_group_is_told_once_and_the_other_is_still_read():
    client = FakeLogs({LAMBDA.name: [[raw(10, "START"), raw(12, "REPORT")]]})
    reader = LogReader(client, [LAMBDA, ENDPOINT], start_ms=0)
    events, missing = reader.read_new()
    assert [e.message for e in events] == ["START", "REPORT"] and missing == [ENDPOINT]
    again, missing_again = reader.read_new()
    assert again == [] and missing_again == []


def test_following_shows_only_new_events_even_at_the_same_millisecond():
    pages = {LAMBDA.name: [[raw(10, "START"), raw(12, "END")]]}
    client = FakeLogs(pages)
    reader = LogReader(client, [LAMBDA], start_ms=0)
    reader.read_new()
    pages[LAMBDA.name][0].append(raw(12, "REPORT"))
    events, _ = reader.read_new()
    assert [e.message for e in events] == ["REPORT"]
    assert client.calls[-1][1] == 12  # the next poll starts at the newest millisecond, not from the beginning


def test_other_errors_are_not_taken_for_a_missing_group():
    class Denied:
        def filter_log_events(self, **_):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "FilterLogEvents")

    with pytest.raises(ClientError):
        LogReader(Denied(), [LAMBDA], start_ms=0).read_new()
