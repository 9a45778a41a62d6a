"""MessagePack beside JSON: encode and decode (framed, checksummed) a small and a 50 KB value.

``json`` is the default ``OrjsonSerializer``, ``msgpack`` the ``MsgpackSerializer``; both
run through the same frame and checksum, untyped and typed (``dict[str, Any]``) decodes.
The sizes go into ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import pytest
from _workload import VALUES
from pytest_benchmark.fixture import BenchmarkFixture

from kirocache.serializers import MsgpackSerializer, OrjsonSerializer

SERIALIZERS = {"json": OrjsonSerializer(), "msgpack": MsgpackSerializer()}


@pytest.mark.parametrize("size", list(VALUES))
@pytest.mark.parametrize("name", list(SERIALIZERS))
def test_dumps(benchmark: BenchmarkFixture, name: str, size: str) -> None:
    serializer, value = SERIALIZERS[name], VALUES[size]
    benchmark.group = f"serializer/dumps/{size}"
    benchmark.extra_info.update(lib=name, ops=1, bytes=len(serializer.dumps(value)))
    data = benchmark(serializer.dumps, value)
    assert serializer.loads(data) == value


@pytest.mark.parametrize("size", list(VALUES))
@pytest.mark.parametrize("name", list(SERIALIZERS))
@pytest.mark.parametrize("typed", [False, True], ids=["untyped", "typed"])
def test_loads(benchmark: BenchmarkFixture, name: str, size: str, typed: bool) -> None:
    serializer, value = SERIALIZERS[name], VALUES[size]
    data = serializer.dumps(value)
    annotation: Any = dict[str, Any] if typed else None
    benchmark.group = f"serializer/loads/{'typed' if typed else 'untyped'}/{size}"
    benchmark.extra_info.update(lib=name, ops=1, bytes=len(data))
    assert benchmark(serializer.loads, data, annotation) == value
