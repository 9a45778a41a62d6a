"""Tests of kirocache.serializers: framing, round trips, typed decoding, signing, wrappers."""

from __future__ import annotations

import dataclasses
import enum
import hmac
import os
import pickle
import sys
import uuid
import zlib
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, Optional, TypedDict

import msgspec
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from kirocache._values.faithful import Check, speaks_json
from kirocache.exceptions import ConfigurationError, CorruptValueError, SerializationError
from kirocache.serializers import (
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FORMAT_JSON,
    FORMAT_PICKLE,
    FORMAT_RAW_BYTES,
    FORMAT_RAW_STR,
    HEADER_SIZE,
    CompressedSerializer,
    EncryptedSerializer,
    OrjsonSerializer,
    PickleSerializer,
    RawSerializer,
    Serializer,
    frame,
    resolve_serializer,
    unframe,
)

SECRET = b"s" * 32
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Address:
    city: str
    zip_code: str


@dataclasses.dataclass
class Profile:
    user_id: int
    name: str
    joined: datetime
    balance: Decimal
    tags: set[str]
    color: Color
    address: Address
    nickname: Optional[str] = None  # noqa: UP045 - Optional is one of the annotations tested


class Progress(TypedDict):
    course: str
    percent: float


class Point(NamedTuple):
    x: int
    y: int


class Event(msgspec.Struct):
    name: str
    at: date


class Widget:
    """A plain class with no JSON form."""


def _profile() -> Profile:
    return Profile(
        user_id=123,
        name="Ada",
        joined=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc),
        balance=Decimal("10.50"),
        tags={"admin", "beta"},
        color=Color.BLUE,
        address=Address("Paris", "75001"),
    )


# --- the header -------------------------------------------------------------------------------


def test_header_layout() -> None:
    entry = frame(7, b"payload", FLAG_COMPRESSED)
    assert HEADER_SIZE == 8
    assert entry[:4] == bytes((0xC5, 1, 7, FLAG_COMPRESSED))
    checksum = xxhash.xxh3_64_intdigest(b"payload", (7 << 8) | FLAG_COMPRESSED) & 0xFFFFFFFF
    assert entry[4:8] == checksum.to_bytes(4, "big")
    assert entry[8:] == b"payload"
    assert unframe(entry) == (7, FLAG_COMPRESSED, b"payload")


def test_third_party_format_ids_frame() -> None:
    assert unframe(frame(200, b"x")) == (200, 0, b"x")
    assert unframe(frame(255, b"", 0)) == (255, 0, b"")


@pytest.mark.parametrize(("format_id", "flags"), [(256, 0), (-1, 0), (1, 256)])
def test_frame_rejects_out_of_range_header_fields(format_id: int, flags: int) -> None:
    with pytest.raises(SerializationError, match="from 0 to 255"):
        frame(format_id, b"x", flags)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter|under"),
        (b"\xc5\x01\x01", "under the 8-byte header"),
        (b"12345678901", "first byte is 0x31"),  # a counter written by INCR
        (b'{"user": "ada"}', "first byte is 0x7b"),  # foreign JSON
        (b"\xc5\x02\x01\x00\x00\x00\x00\x00{}", "unknown kirocache header version 2"),
        (b"\xc5\x01\x01\x00\x00\x00\x00\x00{}", "checksum"),
    ],
)
def test_unframe_rejects_foreign_and_corrupt_bytes(data: bytes, message: str) -> None:
    with pytest.raises(CorruptValueError, match=message):
        unframe(data)


# --- OrjsonSerializer -------------------------------------------------------------------------

JSON_VALUES: list[Any] = [
    None,
    True,
    0,
    -(2**63),
    2**64 - 1,
    1.5,
    "",
    "héllo ✓",
    [],
    {},
    [1, "two", None, [3.0]],
    {"a": {"b": [1, 2, {"c": None}]}},
]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_orjson_round_trips_json_values(value: Any) -> None:
    serializer = OrjsonSerializer()
    entry = serializer.dumps(value)
    assert unframe(entry)[:2] == (FORMAT_JSON, 0)
    assert serializer.loads(entry) == value


