"""The Cache's behaviour suites re-run through Redis Sentinel: batches, decorators, sessions.

As ``test_cluster_features`` does for the cluster: each imported module's tests take the
shared ``cache``/``backend`` fixtures, here a RedisSentinelBackend on the session's master,
replica and three Sentinels. Tests that start their own single redis-server are dropped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from kirocache.backends.sentinel import RedisSentinelBackend
from test_batch import *  # noqa: F403
from test_cached_many import *  # noqa: F403
from test_decorators import *  # noqa: F403
from test_invalidation import *  # noqa: F403
from test_race import *  # noqa: F403
from test_sessions import *  # noqa: F403

if TYPE_CHECKING:
    from cluster_server import LocalSentinel

pytest_plugins = ["cluster_server"]
pytestmark = [pytest.mark.slow, pytest.mark.real_redis]

_OWN_SERVER = {"redis_url", "redis_server", "fault_redis", "make_redis_server", "blackhole"}
for _name, _test in list(globals().items()):
    if _name.startswith("test_") and inspect.isfunction(_test):
        del_it = _OWN_SERVER & set(inspect.signature(_test).parameters)
        if del_it:
            del globals()[_name]


def _backend_params(test: Callable[..., object]) -> list[pytest.Mark]:
    marks: list[pytest.Mark] = getattr(test, "pytestmark", [])
    return [m for m in marks if m.name == "parametrize" and m.args[0] == "backend"]


def _once(test: Callable[..., object]) -> Callable[..., object]:
    """``test`` without its own list of backends, which the fixture below would ignore.

    A test parametrized over memory, fakeredis and Redis would run here three times, each on
    the Sentinel backend: one run says all three say.
    """
    if inspect.iscoroutinefunction(test):

        @functools.wraps(test)
        async def run(*args: object, **kwargs: object) -> object:
            return await test(*args, **kwargs)  # type: ignore[misc]

    else:

        @functools.wraps(test)
        def run(*args: object, **kwargs: object) -> object:
            return test(*args, **kwargs)

    run.pytestmark = [m for m in run.pytestmark if m not in _backend_params(test)]  # type: ignore[attr-defined]
    return run


for _name, _test in list(globals().items()):
    if _name.startswith("test_") and inspect.isfunction(_test) and _backend_params(_test):
        globals()[_name] = _once(_test)


@pytest.fixture(params=["sentinel"])
def backend(
    redis_sentinel: LocalSentinel, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisSentinelBackend]:
    """A RedisSentinelBackend on the emptied master."""
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB"):
        monkeypatch.delenv(name, raising=False)
    with redis.Redis(port=redis_sentinel.master_port()) as master:
        master.flushdb()  # the fixture's clean slate; the library itself never flushes
    made = RedisSentinelBackend(redis_sentinel.url, timeout=2.0)
    try:
        yield made
    finally:
        made.close()
