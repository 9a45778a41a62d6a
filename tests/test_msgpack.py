"""MsgpackSerializer: MessagePack through msgspec, with the header, typed decode and limits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pytest

from kirocache import Cache, cached
from kirocache.exceptions import CorruptValueError, SerializationError, ValueTooLargeError
from kirocache.serializers import (
    FORMAT_MSGPACK,
    CompressedSerializer,
    EncryptedSerializer,
    MsgpackSerializer,
    OrjsonSerializer,
    frame,
    resolve_serializer,
    unframe,
)


@dataclasses.dataclass(frozen=True)
class Lesson:
    id: int
    title: str
    tags: tuple[str, ...]
    price: Decimal
    starts: dt.datetime


LESSON = Lesson(7, "Generators", ("py", "iter"), Decimal("9.90"), dt.datetime(2026, 1, 2, 3, 4))

SER = MsgpackSerializer()
UTC_NOON = dt.datetime(2026, 1, 2, 12, tzinfo=dt.timezone.utc)


def test_frames_of_format_5_with_the_shared_header() -> None:
    data = SER.dumps({"a": 1})
    format_id, flags, payload = unframe(data)
    assert (format_id, flags) == (FORMAT_MSGPACK, 0)
    assert payload == b"\x81\xa1a\x01"  # {"a": 1} in MessagePack


@pytest.mark.parametrize(
    ("value", "back"),
    [
        (b"\x00\xff", b"\x00\xff"),  # bytes stay bytes (JSON: base64 text)
        ({1: "one"}, {1: "one"}),  # int keys stay ints (JSON: "1")
        (math.inf, math.inf),  # JSON writes null
        ((1, 2), [1, 2]),  # as JSON: an array
        (UTC_NOON, UTC_NOON),  # an aware datetime: the timestamp extension
        (dt.datetime(2026, 1, 2), "2026-01-02T00:00:00"),  # a naive one: text
        (Decimal("1.5"), "1.5"),
        (None, None),
    ],
)
def test_untyped_reads(value: object, back: object) -> None:
    assert SER.loads(SER.dumps(value)) == back


def test_typed_reads_come_back_exactly() -> None:
    assert SER.loads(SER.dumps(LESSON), Lesson) == LESSON
    assert SER.loads(SER.dumps({1, 2}), set[int]) == {1, 2}
    assert SER.loads(SER.dumps((1, "a")), tuple[int, str]) == (1, "a")
    assert math.isnan(SER.loads(SER.dumps(math.nan), float))


def test_what_it_cannot_do_is_said_clearly() -> None:
    with pytest.raises(SerializationError, match=r"object.*MessagePack"):
        SER.dumps(object())
    with pytest.raises(SerializationError, match="MessagePack"):
        SER.dumps(2**70)
    with pytest.raises(CorruptValueError, match="as <class 'int'>"):
        SER.loads(SER.dumps("text"), int)
    with pytest.raises(CorruptValueError, match="format 1"):
        SER.loads(OrjsonSerializer().dumps(1))
    with pytest.raises(CorruptValueError, match="does not decode"):
        SER.loads(frame(FORMAT_MSGPACK, b"\xc1"))  # 0xc1 is never used in MessagePack


def test_by_name_and_wrapped() -> None:
    assert isinstance(resolve_serializer("msgpack"), MsgpackSerializer)
    sealed = EncryptedSerializer(CompressedSerializer(SER, threshold=0), key=bytes(32))
    assert sealed.loads(sealed.dumps({"x": b"\x00" * 5000}, key="k"), key="k") == {
        "x": b"\x00" * 5000
    }


def test_a_cache_on_it(cache: Cache) -> None:
    packed = Cache(cache.backend, serializer="msgpack", max_value_size=1000)
    packed.set("lesson", LESSON)
    assert packed.get("lesson", type=Lesson) == LESSON
    assert packed.get("lesson")["title"] == "Generators"  # untyped: a dict
    with pytest.raises(ValueTooLargeError):
        packed.set("big", b"x" * 2000)
    packed.set("counts", {1: 10, 2: 20}, tags=["t"])
    assert packed.get("counts") == {1: 10, 2: 20}

    calls: list[int] = []

    @cached(prefix="lesson:", cache=packed)
    def lesson(n: int) -> Lesson:
        calls.append(n)
        return dataclasses.replace(LESSON, id=n)

    assert lesson(3) == lesson(3) == dataclasses.replace(LESSON, id=3)
    assert type(lesson(3)) is Lesson
    assert calls == [3]


def test_it_is_smaller_than_json_for_numbers_and_bytes() -> None:
    value: dict[str, Any] = {"scores": list(range(1000)), "blob": bytes(range(256)) * 4}
    assert len(SER.dumps(value)) < len(OrjsonSerializer().dumps(value)) * 0.8


def test_cached_refuses_what_a_hit_would_give_back_changed(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    packed = Cache(cache.backend, serializer="msgpack")

    @cached(prefix="raw:", cache=packed)
    def unannotated(n: int):  # type: ignore[no-untyped-def]
        return LESSON

    @cached(prefix="wrong:", cache=packed)
    def wrong(n: int) -> int:
        return "text"  # type: ignore[return-value]

    @cached(prefix="fine:", cache=packed)
    def fine(n: int) -> dict[int, bytes]:
        return {n: b"\x00"}

    assert unannotated(1) == LESSON  # returned, not stored: a hit would be a dict
    assert wrong(1) == "text"
    assert fine(1) == {1: b"\x00"}
    assert not packed.exists("raw:1")
    assert not packed.exists("wrong:1")
    assert packed.exists("fine:1")
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "would not read back" in warned
