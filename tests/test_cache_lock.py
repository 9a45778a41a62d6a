"""``cache.lock(name)``: a named lock across threads, tasks and processes, with a renewed lease."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kirocache import Cache, LockNotAcquiredError
from kirocache.exceptions import BackendError, ConfigurationError, InvalidKeyError
from kirocache.testing import FaultyBackend


def test_one_holder_at_a_time_across_threads(cache: Cache) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        with cache.lock("report", timeout=5, blocking_timeout=30):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.005)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1  # the invariant: never two holders at once


async def test_one_holder_at_a_time_across_tasks(cache: Cache) -> None:
    inside = most = 0

    async def work() -> None:
        nonlocal inside, most
        async with cache.lock("report", timeout=5, blocking_timeout=30):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.005)
            inside -= 1

    await asyncio.gather(*(work() for _ in range(10)))
    assert most == 1


def test_a_second_holder_gives_up_after_blocking_timeout(cache: Cache) -> None:
    with cache.lock("job", timeout=5) as held:
        assert held.held
        contender = cache.lock("job", blocking_timeout=0)
        with pytest.raises(LockNotAcquiredError, match=r"'job'.*blocking_timeout"), contender:
            pytest.fail("the block must not run")
        assert contender.acquire() is False
    assert held.held is False  # released on exit
    with cache.lock("job", blocking_timeout=0):  # free again
        pass


@pytest.mark.slow
def test_the_lease_is_renewed_while_a_long_holder_works(cache: Cache) -> None:
    # The lease is 0.3 s; the holder works for 1 s: without renewal the contender gets in.
    with cache.lock("long", timeout=0.3):
        time.sleep(1.0)
        with pytest.raises(LockNotAcquiredError):
            cache.lock("long", blocking_timeout=0).__enter__()
    with cache.lock("long", blocking_timeout=0):
        pass


@pytest.mark.slow
def test_without_renewal_the_lease_ends_on_time(cache: Cache) -> None:
    holder = cache.lock("short", timeout=0.2, renew=False)
    holder.__enter__()
    time.sleep(0.5)
    with cache.lock("short", blocking_timeout=0):  # the dead holder's lease ran out
        assert holder.release() is False  # it never frees the new holder's lock
    holder.__exit__(None, None, None)


def test_a_lock_does_not_fail_open(cache: Cache) -> None:
    faulty = FaultyBackend(cache.backend)
    locked = Cache(faulty)
    faulty.failing = True
    with pytest.raises(BackendError), locked.lock("x"):
        pytest.fail("the block must not run unlocked")


def test_names_and_durations_are_checked(cache: Cache) -> None:
    with pytest.raises(InvalidKeyError):
        cache.lock("")
    with pytest.raises(ConfigurationError, match="timeout"):
        cache.lock("x", timeout=0)
    with pytest.raises(ConfigurationError, match="blocking_timeout"):
        cache.lock("x", blocking_timeout=-1)


def test_the_lock_lives_in_the_reserved_key_space(cache: Cache) -> None:
    with cache.lock("reserved"):
        assert cache.get_many(["reserved"]) == {}  # not a user key
        assert not cache.exists("reserved")