TYPED_CASES: list[tuple[Any, Any]] = [
    (Profile, _profile()),
    (Progress, Progress(course="python", percent=42.5)),
    (Point, Point(1, 2)),
    (datetime, datetime(2024, 1, 2, 3, 4, 5, 678901)),
    (datetime, datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))),
    (date, date(2024, 2, 29)),
    (time, time(23, 59, 58, 1)),
    (timedelta, timedelta(days=2, seconds=5, microseconds=7)),
    (uuid.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
    (Decimal, Decimal("0.1")),
    (Color, Color.RED),
    (Level, Level.HIGH),
    (tuple[int, str], (1, "a")),
    (set[int], {3, 1, 2}),
    (frozenset[str], frozenset({"x", "y"})),
    (bytes, b"\x00\xffbinary"),
    (dict[int, str], {1: "one", 2: "two"}),
    (dict[str, list[Point]], {"path": [Point(0, 0), Point(1, 1)]}),
    (list[Profile], [_profile(), dataclasses.replace(_profile(), nickname="ada")]),
    (Event, Event("launch", date(2025, 1, 1))),
    (type(None), None),
    (Optional[int], None),  # noqa: UP045
    (Optional[int], 5),  # noqa: UP045
    (Address | None, Address("Oslo", "0150")),
]


@pytest.mark.parametrize(("annotation", "value"), TYPED_CASES)
def test_orjson_typed_decode_returns_the_same_type_and_value(annotation: Any, value: Any) -> None:
    serializer = OrjsonSerializer()
    result = serializer.loads(serializer.dumps(value), annotation)
    assert result == value
    assert type(result) is type(value)


def test_orjson_typed_decode_keeps_nested_types() -> None:
    serializer = OrjsonSerializer()
    result = serializer.loads(serializer.dumps(_profile()), Profile)
    assert isinstance(result.joined, datetime)
    assert result.joined.tzinfo is not None
    assert isinstance(result.balance, Decimal)
    assert isinstance(result.tags, set)
    assert result.color is Color.BLUE
    assert isinstance(result.address, Address)


def test_orjson_untyped_decode_gives_plain_json() -> None:
    serializer = OrjsonSerializer()
    value = {"d": Decimal("1.10"), "t": (1, 2), "p": Point(3, 4), "s": frozenset({5})}
    assert serializer.loads(serializer.dumps(value)) == {
        "d": "1.10",
        "t": [1, 2],
        "p": [3, 4],
        "s": [5],
    }


def test_orjson_unserializable_value_names_its_type() -> None:
    with pytest.raises(SerializationError, match=r"test_serializers\.Widget") as info:
        OrjsonSerializer().dumps(Widget())
    assert "PickleSerializer" in str(info.value)
    assert not isinstance(info.value, CorruptValueError)


def test_orjson_names_the_nested_unserializable_type() -> None:
    with pytest.raises(SerializationError, match=r"test_serializers\.Widget"):
        OrjsonSerializer().dumps({"a": [1, {"b": Widget()}]})
    with pytest.raises(SerializationError, match=r"test_serializers\.Widget"):
        OrjsonSerializer().dumps({1: Widget()})


def test_orjson_rejects_integers_beyond_64_bits() -> None:
    with pytest.raises(SerializationError, match=r"builtins\.int.*64-bit"):
        OrjsonSerializer().dumps(2**64)


def test_orjson_value_that_does_not_match_the_type_is_corrupt() -> None:
    serializer = OrjsonSerializer()
    entry = serializer.dumps({"x": 1, "y": "not an int"})
    with pytest.raises(CorruptValueError, match="Point"):
        serializer.loads(entry, Point)
    with pytest.raises(CorruptValueError):
        serializer.loads(serializer.dumps("abc"), uuid.UUID)


def test_orjson_invalid_json_in_a_valid_frame_is_corrupt() -> None:
    entry = frame(FORMAT_JSON, b'{"unterminated": ')
    with pytest.raises(CorruptValueError, match="does not decode"):
        OrjsonSerializer().loads(entry)
    with pytest.raises(CorruptValueError, match="does not decode"):
        OrjsonSerializer().loads(entry, dict[str, int])


