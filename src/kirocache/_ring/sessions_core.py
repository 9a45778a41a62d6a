"""The I/O-free core of the session store: ids, index entries, records and the drivers."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import xxhash

from kirocache.backends import Call, Op, Steps, arun_steps, run_steps
from kirocache.exceptions import BackendError

__all__ = [
    "SessionInfo",
    "SessionStats",
    "SessionStoreError",
    "check_slots",
    "execute",
    "mask",
    "member",
    "new_session_id",
    "parse_member",
    "remaining",
    "run_async",
    "run_sync",
    "slot_tag",
    "valid_id",
]

# 32 random bytes: 256 bits, far beyond guessing; token_urlsafe never emits "." or ":".
_ID_BYTES: Final = 32
_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{22,128}")
_SHOWN: Final = 6
# A session id inside a key a backend error names (Redis quotes the failing command, as
# "Command # 1 (GET session:id:<id>) of pipeline caused error"): any run of the id alphabet
# as long as the shortest id ``valid_id`` accepts, after the ":" of a key or the "." of an
# index entry. Masking a long user id too is the safe side.
_ID_IN_TEXT: Final = re.compile(r"(?<=[:.])[A-Za-z0-9_-]{22,}")

T = TypeVar("T")


class SessionStoreError(BackendError):
    """The session store could not reach or trust its backend; sessions fail closed.

    Unlike cached reads, a session lookup never turns a fault into "no such session":
    catch this error and answer 503 (Service Unavailable). The original error is chained
    as ``__cause__``.
    """


def slot_tag(user_id: str) -> str:
    """The hash tag a user's keys and sessions share: 3 hex digits of a hash of the id.

    On a Redis Cluster every key with one tag lives in one slot, so a session's record,
    liveness key, its user's index and generation can change in one transaction. 12 bits
    say little about whose a session is (4,096 groups), and nothing to guess it by.
    """
    return f"{xxhash.xxh3_64_intdigest(user_id.encode('utf-8', 'surrogatepass')) & 0xFFF:03x}"


def new_session_id(user_id: str) -> str:
    """A fresh session id: the user's slot tag, then 256 bits from ``secrets`` (46 chars)."""
    return slot_tag(user_id) + secrets.token_urlsafe(_ID_BYTES)


def valid_id(session_id: object) -> bool:
    """Whether ``session_id`` has the shape of an id this store makes (cookies are input)."""
    return isinstance(session_id, str) and _ID_SHAPE.fullmatch(session_id) is not None


def mask(session_id: str) -> str:
    """The id as it may appear in logs and reprs: its first characters and an ellipsis."""
    return session_id[:_SHOWN] + "\u2026"


def _masked(text: str) -> str:
    # Backend errors quote the failing command ("Command # 1 (SET session:id:<id> ...)"):
    # a SessionStoreError's message is what apps log, so ids in it are masked.
    return _ID_IN_TEXT.sub(lambda found: mask(found.group()), text)


