"""Login sessions on a kirocache backend: per-user generations, sliding expiry, fail-closed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kirocache._ring.session_steps import SessionSteps
from kirocache._ring.sessions_core import (
    SessionInfo,
    SessionStats,
    SessionStoreError,
    mask,
    run_async,
    run_sync,
)
from kirocache.backends import ttl_seconds
from kirocache.exceptions import ConfigurationError
from kirocache.presets import USER_SESSION

if TYPE_CHECKING:
    from kirocache import Cache, Duration
    from kirocache.keys import Namespace
    from kirocache.serializers import Serializer

__all__ = ["SessionInfo", "SessionStats", "SessionStore", "SessionStoreError", "mask"]


class SessionStore:
    """Server-side login sessions in a cache's backend, listed per user, failing closed.

    Every session has a record (user, data, creation and activity times, the user's
    generation) under ``<namespace>id:<session id>``, a liveness key under
    ``<namespace>live:<session id>`` and an entry in its user's index, a tag set under
    ``<namespace>user:<user id>``; each user has a generation key under
    ``<namespace>gen:<user id>``. The store calls the backend directly rather than the
    cache's fail-open methods: a backend fault raises :class:`SessionStoreError` (answer
    503), never a silent "no such session", and a revocation that cannot reach the
    backend raises rather than reporting success.

    Revocation holds under eviction, whatever the ``maxmemory-policy``: a session is valid
    only while its record and liveness key exist and its user's generation key holds the
    token the record carries. ``revoke`` deletes the liveness key and ``revoke_all`` the
    generation key (no index needed); only ``create`` writes either, fresh, so an evicted
    or deleted key logs users out and never revives a revoked session. Both revocations
    are deletions, which Redis accepts even out of memory under ``noeviction``. The index
    serves listings, the cap and ``stats`` only. Records written before generations
    existed read as logged out.

    Every method has an async twin with an ``a`` prefix (``create``/``acreate``, ...).
    Creation and activity times come from the cache's clock (``Cache(clock=...)``); a
    session's expiry is its record's TTL in the backend.

    Args:
        cache: The cache whose backend, key prefix and serializer the store uses.
        namespace: Where the keys live; ``USER_SESSION`` (``session:``) by default.
        ttl: Session lifetime (seconds or timedelta); the namespace's TTL if None.
        sliding: Whether ``touch`` restarts the lifetime (idle timeout) or the session
            ends ``ttl`` after its creation whatever happens (absolute timeout).
        max_sessions_per_user: With a number, creating a session beyond it revokes the
            user's oldest sessions; creations for one user take a per-user lock.
        serializer: Encodes records; the cache's serializer if None. Pass an
            ``EncryptedSerializer`` to encrypt session data at rest.

    Raises:
        ConfigurationError: No finite ``ttl`` or a ``max_sessions_per_user`` below 1.
    """

    def __init__(
        self,
        cache: Cache,
        namespace: Namespace = USER_SESSION,
        ttl: Duration | None = None,
        sliding: bool = True,
        max_sessions_per_user: int | None = None,
        *,
        serializer: Serializer | None = None,
    ) -> None:
        seconds = ttl_seconds(ttl) if ttl is not None else namespace.ttl
        if seconds is None:
            msg = "sessions need a finite ttl: pass ttl= or use a namespace with a TTL"
            raise ConfigurationError(msg)
        if max_sessions_per_user is not None and (
            type(max_sessions_per_user) is not int or max_sessions_per_user < 1
        ):
            msg = (
                f"max_sessions_per_user must be an int >= 1 or None, got {max_sessions_per_user!r}"
            )
            raise ConfigurationError(msg)
        self._namespace = namespace
        self.ttl: float = seconds
        self.sliding = sliding
        self.max_sessions_per_user = max_sessions_per_user
        self._steps = SessionSteps(
            cache,
            namespace,
            seconds,
            sliding,
            max_sessions_per_user,
            serializer if serializer is not None else cache.serializer,
        )

    def __repr__(self) -> str:
        return (
            f"SessionStore(namespace={self._namespace.prefix!r}, ttl={self.ttl!r}, "
            f"sliding={self.sliding!r}, max_sessions_per_user={self.max_sessions_per_user!r})"
        )

    @staticmethod
    def _user(user_id: object) -> str:
        if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
            msg = f"user_id must be a non-empty str or an int, got {user_id!r}"
            raise ConfigurationError(msg)
        return str(user_id)

    @staticmethod
    def _data(data: object) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            msg = f"session data must be a dict, got {type(data).__name__}"
            raise TypeError(msg)
        return dict(data)

    # -- each sync method and its async twin side by side, both driving the same steps ------

    def create(self, user_id: str | int, data: Mapping[str, Any] | None = None) -> str:
        """Start a session for ``user_id``.

        Args:
            user_id: The user; ints are stored as their decimal text.
            data: JSON-able session data (with the default serializer).

        Returns:
            The new session id (256 random bits, URL-safe): put it in the cookie.

        Raises:
            SessionStoreError: The backend failed, or the per-user lock stayed taken.
        """
        return run_sync(self._steps.create(self._user(user_id), self._data(data)))

    async def acreate(self, user_id: str | int, data: Mapping[str, Any] | None = None) -> str:
        """Async ``create``."""
        return await run_async(self._steps.create(self._user(user_id), self._data(data)))

    def get(self, session_id: str) -> dict[str, Any] | None:
        """The data of a live session, or ``None`` if it does not exist, expired or was revoked.

        Args:
            session_id: The id from the cookie; ids of a foreign shape answer ``None``.

        Raises:
            SessionStoreError: The backend failed or the record cannot be decoded.
        """
        return run_sync(self._steps.data(session_id))

    async def aget(self, session_id: str) -> dict[str, Any] | None:
        """Async ``get``."""
        return await run_async(self._steps.data(session_id))

    def update(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Replace a live session's data, keeping its expiry.

        Returns:
            Whether the session was live (nothing is written otherwise).

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._steps.update(session_id, self._data(data), None))

    async def aupdate(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Async ``update``."""
        return await run_async(self._steps.update(session_id, self._data(data), None))

    def touch(self, session_id: str, /, **activity: Any) -> bool:
        """Record activity; with ``sliding``, the session (and its user's index) live ``ttl`` more.

        Args:
            session_id: The session.
            **activity: JSON-able facts to remember (``ip=...``, ``path=...``), merged
                into the earlier ones.

        Returns:
            Whether the session was live.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._steps.update(session_id, {}, activity))

    async def atouch(self, session_id: str, /, **activity: Any) -> bool:
        """Async ``touch``."""
        return await run_async(self._steps.update(session_id, {}, activity))

    def user_sessions(self, user_id: str | int) -> list[SessionInfo]:
        """The user's live sessions, oldest first; dead index entries are dropped on the way.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._steps.live(self._user(user_id)))

    async def auser_sessions(self, user_id: str | int) -> list[SessionInfo]:
        """Async ``user_sessions``."""
        return await run_async(self._steps.live(self._user(user_id)))

    def revoke(self, session_id: str) -> bool:
        """End a session now (log out), even if a ``touch`` races it.

        Returns:
            Whether it was valid.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._steps.revoke_id(session_id))

    async def arevoke(self, session_id: str) -> bool:
        """Async ``revoke``."""
        return await run_async(self._steps.revoke_id(session_id))

    def revoke_all(self, user_id: str | int) -> int:
        """End every session of a user (log out everywhere, password change).

        Applies with or without the user's index (an eviction may have removed it).

        Returns:
            How many valid sessions the user's index listed (fewer, down to 0, if the
            index was evicted: they are revoked all the same).

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._steps.revoke_all(self._user(user_id)))

    async def arevoke_all(self, user_id: str | int) -> int:
        """Async ``revoke_all``."""
        return await run_async(self._steps.revoke_all(self._user(user_id)))

    def cleanup(self) -> int:
        """Drop the index entries of sessions that expired, for every user.

        Returns:
            How many entries of expired sessions were dropped.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._steps.cleanup())

    async def acleanup(self) -> int:
        """Async ``cleanup``."""
        return await run_async(self._steps.cleanup())

    def stats(self) -> SessionStats:
        """Live sessions and users now, and the created/expired/revoked counters.

        Raises:
            SessionStoreError: The backend failed.
        """
        return run_sync(self._steps.stats())

    async def astats(self) -> SessionStats:
        """Async ``stats``."""
        return await run_async(self._steps.stats())