def test_orjson_unsupported_annotation_is_a_programming_error() -> None:
    serializer = OrjsonSerializer()
    with pytest.raises(SerializationError, match="Widget") as info:
        serializer.loads(serializer.dumps({}), Widget)
    assert not isinstance(info.value, CorruptValueError)


def test_orjson_refuses_other_formats_and_flags() -> None:
    serializer = OrjsonSerializer()
    with pytest.raises(CorruptValueError, match="format 2"):
        serializer.loads(RawSerializer().dumps(b"x"))
    with pytest.raises(CorruptValueError, match="CompressedSerializer"):
        serializer.loads(frame(FORMAT_JSON, zlib.compress(b"[1]"), FLAG_COMPRESSED))
    with pytest.raises(CorruptValueError, match="EncryptedSerializer"):
        serializer.loads(frame(FORMAT_JSON, b"[1]", FLAG_ENCRYPTED))


# --- RawSerializer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "format_id"),
    [
        (b"", FORMAT_RAW_BYTES),
        (b"\x00\xc5bytes", FORMAT_RAW_BYTES),
        ("", FORMAT_RAW_STR),
        ("✓ str", FORMAT_RAW_STR),
    ],
)
def test_raw_round_trips_bytes_and_str(value: bytes | str, format_id: int) -> None:
    serializer = RawSerializer()
    entry = serializer.dumps(value)
    assert unframe(entry)[0] == format_id
    for annotation in (None, type(value), bytes | str, Any):
        result = serializer.loads(entry, annotation)
        assert result == value
        assert type(result) is type(value)


def test_raw_refuses_other_values_naming_the_type() -> None:
    with pytest.raises(SerializationError, match=r"builtins\.int"):
        RawSerializer().dumps(42)
    with pytest.raises(SerializationError, match="UTF-8"):
        RawSerializer().dumps("\ud800")


def test_raw_corrupt_entries() -> None:
    serializer = RawSerializer()
    with pytest.raises(CorruptValueError, match="UTF-8"):
        serializer.loads(frame(FORMAT_RAW_STR, b"\xff\xfe"))
    with pytest.raises(CorruptValueError, match="not an instance"):
        serializer.loads(serializer.dumps("text"), bytes)
    with pytest.raises(CorruptValueError, match="format 1"):
        serializer.loads(OrjsonSerializer().dumps("text"))


# --- PickleSerializer -------------------------------------------------------------------------

SIDE_EFFECTS: list[str] = []


def _record(note: str) -> None:
    SIDE_EFFECTS.append(note)


