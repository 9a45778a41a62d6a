"""The circuit breaker's state machine, driven by a controllable clock."""

from __future__ import annotations

import pytest

from kirocache import CircuitBreaker
from kirocache.exceptions import ConfigurationError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_opens_after_threshold_consecutive_failures(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=1.0, clock=clock)
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.times_opened == 1


def test_success_resets_the_failure_streak(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"


def test_half_open_lets_exactly_one_probe_through(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1.0, clock=clock)
    breaker.failure()
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.6
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else keeps failing fast
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_failed_probe_reopens_for_twice_as_long_up_to_the_cap(clock: Clock) -> None:
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=1.0, max_recovery_time=3.0, clock=clock
    )
    breaker.failure()
    waits = []
    for _ in range(4):
        start = clock.now
        while not breaker.allow():
            clock.now += 0.25
        waits.append(clock.now - start)
        breaker.failure()
    assert waits == [1.0, 2.0, 3.0, 3.0]
    breaker.success()
    breaker.failure()
    start = clock.now
    while not breaker.allow():
        clock.now += 0.25
    assert clock.now - start == 1.0  # success resets the backoff


def test_a_probe_that_never_reports_back_is_given_up(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    assert breaker.allow()
    assert not breaker.allow()
    clock.now += 1.0  # the probe's caller was cancelled and never said how it went
    assert breaker.allow()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"failure_threshold": True},
        {"recovery_time": 0},
        {"recovery_time": -1},
        {"recovery_time": 5, "max_recovery_time": 1},
        {"probe_interval": 0},
        {"probe_interval": float("inf")},
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_a_probes_answer_makes_an_open_breaker_half_open_at_once(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=30.0, clock=clock)
    assert breaker.failure()  # it opened
    assert breaker.is_open
    breaker.backend_answered()
    assert breaker.state == "half_open"
    assert breaker.allow()  # one caller goes through
    assert not breaker.allow()  # not a herd
    breaker.success()
    assert breaker.state == "closed"


def test_a_probes_answer_leaves_a_closed_breaker_alone(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    assert not breaker.failure()
    breaker.backend_answered()
    assert breaker.state == "closed"
    assert breaker.failure()  # the streak was not reset by the probe