def _mask_chain(error: BaseException) -> None:
    """Mask the ids in the messages of ``error``'s causes and contexts, in place.

    A traceback (``logging.exception``, an error tracker) prints every exception of the
    chain: the backend's ``BackendError`` and redis-py's own error quote the failing
    command with its key, so their messages are masked as the store's own is.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if any(isinstance(arg, str) and _ID_IN_TEXT.search(arg) for arg in exc.args):
            exc.args = tuple(_masked(arg) if isinstance(arg, str) else arg for arg in exc.args)
        pending += [exc.__cause__, exc.__context__]


def member(created_ms: int, session_id: str) -> str:
    """The index entry of a session: its creation time (ms) and id, ``"<ms>.<id>"``.

    The creation time lets a pruner tell a session that is gone from one whose creation
    is still in flight, without reading the session record.
    """
    return f"{created_ms}.{session_id}"


def parse_member(entry: str) -> tuple[int, str] | None:
    """``(created_ms, session_id)`` of an index entry, or ``None`` for a foreign entry."""
    created, _, session_id = entry.partition(".")
    if not created.isdigit() or not valid_id(session_id):
        return None
    return int(created), session_id


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session, as ``user_sessions`` lists it; its repr masks the id.

    Attributes:
        session_id: The full session id.
        user_id: The user the session belongs to.
        data: The session data.
        created_at: Creation time, Unix seconds.
        last_activity: Time of the last ``touch`` (the creation time before one), Unix seconds.
        activity: The keyword arguments of the ``touch`` calls, merged.
    """

    session_id: str = field(repr=False)
    user_id: str
    data: dict[str, Any]
    created_at: float
    last_activity: float
    activity: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"SessionInfo(session_id={mask(self.session_id)!r}, user_id={self.user_id!r}, "
            f"created_at={self.created_at!r}, last_activity={self.last_activity!r})"
        )

    @classmethod
    def from_record(cls, session_id: str, record: Mapping[str, Any]) -> SessionInfo:
        """Build from a stored record.

        Raises:
            SessionStoreError: The record does not have the fields the store writes.
        """
        try:
            return cls(
                session_id=session_id,
                user_id=str(record["user_id"]),
                data=dict(record["data"]),
                created_at=float(record["created_at"]),
                last_activity=float(record["last_activity"]),
                activity=dict(record.get("activity") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"session {mask(session_id)} has a malformed record: {exc!r}"
            raise SessionStoreError(msg) from exc

    def record(self) -> dict[str, Any]:
        """The dict stored in the backend."""
        return {
            "user_id": self.user_id,
            "data": self.data,
            "created_at": self.created_at,
            "last_activity": self.last_activity,
            "activity": self.activity,
        }


@dataclass(frozen=True, slots=True)
class SessionStats:
    """What ``SessionStore.stats`` reports.

    Attributes:
        live_sessions: Valid sessions now, as the users' indexes list them (an evicted
            index hides its sessions from this figure, not from revocation).
        users: Users with at least one valid listed session.
        created: Sessions created since the counters began.
        expired: Sessions found expired and dropped from an index (by ``cleanup`` or a listing).
        revoked: Sessions revoked, including those evicted by ``max_sessions_per_user``;
            ``revoke_all`` adds the valid sessions its index listed. Best effort: a
            refused increment (out of memory) is logged and the revocation stands.
    """

    live_sessions: int
    users: int
    created: int
    expired: int
    revoked: int


def check_slots(results: list[Any], what: str) -> list[Any]:
    """Raise the first exception a pipeline put in its slots, as a ``SessionStoreError``."""
    for slot in results:
        if isinstance(slot, BaseException):
            msg = _masked(f"session store backend failed during {what}: {slot}")
            error = SessionStoreError(msg)
            error.__cause__ = slot
            _mask_chain(error)
            raise error
    return results


def execute(
    backend: Any, ops: list[Op], what: str, *, transaction: bool = False
) -> Steps[list[Any]]:
    """Run ``ops`` in one round trip (atomically with ``transaction``); their answers.

    Raises:
        SessionStoreError: An op failed in its slot (``what`` names the operation).
    """
    results = yield Call(backend, "execute", (ops,), {"transaction": transaction})
    return check_slots(results, what)


def remaining(seconds: float | None) -> float | None:
    """A TTL read back from the backend as a TTL to write: ``inf`` means no expiry."""
    if seconds is None or math.isinf(seconds):
        return None
    return seconds


# -- one implementation, two drivers -------------------------------------------------------


def _fault(call: Call, exc: BackendError) -> SessionStoreError:
    if isinstance(exc, SessionStoreError):
        return exc
    what = call.method
    if what == "execute" and call.args:
        what = "+".join(op.name for op in call.args[0])
    error = SessionStoreError(_masked(f"session store backend failed in {what}: {exc}"))
    error.__cause__ = exc
    _mask_chain(error)
    return error


def run_sync(steps: Steps[T]) -> T:
    """Drive a session operation with the sync backend methods.

    Raises:
        SessionStoreError: A backend call failed.
    """
    return run_steps(steps, _fault)


async def run_async(steps: Steps[T]) -> T:
    """Drive a session operation with the async backend methods: ``run_sync``'s twin.

    Raises:
        SessionStoreError: A backend call failed.
    """
    return await arun_steps(steps, _fault)