class Exploit:
    """Unpickling this calls _record: it stands for a payload that runs code."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record, ("executed",))


@pytest.mark.parametrize("secret", [b"", "short", b"x" * 15, [], [SECRET, b"short"]])
def test_pickle_refuses_missing_or_short_secrets(secret: Any) -> None:
    with pytest.raises(ConfigurationError, match="runs code"):
        PickleSerializer(secret)


@pytest.mark.parametrize("protocol", [-1, pickle.HIGHEST_PROTOCOL + 1, True])
def test_pickle_refuses_bad_protocol(protocol: int) -> None:
    with pytest.raises(ConfigurationError, match="protocol"):
        PickleSerializer(SECRET, protocol=protocol)


@pytest.mark.parametrize(
    "value", [_profile(), Widget, (1, "a"), {1, 2}, Decimal("1.1"), Point(1, 2), None, b"x"]
)
def test_pickle_round_trips_python_objects(value: Any) -> None:
    serializer = PickleSerializer("a text secret of 26 bytes!", protocol=4)
    entry = serializer.dumps(value)
    assert unframe(entry)[:2] == (FORMAT_PICKLE, 0)
    result = serializer.loads(entry)
    assert result == value
    assert type(result) is type(value)


def test_pickle_signature_mismatch_is_rejected_before_unpickling() -> None:
    SIDE_EFFECTS.clear()
    pickled = pickle.dumps(Exploit())
    forged = [
        frame(FORMAT_PICKLE, b"\x00" * 32 + pickled),
        frame(FORMAT_PICKLE, hmac.digest(b"w" * 32, pickled, "sha256") + pickled),
        frame(FORMAT_PICKLE, pickled[:10]),
        PickleSerializer(b"another secret, 32 bytes long!!!").dumps(Exploit()),
    ]
    serializer = PickleSerializer(SECRET)
    for entry in forged:
        with pytest.raises(CorruptValueError, match="signature"):
            serializer.loads(entry)
    assert SIDE_EFFECTS == []
    # The same payload signed with the right secret does run: the check above is what stops it.
    serializer.loads(serializer.dumps(Exploit()))
    assert SIDE_EFFECTS == ["executed"]
    SIDE_EFFECTS.clear()


def test_pickle_secret_rotation() -> None:
    old, new = b"o" * 16, b"n" * 16
    rotated = PickleSerializer([new, old])
    assert rotated.loads(PickleSerializer(old).dumps("v")) == "v"
    assert PickleSerializer(new).loads(rotated.dumps("v")) == "v"
    with pytest.raises(CorruptValueError):
        PickleSerializer(old).loads(rotated.dumps("v"))


def test_pickle_unpicklable_value_names_its_type() -> None:
    with pytest.raises(SerializationError, match="function"):
        PickleSerializer(SECRET).dumps(lambda: None)


def test_pickle_signed_entry_that_no_longer_loads_is_corrupt() -> None:
    pickled = b"cno_such_module_kirocache\nGone\n."
    signed = len(b"").to_bytes(4, "big") + pickled  # bound to no key: used on its own
    entry = frame(FORMAT_PICKLE, hmac.digest(SECRET, signed, "sha256") + pickled)
    with pytest.raises(CorruptValueError, match="no longer loads"):
        PickleSerializer(SECRET).loads(entry)


def test_pickle_repr_hides_secrets() -> None:
    text = repr(PickleSerializer([b"topsecret-value-1", b"topsecret-value-2"]))
    assert "topsecret" not in text
    assert "2 hidden" in text


# --- CompressedSerializer ---------------------------------------------------------------------


def test_compression_below_threshold_leaves_the_entry_alone() -> None:
    value = "x" * 100
    entry = CompressedSerializer(threshold=200).dumps(value)
    assert entry == OrjsonSerializer().dumps(value)
    assert unframe(entry)[1] == 0


def test_compression_above_threshold_sets_the_flag_and_shrinks() -> None:
    value = {"items": ["repetitive text"] * 200}
    plain = OrjsonSerializer().dumps(value)
    serializer = CompressedSerializer(threshold=64, level=9)
    entry = serializer.dumps(value)
    assert unframe(entry)[:2] == (FORMAT_JSON, FLAG_COMPRESSED)
    assert len(entry) < len(plain) // 4
    assert serializer.loads(entry) == value


def test_compression_skipped_when_it_does_not_shrink() -> None:
    noise = os.urandom(4096)
    serializer = CompressedSerializer(RawSerializer(), threshold=16)
    entry = serializer.dumps(noise)
    assert unframe(entry) == (FORMAT_RAW_BYTES, 0, noise)
    assert serializer.loads(entry) == noise


def test_compressed_reads_plain_entries_and_passes_the_type_on() -> None:
    serializer = CompressedSerializer(threshold=0)
    assert serializer.loads(OrjsonSerializer().dumps([1, 2]), tuple[int, int]) == (1, 2)
    assert serializer.loads(serializer.dumps(Point(5, 6)), Point) == Point(5, 6)


def test_compressed_wraps_pickle() -> None:
    serializer = CompressedSerializer(PickleSerializer(SECRET), threshold=10)
    value = {"k": list(range(500))}
    entry = serializer.dumps(value)
    assert unframe(entry)[:2] == (FORMAT_PICKLE, FLAG_COMPRESSED)
    assert serializer.loads(entry) == value


def test_compressed_payload_that_does_not_decompress_is_corrupt() -> None:
    with pytest.raises(CorruptValueError, match="decompress"):
        CompressedSerializer().loads(frame(FORMAT_JSON, b"not zlib", FLAG_COMPRESSED))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": -1}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"level": 0}, "level"),
        ({"level": 10}, "level"),
    ],
)
def test_compressed_refuses_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CompressedSerializer(**options)


class NotFraming:
    def dumps(self, value: object) -> bytes:
        return b"plain"

    def loads(self, data: bytes, type: Any = None) -> Any:
        return data


def test_wrappers_blame_an_inner_serializer_that_does_not_frame() -> None:
    with pytest.raises(SerializationError, match="NotFraming"):
        CompressedSerializer(NotFraming()).dumps(1)
    with pytest.raises(SerializationError, match="NotFraming"):
        EncryptedSerializer(NotFraming(), key=KEY).dumps(1)


# --- EncryptedSerializer ----------------------------------------------------------------------


def test_encrypted_round_trip_hides_the_plaintext() -> None:
    serializer = EncryptedSerializer(key=KEY)
    entry = serializer.dumps({"secret": "plaintext-marker"})
    assert b"plaintext-marker" not in entry
    assert unframe(entry)[:2] == (FORMAT_JSON, FLAG_ENCRYPTED)
    assert serializer.loads(entry) == {"secret": "plaintext-marker"}
    assert serializer.dumps(1) != serializer.dumps(1)  # a fresh nonce each time


def test_encrypted_compressed_composition_compresses_first() -> None:
    serializer = EncryptedSerializer(CompressedSerializer(threshold=32), key=KEY)
    value = [_profile()] * 50
    entry = serializer.dumps(value)
    assert unframe(entry)[1] == FLAG_COMPRESSED | FLAG_ENCRYPTED
    assert len(entry) < len(OrjsonSerializer().dumps(value)) // 4
    result = serializer.loads(entry, list[Profile])
    assert result == value
    assert isinstance(result[0], Profile)


def test_encrypted_wrong_key_is_corrupt() -> None:
    entry = EncryptedSerializer(key=KEY).dumps("v")
    with pytest.raises(CorruptValueError, match="another key"):
        EncryptedSerializer(key=OTHER_KEY).loads(entry)


def test_encrypted_key_rotation() -> None:
    rotated = EncryptedSerializer(key=[OTHER_KEY, KEY])
    assert rotated.loads(EncryptedSerializer(key=KEY).dumps("old")) == "old"
    assert EncryptedSerializer(key=OTHER_KEY).loads(rotated.dumps("new")) == "new"


@pytest.mark.parametrize(
    ("format_id", "extra_flags"), [(FORMAT_RAW_BYTES, 0), (200, 0), (FORMAT_JSON, FLAG_COMPRESSED)]
)
def test_encrypted_header_tampering_is_detected(format_id: int, extra_flags: int) -> None:
    serializer = EncryptedSerializer(CompressedSerializer(RawSerializer()), key=KEY)
    _, flags, payload = unframe(serializer.dumps("text"))
    # A re-framed entry has a valid checksum: only the associated data can catch this.
    tampered = frame(format_id, payload, flags | extra_flags)
    with pytest.raises(CorruptValueError, match="authenticate"):
        serializer.loads(tampered)


def test_encrypted_refuses_plaintext_and_short_entries() -> None:
    serializer = EncryptedSerializer(key=KEY)
    with pytest.raises(CorruptValueError, match="not encrypted"):
        serializer.loads(OrjsonSerializer().dumps("planted"))
    with pytest.raises(CorruptValueError, match="too short"):
        serializer.loads(frame(FORMAT_JSON, b"\x00" * 20, FLAG_ENCRYPTED))


@pytest.mark.parametrize("key", [b"k" * 15, b"k" * 33, "k" * 32, [], [KEY, b"short"], 42])
def test_encrypted_refuses_bad_keys(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="key"):
        EncryptedSerializer(key=key)


def test_encrypted_cannot_wrap_itself() -> None:
    with pytest.raises(ConfigurationError, match="several keys"):
        EncryptedSerializer(EncryptedSerializer(key=KEY), key=OTHER_KEY)


def test_encrypted_without_cryptography_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'kirocache\[crypto\]'"):
        EncryptedSerializer(key=KEY)


def test_encrypted_repr_hides_keys() -> None:
    text = repr(EncryptedSerializer(CompressedSerializer(), key=[KEY, OTHER_KEY]))
    assert "2 hidden" in text
    assert "CompressedSerializer" in text
    for key in (KEY, OTHER_KEY):
        assert repr(key) not in text
        assert key.hex() not in text


# --- resolve_serializer and the protocol ------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, OrjsonSerializer),
        ("json", OrjsonSerializer),
        (" ORJSON", OrjsonSerializer),
        ("raw", RawSerializer),
    ],
)
def test_resolve_serializer_names(spec: str | None, expected: type) -> None:
    assert type(resolve_serializer(spec)) is expected


def test_resolve_serializer_passes_instances_through() -> None:
    serializer = CompressedSerializer()
    assert resolve_serializer(serializer) is serializer
    custom = NotFraming()
    assert isinstance(custom, Serializer)
    assert resolve_serializer(custom) is custom


def test_resolve_serializer_refuses_pickle_by_name() -> None:
    with pytest.raises(ConfigurationError, match=r"PickleSerializer\(secret="):
        resolve_serializer("pickle")


def test_resolve_serializer_lists_the_names() -> None:
    with pytest.raises(ConfigurationError, match=r"'yaml'.*json, msgpack, orjson, raw"):
        resolve_serializer("yaml")


@pytest.mark.parametrize(("spec", "message"), [(OrjsonSerializer, "add ()"), (Widget(), "Widget")])
def test_resolve_serializer_refuses_non_serializers(spec: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_serializer(spec)


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)

ROUND_TRIP_SERIALIZERS: list[Serializer] = [
    OrjsonSerializer(),
    CompressedSerializer(threshold=0),
    EncryptedSerializer(key=KEY),
    EncryptedSerializer(CompressedSerializer(threshold=8), key=KEY),
]

ALL_SERIALIZERS: list[Serializer] = [
    *ROUND_TRIP_SERIALIZERS,
    RawSerializer(),
    PickleSerializer(SECRET),
    CompressedSerializer(PickleSerializer(SECRET), threshold=0),
]


@given(value=json_values)
def test_json_like_values_round_trip(value: Any) -> None:
    for serializer in ROUND_TRIP_SERIALIZERS:
        assert serializer.loads(serializer.dumps(value)) == value


def _loads_or_corrupt(serializer: Serializer, data: bytes) -> None:
    try:
        serializer.loads(data)
    except CorruptValueError:
        return
    unframe(data)  # a value came back: the bytes must have been a valid frame


@given(data=st.binary(max_size=64) | st.binary(max_size=64).map(lambda b: b"\xc5\x01" + b))
def test_arbitrary_bytes_are_never_returned_as_values(data: bytes) -> None:
    for serializer in ALL_SERIALIZERS:
        _loads_or_corrupt(serializer, data)


@given(
    format_id=st.sampled_from([FORMAT_JSON, FORMAT_RAW_BYTES, FORMAT_RAW_STR, FORMAT_PICKLE, 200]),
    flags=st.integers(min_value=0, max_value=255),
    payload=st.binary(max_size=64),
)
def test_valid_frames_with_garbage_payloads_raise_only_corrupt(
    format_id: int, flags: int, payload: bytes
) -> None:
    data = frame(format_id, payload, flags)
    for serializer in ALL_SERIALIZERS:
        _loads_or_corrupt(serializer, data)
    for signed in (PickleSerializer(SECRET), EncryptedSerializer(key=KEY)):
        with pytest.raises(CorruptValueError):
            signed.loads(data)


@given(value=json_values, data=st.data())
def test_flipping_any_byte_is_detected(value: Any, data: st.DataObject) -> None:
    for serializer in ALL_SERIALIZERS:
        stored = serializer.dumps(
            value if not isinstance(serializer, RawSerializer) else repr(value)
        )
        index = data.draw(st.integers(min_value=0, max_value=len(stored) - 1), label="index")
        mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
        flipped = bytearray(stored)
        flipped[index] ^= mask
        with pytest.raises(CorruptValueError):
            serializer.loads(bytes(flipped))


@given(payload=st.binary(max_size=64))
def test_typed_decode_of_garbage_json_is_corrupt_or_typed(payload: bytes) -> None:
    try:
        result = OrjsonSerializer().loads(frame(FORMAT_JSON, payload), Point)
    except CorruptValueError:
        return
    assert isinstance(result, Point)


class Bag(dict[str, int]):
    """A dict subclass: orjson writes it, but msgspec cannot decode into it."""


@pytest.mark.parametrize("annotation", [Bag, list[Widget], Optional[Bag], dict[str, Bag]])  # noqa: UP045
def test_orjson_annotation_without_json_decoding_is_a_programming_error(annotation: Any) -> None:
    serializer = OrjsonSerializer()
    with pytest.raises(SerializationError, match="no JSON decoding") as info:
        serializer.loads(serializer.dumps({}), annotation)
    assert not isinstance(info.value, CorruptValueError)


@dataclasses.dataclass
class TreeNode:
    name: str
    children: list[TreeNode] = dataclasses.field(default_factory=list)


def test_orjson_recursive_dataclass_round_trips() -> None:
    tree = TreeNode("root", [TreeNode("a"), TreeNode("b", [TreeNode("c")])])
    serializer = OrjsonSerializer()
    assert serializer.loads(serializer.dumps(tree), TreeNode) == tree


def test_all_is_complete_and_sorted() -> None:
    import kirocache.serializers as module

    public = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (getattr(obj, "__module__", None) == module.__name__ or name.isupper())
    } - {"TYPE_CHECKING"}
    assert set(module.__all__) == public
    # ruff's order (RUF022): CONSTANTS, then Classes, then functions, each alphabetical.
    assert module.__all__ == sorted(
        module.__all__, key=lambda name: (not name.isupper(), not name[0].isupper(), name)
    )


def test_orjson_unhashable_annotation_still_decodes() -> None:
    annotation = Annotated[list[int], {"unhashable": "metadata"}]
    serializer = OrjsonSerializer()
    entry = serializer.dumps([1, 2])
    assert serializer.loads(entry, annotation) == [1, 2]
    with pytest.raises(CorruptValueError):
        serializer.loads(serializer.dumps(["x"]), annotation)


def test_orjson_string_annotation_asks_for_a_resolved_type() -> None:
    serializer = OrjsonSerializer()
    with pytest.raises(SerializationError, match="resolved rather than a string") as info:
        serializer.loads(serializer.dumps({}), "Profile")
    assert not isinstance(info.value, CorruptValueError)


def test_plain_reprs() -> None:
    assert repr(OrjsonSerializer()) == "OrjsonSerializer()"
    assert repr(RawSerializer()) == "RawSerializer()"
    assert repr(CompressedSerializer(RawSerializer(), threshold=10, level=3)) == (
        "CompressedSerializer(inner=RawSerializer(), threshold=10, level=3)"
    )


# --- the value mapping table (docs/serialization.md), row by row ---------------------------
#
# Each row: a Python value, what an untyped read of its JSON entry returns, and the annotation
# that reads it back exactly. ``Check`` (what @cached asks before storing) must refuse the value
# where no annotation names its type, and accept it where one does.

MAPPING_TABLE: list[tuple[str, Any, Any, Any]] = [
    ("str", "héllo", "héllo", str),
    ("int", 2**63, 2**63, int),
    ("bool", True, True, bool),
    ("None", None, None, type(None)),
    ("float", 1.5, 1.5, float),
    ("dict and list", {"a": [1, None]}, {"a": [1, None]}, dict[str, list[Optional[int]]]),  # noqa: UP045
    ("int keys", {1: "one"}, {"1": "one"}, dict[int, str]),
    ("tuple", (1, "a"), [1, "a"], tuple[int, str]),
    ("NamedTuple", Point(1, 2), [1, 2], Point),
    ("set", {3}, [3], set[int]),
    ("frozenset", frozenset({"x"}), ["x"], frozenset[str]),
    ("bytes", b"\x00\xff", "AP8=", bytes),
    ("bytearray", bytearray(b"ab"), "YWI=", bytearray),
    ("Decimal", Decimal("1.10"), "1.10", Decimal),
    ("datetime", datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05", datetime),
    ("date", date(2024, 1, 2), "2024-01-02", date),
    ("time", time(1, 2), "01:02:00", time),
    ("timedelta", timedelta(days=2, seconds=5), "P2DT5S", timedelta),
    ("UUID", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", uuid.UUID),
    ("Enum", Color.RED, "red", Color),
    ("IntEnum", Level.HIGH, 2, Level),
    ("dataclass", Address("Oslo", "0150"), {"city": "Oslo", "zip_code": "0150"}, Address),
    ("Struct", Event("launch", date(2025, 1, 1)), {"name": "launch", "at": "2025-01-01"}, Event),
    ("TypedDict", Progress(course="py", percent=1.0), {"course": "py", "percent": 1.0}, Progress),
]
PLAIN_ROWS = frozenset({"str", "int", "bool", "None", "float", "dict and list", "TypedDict"})


@pytest.mark.parametrize(
    ("row", "value", "untyped", "annotation"), MAPPING_TABLE, ids=[r[0] for r in MAPPING_TABLE]
)
def test_the_mapping_table_holds(row: str, value: Any, untyped: Any, annotation: Any) -> None:
    serializer = OrjsonSerializer()
    entry = serializer.dumps(value)
    read = serializer.loads(entry)
    assert read == untyped
    assert type(read) is type(untyped)
    typed = serializer.loads(entry, annotation)
    assert typed == value
    assert type(typed) is type(value)
    # what @cached decides: an unannotated function may store only plain JSON; an annotation
    # that names the type makes every row storable
    assert (Check(None)(value) is None) == (row in PLAIN_ROWS)
    assert Check(annotation)(value) is None


@pytest.mark.parametrize(
    ("value", "annotation", "where"),
    [
        (float("inf"), float, "$ is inf"),
        ({"x": [1.0, float("nan")]}, dict[str, list[float]], "$['x'][1] is nan"),
        ({"x": -float("inf")}, None, "$['x'] is -inf"),
        (Address("Oslo", "0150"), None, "$ is an Address"),
        ({"at": datetime(2024, 1, 2)}, dict[str, Any], "$['at'] is a datetime"),
        ([Color.RED], list[Any], "$[0] is a Color"),
        ({"k": {1: 2}}, None, "$['k'][1]: an int key"),
        ((1, 2), list[int], "$ is a tuple"),
        ([1, (2, 3)], list[Any], "$[1] is a tuple"),
        (None, Address, "Address | None"),
        ("42", int, "Expected `int`, got `str`"),
        ({"a": 1}, list[Any], "not the list its annotation says"),
        (Profile(**{**_profile().__dict__, "nickname": float("nan")}), Profile, "$.nickname"),  # type: ignore[arg-type]
    ],
)
def test_check_refuses_what_would_not_read_back_and_says_where(
    value: Any, annotation: Any, where: str
) -> None:
    reason = Check(annotation)(value)
    assert reason is not None
    assert where in reason


def test_check_leaves_values_without_a_json_form_to_the_serializer_error() -> None:
    with pytest.raises(SerializationError, match="Widget"):
        Check(None)({"w": Widget()})
    with pytest.raises(SerializationError, match="64-bit"):
        Check(int)(2**64)


def test_check_hides_long_keys_in_paths() -> None:
    secret_key = "session:" + "a" * 40
    reason = Check(None)({secret_key: (1,)})
    assert reason is not None
    assert secret_key not in reason
    assert "$[...]" in reason


def test_only_json_serializers_are_checked() -> None:
    assert speaks_json(OrjsonSerializer())
    assert speaks_json(CompressedSerializer())
    assert speaks_json(EncryptedSerializer(CompressedSerializer(), key=KEY))
    assert not speaks_json(PickleSerializer(SECRET))
    assert not speaks_json(CompressedSerializer(PickleSerializer(SECRET)))
    assert not speaks_json(RawSerializer())


@given(value=json_values)
def test_check_accepts_every_plain_json_value(value: Any) -> None:
    assert Check(None)(value) is None
    assert Check(object)(value) is None


@given(value=json_values.filter(lambda v: isinstance(v, list) and len(v) > 0))
def test_check_refuses_a_tuple_anywhere_in_an_unannotated_value(value: list[Any]) -> None:
    value = [*value[:-1], tuple(value[-1:])]
    reason = Check(None)(value)
    assert reason is not None
    assert f"$[{len(value) - 1}] is a tuple" in reason
