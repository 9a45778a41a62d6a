"""Signed and encrypted values are bound to their key; compressed values inflate within a bound.

Someone who can write to the store (or replay what they read from it) could swap two keys'
bytes, or put yesterday's bytes back: each key then served another's value. The signature
and the associated data now cover the entry's full backend key, so such bytes are a miss.
A planted compressed entry could inflate without limit; it is now refused past
``max_value_size`` after inflating at most that much.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from kirocache import Cache
from kirocache.backends import FullBackend
from kirocache.exceptions import ConfigurationError, CorruptValueError
from kirocache.serializers import (
    FLAG_COMPRESSED,
    FORMAT_JSON,
    CompressedSerializer,
    EncryptedSerializer,
    PickleSerializer,
    frame,
)

SECRET = b"s" * 32
AES_KEY = bytes(range(32))


def _serializers() -> dict[str, Any]:
    return {
        "pickle": PickleSerializer(SECRET),
        "encrypted": EncryptedSerializer(key=AES_KEY),
        "compressed-pickle": CompressedSerializer(PickleSerializer(SECRET), threshold=0),
        "encrypted-compressed": EncryptedSerializer(CompressedSerializer(threshold=0), key=AES_KEY),
    }


@pytest.fixture(params=list(_serializers()))
def bound_cache(request: pytest.FixtureRequest, backend: FullBackend) -> Cache:
    return Cache(backend, serializer=_serializers()[request.param], key_prefix="app:")


def _raw(cache: Cache, key: str) -> bytes:
    raw = cache.backend.get(cache.full_key(key))
    assert raw is not None
    return raw


def _plant(cache: Cache, key: str, raw: bytes) -> None:
    cache.backend.set(cache.full_key(key), raw)


def test_swapped_values_are_misses(bound_cache: Cache) -> None:
    bound_cache.set("user:1:role", {"role": "admin"}, ttl=60)
    bound_cache.set("user:2:role", {"role": "guest"}, ttl=60)
    one, two = _raw(bound_cache, "user:1:role"), _raw(bound_cache, "user:2:role")
    _plant(bound_cache, "user:1:role", two)
    _plant(bound_cache, "user:2:role", one)
    assert bound_cache.get("user:1:role") is None
    assert bound_cache.get("user:2:role") is None
    assert bound_cache.get_many(["user:1:role", "user:2:role"]) == {}
    assert bound_cache.batch().get("user:2:role").execute()[0] is None


def test_values_replayed_under_another_key_are_misses_and_at_their_own_key_still_read(
    bound_cache: Cache,
) -> None:
    bound_cache.set("token:a", "for a", ttl=60)
    captured = _raw(bound_cache, "token:a")
    _plant(bound_cache, "token:b", captured)
    assert bound_cache.get("token:b") is None
    assert bound_cache.get("token:a") == "for a"


async def test_binding_holds_on_the_async_path(bound_cache: Cache) -> None:
    await bound_cache.aset("a", [1, 2], ttl=60)
    _plant(bound_cache, "b", _raw(bound_cache, "a"))
    assert await bound_cache.aget("b") is None
    assert await bound_cache.aget("a") == [1, 2]


def test_a_tagged_value_is_bound_to_its_key_too(bound_cache: Cache) -> None:
    bound_cache.set("a", "A", ttl=60, tags=["t"])
    bound_cache.set("b", "B", ttl=60, tags=["t"])
    a, b = _raw(bound_cache, "a"), _raw(bound_cache, "b")
    _plant(bound_cache, "a", b)  # the envelope is sound, the frame inside is b's
    assert bound_cache.get("a") is None
    _plant(bound_cache, "a", a)
    assert bound_cache.get("a") == "A"


@pytest.mark.parametrize("serializer", list(_serializers().values()), ids=list(_serializers()))
def test_used_on_its_own_a_serializer_round_trips_and_binds_only_when_asked(
    serializer: Any,
) -> None:
    assert serializer.loads(serializer.dumps({"x": 1})) == {"x": 1}
    sealed = serializer.dumps({"x": 1}, key="k1")
    assert serializer.loads(sealed, key="k1") == {"x": 1}
    with pytest.raises(CorruptValueError, match="another key"):
        serializer.loads(sealed, key="k2")
    with pytest.raises(CorruptValueError):
        serializer.loads(sealed)  # bound to k1, read as unbound


def test_keys_that_only_differ_where_a_naive_join_would_blur_them() -> None:
    # length-prefixed binding: key "a" with payload "bc..." is not key "ab" with "c..."
    serializer = PickleSerializer(SECRET)
    assert serializer.loads(serializer.dumps("v", key="ab"), key="ab") == "v"
    with pytest.raises(CorruptValueError):
        serializer.loads(serializer.dumps("v", key="ab"), key="a")


# -- decompression bounds -------------------------------------------------------------------------


def _bomb(size: int) -> bytes:
    """A compressed JSON entry that inflates to ``size`` bytes (a string of zeros)."""
    payload = b'"' + b"0" * (size - 2) + b'"'
    return frame(FORMAT_JSON, zlib.compress(payload, 9), FLAG_COMPRESSED)


def test_a_planted_compressed_entry_inflates_no_further_than_max_value_size(
    backend: FullBackend,
) -> None:
    cache = Cache(backend, serializer=CompressedSerializer(), max_value_size=64 * 1024)
    bomb = _bomb(50 * 1024 * 1024)  # 50 MB of zeros in about 50 KB
    assert len(bomb) < 64 * 1024
    _plant(cache, "planted", bomb)
    assert cache.get("planted") is None  # refused as corrupt, after inflating 64 KiB at most
    assert cache.backend.get(cache.full_key("planted")) is None  # and dropped
    cache.set("fine", "x" * 10_000, ttl=60)  # a real compressed value under the limit reads
    assert cache.get("fine") == "x" * 10_000


def test_the_bound_on_its_own_and_under_a_limit() -> None:
    serializer = CompressedSerializer(max_size=1024)
    with pytest.raises(CorruptValueError, match="inflates past 1024 bytes"):
        serializer.loads(_bomb(4096))
    assert serializer.loads(_bomb(1000)) == "0" * 998
    with pytest.raises(CorruptValueError, match="inflates past 500 bytes"):
        serializer.loads(_bomb(1000), limit=500)
    with pytest.raises(CorruptValueError, match="cut short"):
        serializer.loads(frame(FORMAT_JSON, zlib.compress(b'"' + b"0" * 998 + b'"')[:-6], 1))
    with pytest.raises(ConfigurationError, match="max_size"):
        CompressedSerializer(max_size=0)


def test_an_encrypted_bomb_is_bounded_after_authentication() -> None:
    serializer = EncryptedSerializer(CompressedSerializer(threshold=0), key=AES_KEY)
    sealed = serializer.dumps("0" * 100_000, key="k")
    assert serializer.loads(sealed, key="k") == "0" * 100_000
    with pytest.raises(CorruptValueError, match="inflates past"):
        serializer.loads(sealed, key="k", limit=1000)
    assert repr(AES_KEY) not in repr(serializer)
