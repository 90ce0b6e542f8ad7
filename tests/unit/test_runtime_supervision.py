"""The local runtime's restart policy and how `l2c status` words it (the supervision itself, with
real signals on a real runtime process, is tests/integration/test_reliability_runtime.py)."""

from __future__ import annotations

from l2c.cloud.display import runtime_line
from l2c.local.runtime_supervisor import FIRST_DELAY_S, MAX_DELAY_S, STABLE_S, Backoff, exit_reason


def test_the_delay_doubles_while_the_runtime_keeps_dying_and_stops_at_the_cap():
    backoff = Backoff()
    delays = [backoff.after_exit(served_s=0.5) for _ in range(9)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, MAX_DELAY_S, MAX_DELAY_S, MAX_DELAY_S]
    assert delays[0] == FIRST_DELAY_S


def test_a_runtime_that_served_a_while_starts_the_delays_over():
    backoff = Backoff()
    for _ in range(5):
        backoff.after_exit(served_s=0.0)
    assert backoff.after_exit(served_s=STABLE_S - 0.1) == 3.2  # still the same crash loop
    assert backoff.after_exit(served_s=STABLE_S) == FIRST_DELAY_S
    assert backoff.after_exit(served_s=0.0) == 2 * FIRST_DELAY_S


def test_an_exit_is_named_by_its_signal_or_its_code():
    assert exit_reason(-11) == "signal 11 (SIGSEGV)"
    assert exit_reason(-9) == "signal 9 (SIGKILL)"
    assert exit_reason(3) == "exit code 3"
    assert exit_reason(-200) == "signal 200"  # no such signal: still said plainly


HEALTHY = {"state": "running", "crashes": 0, "restarts": 0, "last_exit": None, "retry_in_s": None}
CRASHED = {
    **HEALTHY,
    "crashes": 1,
    "restarts": 1,
    "last_exit": {"code": -11, "reason": "signal 11 (SIGSEGV)", "at": "2030-01-01T12:00:01Z"},
}


def test_a_healthy_runtime_adds_nothing_to_the_status():
    assert runtime_line(HEALTHY) is None
    assert runtime_line({**HEALTHY, "state": "starting"}) is None
    assert runtime_line(None) is None  # a cloud that does not report it (or AWS)


def test_a_restarted_runtime_says_how_often_and_what_killed_it_last():
    line = runtime_line({**CRASHED, "crashes": 2, "restarts": 2})
    assert line.startswith("local runtime restarted 2 times; last exit: signal 11 (SIGSEGV) at ")
    assert line[-8:].count(":") == 2  # a wall-clock time, HH:MM:SS
    assert runtime_line(CRASHED).startswith("local runtime restarted 1 time; ")


def test_a_runtime_between_lives_says_it_is_restarting():
    line = runtime_line({**CRASHED, "state": "restarting", "crashes": 2, "retry_in_s": 0.4})
    assert line.startswith("local runtime restarting (next try within 0.4 s), after 2 exits; last exit: signal 11")
    assert runtime_line({**HEALTHY, "state": "stopped"}).startswith("local runtime stopped")
