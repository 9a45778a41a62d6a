"""The public step drivers: work written once, run sync and async, faults thrown back in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kirocache.backends import PAUSE, Call, Op, Steps, arun_steps, run_steps
from kirocache.backends.memory import MemoryBackend
from kirocache.exceptions import BackendError
from kirocache.sessions import SessionStoreError


class Target:
    """Answers ``method`` and ``amethod`` alike and records what was called."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def echo(self, value: object) -> object:
        self.calls.append("echo")
        if self.fail is not None:
            raise self.fail
        return value

    async def aecho(self, value: object) -> object:
        self.calls.append("aecho")
        return self.echo(value)

    def scan(self, pattern: str) -> Iterator[str]:
        yield from (f"{pattern}1", f"{pattern}2")

    async def ascan(self, pattern: str) -> AsyncIterator[str]:
        for key in self.scan(pattern):
            yield key


def echo_twice(target: Target, log: list[str]) -> Steps[int]:
    try:
        first = yield Call(target, "echo", (1,))
        second = yield Call(target, "echo", (first + 1,))
        return int(second)
    except BackendError:
        log.append("handled")
        return -1
    finally:
        log.append("finally")


def test_steps_are_tested_by_sending_them_results_without_io() -> None:
    log: list[str] = []
    steps = echo_twice(Target(), log)
    call = next(steps)
    assert (call.method, call.args) == ("echo", (1,))
    assert steps.send(41).args == (42,)
    with pytest.raises(StopIteration) as done:
        steps.send(42)
    assert done.value.value == 42
    assert log == ["finally"]


def test_both_drivers_run_the_same_steps_with_their_own_methods() -> None:
    sync_target, async_target = Target(), Target()
    assert run_steps(echo_twice(sync_target, [])) == 2
    assert asyncio.run(arun_steps(echo_twice(async_target, []))) == 2
    assert sync_target.calls == ["echo", "echo"]
    assert async_target.calls == ["aecho", "echo", "aecho", "echo"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_backend_fault_is_translated_and_thrown_back_in(mode: str) -> None:
    log: list[str] = []
    seen: list[BackendError] = []

    def fault(call: Call, exc: BackendError) -> BackendError:
        seen.append(exc)
        return BackendError(f"{call.method} failed")

    steps = echo_twice(Target(BackendError("down")), log)
    result = run_steps(steps, fault) if mode == "sync" else asyncio.run(arun_steps(steps, fault))
    assert result == -1
    assert log == ["handled", "finally"]
    assert [str(exc) for exc in seen] == ["down"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_any_other_error_is_thrown_back_in_so_finally_runs_before_it_propagates(
    mode: str,
) -> None:
    log: list[str] = []
    steps = echo_twice(Target(KeyError("bug")), log)

    def drive() -> int:
        return run_steps(steps) if mode == "sync" else asyncio.run(arun_steps(steps))

    with pytest.raises(KeyError, match="bug"):
        drive()
    # the generator's finally ran inside the driver, not later at garbage collection
    assert log == ["finally"]


def collect(target: Target) -> Steps[list[str]]:
    keys = yield Call(target, "scan", ("k",))
    return list(keys)


def test_scan_answers_a_list_in_both_drivers() -> None:
    assert run_steps(collect(Target())) == ["k1", "k2"]
    assert asyncio.run(arun_steps(collect(Target()))) == ["k1", "k2"]


def pause_then_write(backend: MemoryBackend) -> Steps[list[Any]]:
    yield Call(PAUSE, "sleep", (0.001,))
    answers: list[Any] = yield Call(backend, "execute", ([Op("set", "k", b"v")],))
    return answers


def test_the_pause_step_sleeps_in_threads_and_awaits_in_tasks() -> None:
    backend = MemoryBackend()
    assert run_steps(pause_then_write(backend)) == [True]
    assert asyncio.run(arun_steps(pause_then_write(backend))) == [True]
    assert backend.get("k") == b"v"


def test_the_driver_is_the_one_sessions_fail_closed_with() -> None:
    # sessions translate a backend fault into their own error through the same driver
    def fault(_: Call, exc: BackendError) -> BackendError:
        return SessionStoreError(str(exc))

    with pytest.raises(SessionStoreError, match="down"):
        run_steps(collect_failing(), fault)


def collect_failing() -> Steps[None]:
    yield Call(Target(BackendError("down")), "echo", (1,))


class Held:
    """A lock-like target that records its release."""

    def __init__(self) -> None:
        self.released = False

    async def ahang(self) -> None:
        await asyncio.Event().wait()

    async def arelease(self) -> None:
        self.released = True


def held_while_waiting(lock: Held) -> Steps[None]:
    try:
        yield Call(lock, "hang")
    finally:
        yield Call(lock, "release")


async def test_a_cancelled_task_runs_the_steps_release_before_it_is_cancelled() -> None:
    lock = Held()
    task = asyncio.create_task(arun_steps(held_while_waiting(lock)))
    await asyncio.sleep(0)  # the task now waits inside the step
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the release step ran inside the driver, not at garbage collection
    assert lock.released
