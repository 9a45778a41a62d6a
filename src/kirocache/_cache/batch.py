"""Fluent batches: many cache operations sent to the backend in one round trip."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeAlias, get_args, overload

from typing_extensions import Self

from kirocache._cache.driver import arun, run
from kirocache._cache.guard import is_fault
from kirocache._cache.invalidator import TOMBSTONE, is_tombstone
from kirocache._cache.keyspace import DEFAULT_LABEL
from kirocache._values.stamped import STAMPED, is_stamped
from kirocache.backends import Op
from kirocache.exceptions import (
    BackendError,
    CircuitOpenError,
    ConfigurationError,
    CorruptValueError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from kirocache._cache.cache import Cache
    from kirocache._cache.driver import Flow
    from kirocache._values.types import Duration
    from kirocache.backends import OpResult
    from kirocache.keys import Namespace
    from kirocache.metrics import Outcome

__all__ = ["Batch", "BatchResult"]

_Kind: TypeAlias = Literal[
    "get", "set", "delete", "exists", "expire", "incr", "get_many", "set_many"
]
_OPERATION: Final[Mapping[str, str]] = {kind: f"batch.{kind}" for kind in get_args(_Kind)}
"""Each step kind's metrics operation."""
_STAMPED_HEAD: Final = bytes((STAMPED,))


class _Step(NamedTuple):
    """One builder call: the backend ops it became and how to read their answers.

    A named tuple, not a frozen dataclass: a batch builds one per call (see ``Op``).
    """

    kind: _Kind
    ops: tuple[Op, ...]
    labels: tuple[str, ...]
    keys: tuple[str, ...]
    type: Any = None


class BatchResult(Sequence[Any]):
    """The answers of an executed batch: one slot per builder call, in call order.

    A slot holds what the matching ``Cache`` method returns (``get``: the value or
    ``None``; ``set``, ``delete``, ``exists``, ``expire``: a bool; ``incr``: the new
    value; ``get_many``: a dict of the hits; ``set_many``: ``True``), or the exception of
    an operation that failed. Slots of labelled calls can also be read by label.

    Examples:
        >>> from kirocache import Cache
        >>> cache = Cache.from_url("memory://")
        >>> result = Batch(cache).set("a", 1).get("a", label="a").execute()
        >>> list(result), result["a"]
        ([True, 1], 1)
    """

    __slots__ = ("_labels", "_slots")

    def __init__(self, slots: Sequence[Any], labels: Mapping[str, int]) -> None:
        self._slots = list(slots)
        self._labels = dict(labels)

    @overload
    def __getitem__(self, index: int | str) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | str | slice) -> Any:
        """The slot at a position, the slots of a slice, or the slot of a label.

        Raises:
            KeyError: No call was given this label.
        """
        if isinstance(index, str):
            if index not in self._labels:
                msg = f"no operation labelled {index!r}; labels: {sorted(self._labels)}"
                raise KeyError(msg)
            return self._slots[self._labels[index]]
        return self._slots[index]

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._slots)

    @property
    def labels(self) -> dict[str, int]:
        """Each label and the position of its slot."""
        return dict(self._labels)

    @property
    def errors(self) -> list[BaseException]:
        """The exceptions in the slots, in slot order (empty when everything worked)."""
        return [slot for slot in self._slots if isinstance(slot, BaseException)]

    @property
    def ok(self) -> bool:
        """Whether no slot holds an exception."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise the first failure, for callers that want a batch to be all or nothing.

        Raises:
            BaseException: The exception of the first failed slot.
        """
        for slot in self._slots:
            if isinstance(slot, BaseException):
                raise slot

    def __repr__(self) -> str:
        return f"BatchResult({self._slots!r})"


class Batch:
    """A fluent builder of cache operations, sent in one backend round trip.

    Each method checks its key, TTL and value and serializes the value at once, so a
    mistake raises at the line that made it and nothing is sent. ``execute()`` (or
    ``await aexecute()``) sends every operation in one ``Backend.execute`` call: one Redis
    pipeline, MULTI/EXEC with ``transaction=True``; one lock hold on memory.

    Backend faults follow the cache's policy: with ``on_error="ignore"`` every slot holds
    the ``BackendError`` and nothing raises; with ``"raise"`` it raises. An operation that
    fails on its own (``incr`` on a value that is not a counter) puts its exception in its
    slot and the others still run; a transaction is atomic but, as Redis's MULTI/EXEC, does
    not roll back.

    Used as a context manager, the batch executes on exit unless an exception escaped,
    and keeps what it got in ``result``.

    Args:
        cache: The cache whose keys, serializer, metrics and backend to use.
        transaction: Run the operations atomically.

    Examples:
        >>> from kirocache import Cache
        >>> cache = Cache.from_url("memory://")
        >>> result = (
        ...     Batch(cache)
        ...     .set("user:1", {"name": "Ada"}, ttl=60)
        ...     .incr("visits", label="visits")
        ...     .get("user:1", label="user")
        ...     .execute()
        ... )
        >>> result["user"], result["visits"]
        ({'name': 'Ada'}, 1)
    """

    def __init__(self, cache: Cache, *, transaction: bool = False) -> None:
        self.cache = cache
        self.transaction = transaction
        self.result: BatchResult | None = None
        self._steps: list[_Step] = []
        self._names: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._steps)

    # -- building ----------------------------------------------------------------------------

    def _add(self, step: _Step, label: str | None) -> Self:
        if label is not None:
            if not isinstance(label, str):
                msg = f"label must be a str, not {type(label).__name__}"  # type: ignore[unreachable]
                raise ConfigurationError(msg)
            if label in self._names:
                msg = f"label {label!r} is already used by operation {self._names[label]}"
                raise ConfigurationError(msg)
            self._names[label] = len(self._steps)
        self._steps.append(step)
        return self

    def _one(
        self, kind: _Kind, key: str, namespace: Namespace | None, label: str | None, **op: Any
    ) -> Self:
        full, metric_label, _ = self.cache.keyspace.resolve(key, namespace)
        name = op.pop("name", kind)
        return self._add(_Step(kind, (Op(name, full, **op),), (metric_label,), (key,)), label)

    def set(
        self,
        key: str,
        value: object,
        ttl: Duration | None = None,
        *,
        nx: bool = False,
        namespace: Namespace | None = None,
        label: str | None = None,
    ) -> Self:
        """Store ``value`` at ``key`` (see ``Cache.set``); its slot: whether it was stored.

        Raises:
            InvalidKeyError: The key is not a valid key.
            InvalidTTLError: ``ttl`` is not a positive duration.
            SerializationError: The value cannot be serialized.
            ValueTooLargeError: It is larger than the cache's ``max_value_size``.
            ConfigurationError: ``label`` is already used in this batch.
        """
        full, metric_label, default_ttl = self.cache.keyspace.resolve(key, namespace)
        seconds = self.cache.keyspace.ttl(ttl, default_ttl, value)
        data = self.cache.codec.dumps(full, value)
        op = Op("set", full, value=data, ttl=seconds, nx=nx)
        return self._add(_Step("set", (op,), (metric_label,), (key,)), label)

    def get(
        self,
        key: str,
        *,
        type: Any = None,
        namespace: Namespace | None = None,
        label: str | None = None,
    ) -> Self:
        """Read ``key``; its slot: the value, or ``None`` on a miss or a corrupt entry.

        Raises:
            InvalidKeyError: The key is not a valid key.
        """
        full, metric_label, _ = self.cache.keyspace.resolve(key, namespace)
        step = _Step("get", (Op("get", full),), (metric_label,), (key,), type)
        return self._add(step, label)

    def delete(
        self, key: str, *, namespace: Namespace | None = None, label: str | None = None
    ) -> Self:
        """Invalidate ``key``; its slot: whether it held a value.

        Like ``Cache.delete`` it leaves a tombstone, but it does not follow the key's
        dependencies or write to the invalidation log (a batch is one round trip).
        """
        full, metric_label, _ = self.cache.keyspace.resolve(key, namespace)
        ops = tuple(self.cache.invalidator.erase_ops([full]))
        return self._add(_Step("delete", ops, (metric_label,), (key,)), label)

    def exists(
        self, key: str, *, namespace: Namespace | None = None, label: str | None = None
    ) -> Self:
        """Check ``key``; its slot: whether it holds a live value."""
        if self.cache.invalidator.tombstone_ttl is None:
            return self._one("exists", key, namespace, label)
        return self._one("exists", key, namespace, label, name="get")  # a tombstone is absent

    def expire(
        self,
        key: str,
        ttl: Duration,
        *,
        namespace: Namespace | None = None,
        label: str | None = None,
    ) -> Self:
        """Give ``key`` a new TTL (``NEVER`` removes it); its slot: whether it changed.

        Raises:
            InvalidTTLError: ``ttl`` is not a positive duration or ``NEVER``.
        """
        seconds = self.cache.keyspace.ttl(ttl, None)
        if seconds is None:
            return self._one("expire", key, namespace, label, name="persist")
        return self._one("expire", key, namespace, label, ttl=seconds)

    def incr(
        self,
        key: str,
        by: int = 1,
        *,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
        label: str | None = None,
    ) -> Self:
        """Add ``by`` to the counter at ``key`` (created at 0 with ``ttl``); slot: new value.

        Raises:
            TypeError: ``by`` is not an int.
        """
        if isinstance(by, bool) or not isinstance(by, int):
            msg = f"by must be an int, not {by!r}"
            raise TypeError(msg)
        full, metric_label, default_ttl = self.cache.keyspace.resolve(key, namespace)
        seconds = self.cache.keyspace.ttl(ttl, default_ttl)
        op = Op("incr", full, amount=by, ttl=seconds)
        return self._add(_Step("incr", (op,), (metric_label,), (key,)), label)

    def get_many(
        self,
        keys: Sequence[str],
        *,
        type: Any = None,
        namespace: Namespace | None = None,
        label: str | None = None,
    ) -> Self:
        """Read ``keys``; their one slot: a dict of the keys that were hits.

        Raises:
            InvalidKeyError: A key is not a valid key.
        """
        if isinstance(keys, str):
            msg = "get_many takes a sequence of keys, not one str"
            raise TypeError(msg)
        resolved = [self.cache.keyspace.resolve(key, namespace) for key in keys]
        ops = tuple(Op("get", full) for full, _, _ in resolved)
        labels = tuple(metric_label for _, metric_label, _ in resolved)
        return self._add(_Step("get_many", ops, labels, tuple(keys), type), label)

    def set_many(
        self,
        mapping: Mapping[str, object],
        ttl: Duration | None = None,
        *,
        namespace: Namespace | None = None,
        label: str | None = None,
    ) -> Self:
        """Store every item of ``mapping``; their one slot: ``True`` once all are stored.

        Raises:
            InvalidKeyError: A key is not a valid key.
            InvalidTTLError: ``ttl`` is not a positive duration.
            SerializationError: A value cannot be serialized.
            ValueTooLargeError: A value is larger than the cache's ``max_value_size``.
        """
        ops: list[Op] = []
        labels: list[str] = []
        for key, value in mapping.items():
            full, metric_label, default_ttl = self.cache.keyspace.resolve(key, namespace)
            seconds = self.cache.keyspace.ttl(ttl, default_ttl, value)
            ops.append(Op("set", full, value=self.cache.codec.dumps(full, value), ttl=seconds))
            labels.append(metric_label)
        return self._add(_Step("set_many", tuple(ops), tuple(labels), tuple(mapping)), label)

    # -- sending -----------------------------------------------------------------------------

    def _ops(self) -> list[Op]:
        return [op for step in self._steps for op in step.ops]

    def _refused(self, started: float) -> BatchResult | None:
        """Everything failed when the breaker refuses the call (``None``: go ahead)."""
        label = self._steps[0].labels[0] if self._steps[0].labels else DEFAULT_LABEL
        if self.cache.guard.allow("batch", label, started):
            return None
        error = CircuitOpenError("the cache backend is failing; the batch was not sent")
        return self._failed(error, started)

    def _fault(self, exc: Exception, started: float) -> BatchResult:
        """Apply the cache's fault policy to a round trip that failed as a whole."""
        label = self._steps[0].labels[0] if self._steps[0].labels else DEFAULT_LABEL
        self.cache.guard.fault("batch", label, exc, started)
        if not isinstance(exc, BackendError):
            error = BackendError(f"cache backend failed during batch: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            exc = error
        return self._failed(exc, started)

    def _failed(self, error: BaseException, started: float) -> BatchResult:
        for step in self._steps:
            for metric_label in step.labels:
                self.cache.guard.observe(f"batch.{step.kind}", metric_label, "error", started)
            self._keep_pending(step)
        self.result = BatchResult([error] * len(self._steps), self._names)
        return self.result

    def _keep_pending(self, step: _Step) -> None:
        """A delete the backend did not apply is never lost: the invalidator keeps it."""
        if step.kind == "delete":
            self.cache.invalidator.pending.add(self.cache, keys=[op.key for op in step.ops])

    def _tagged(self, raws: Sequence[OpResult]) -> dict[str, bytes]:
        """The tagged entries the batch read, by full key: their stamps need a check."""
        if not any(raw.__class__ is bytes and raw[:1] == _STAMPED_HEAD for raw in raws):
            return {}  # the usual batch: nothing tagged, one pass over the replies
        tagged: dict[str, bytes] = {}
        at = 0
        for step in self._steps:
            if step.kind in ("get", "get_many", "exists"):
                for op, raw in zip(step.ops, raws[at : at + len(step.ops)], strict=True):
                    if isinstance(raw, bytes) and is_stamped(raw):
                        tagged[op.key] = raw
            at += len(step.ops)
        return tagged

    def _finish(
        self, raws: Sequence[OpResult], started: float, opened: Mapping[str, bytes | None]
    ) -> BatchResult:
        self.cache.guard.ok()
        slots: list[Any] = []
        at = 0
        for step in self._steps:
            size = len(step.ops)
            one = _ONE.get(step.kind) if size == 1 else None  # get_many, set_many: below
            if one is not None:
                answer = raws[at]
                if isinstance(answer, BaseException):
                    slots.append(self._failure(step, answer, started))
                else:
                    slots.append(one(self, step, answer, opened, started))
            else:
                slots.append(self._decode(step, raws[at : at + size], started, opened))
            at += size
        self.result = BatchResult(slots, self._names)
        return self.result

    def _hit(
        self, full: str, raw: OpResult, type: Any, opened: Mapping[str, bytes | None]
    ) -> tuple[bool, Any]:
        """Whether a read's reply is a hit, and its value."""
        pending = self.cache.invalidator.pending
        if pending.active and pending.blocks(full):
            return False, None  # a pending invalidation reaches it: a miss, as every read is
        if raw.__class__ is not bytes or raw.startswith(TOMBSTONE):
            return False, None
        frame = opened.get(full) if is_stamped(raw) else raw
        if frame is None:  # a stale tagged entry
            return False, None
        try:
            return True, self.cache.codec.loads(frame, type, full)
        except CorruptValueError:
            return False, None  # a miss; deleting it would cost a second round trip

    def _failure(self, step: _Step, failure: BaseException, started: float) -> BaseException:
        observe, operation = self.cache.guard.observe, _OPERATION[step.kind]
        for metric_label in step.labels:
            observe(operation, metric_label, "error", started)
        self._keep_pending(step)
        return failure

    def _decode(
        self,
        step: _Step,
        answers: Sequence[OpResult],
        started: float,
        opened: Mapping[str, bytes | None],
    ) -> Any:
        """The slot of a step of several ops (``get_many``, ``set_many``, a delete)."""
        observe, operation = self.cache.guard.observe, _OPERATION[step.kind]
        failure = next((a for a in answers if isinstance(a, BaseException)), None)
        if failure is not None:
            return self._failure(step, failure, started)
        if step.kind == "get_many":
            found: dict[str, Any] = {}
            for key, op, raw, metric_label in zip(
                step.keys, step.ops, answers, step.labels, strict=True
            ):
                hit, value = self._hit(op.key, raw, step.type, opened)
                if hit:
                    found[key] = value
                observe(operation, metric_label, "hit" if hit else "miss", started, key)
            return found
        if step.kind == "set_many":
            for metric_label in step.labels:
                observe(operation, metric_label, "set", started)
            return True
        return _ONE[step.kind](self, step, answers[0], opened, started)

    # ``execute`` and ``aexecute`` are a small twin pair, not steps for the drivers: a batch
    # that fails as a whole puts the exception itself in every slot, which the drivers'
    # ``FAILED`` answer does not carry. The fault policy is still the guard's.
    def execute(self) -> BatchResult:
        """Send every operation in one round trip and read the answers.

        Returns:
            One slot per builder call, in order (see ``BatchResult``).

        Raises:
            BackendError: The backend failed and the cache has ``on_error="raise"``.
            ConfigurationError: The backend has no sync methods.
        """
        if not self._steps:
            self.result = BatchResult([], {})
            return self.result
        self.cache.guard.need_sync()
        started = time.perf_counter()
        refused = self._refused(started)
        if refused is not None:
            return refused
        try:
            raws = self.cache.backend.execute(self._ops(), transaction=self.transaction)
        except Exception as exc:
            if not is_fault(exc):
                raise  # programming errors (ours or a backend's) are not faults of the store
            return self._fault(exc, started)
        tagged = self._tagged(raws)
        opened: Mapping[str, bytes | None] = {}
        if tagged:  # a second round trip, only for tagged entries: their stamps
            opened = self._opened(tagged, run(self.cache.guard, self._check(tagged, started)))
        return self._finish(raws, started, opened)

    async def aexecute(self) -> BatchResult:
        """Async ``execute``: the same round trip on the backend's async half."""
        if not self._steps:
            self.result = BatchResult([], {})
            return self.result
        self.cache.guard.need_async()
        started = time.perf_counter()
        refused = self._refused(started)
        if refused is not None:
            return refused
        try:
            raws = await self.cache.backend.aexecute(self._ops(), transaction=self.transaction)
        except Exception as exc:
            if not is_fault(exc):
                raise  # programming errors (ours or a backend's) are not faults of the store
            return self._fault(exc, started)
        tagged = self._tagged(raws)
        opened: Mapping[str, bytes | None] = {}
        if tagged:  # a second round trip, only for tagged entries: their stamps
            frames = await arun(self.cache.guard, self._check(tagged, started))
            opened = self._opened(tagged, frames)
        return self._finish(raws, started, opened)

    def _check(self, tagged: Mapping[str, bytes], started: float) -> Flow[list[bytes | None]]:
        label = self._steps[0].labels[0] if self._steps[0].labels else DEFAULT_LABEL
        invalidator = self.cache.invalidator
        return invalidator.unstamped(list(tagged.values()), {}, label, started)

    @staticmethod
    def _opened(tagged: Mapping[str, bytes], frames: Any) -> dict[str, bytes | None]:
        """The frame of each tagged entry (``None``: stale), by full key."""
        if not isinstance(frames, list):  # the check failed as a whole: nothing is served
            return dict.fromkeys(tagged)
        return dict(zip(tagged, frames, strict=True))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.execute()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.aexecute()

    def __repr__(self) -> str:
        kinds = ", ".join(step.kind for step in self._steps)
        return f"Batch([{kinds}], transaction={self.transaction})"


# -- the slot of a one-op step, by kind (the answer is not an exception) ----------------------

_Reader: TypeAlias = "Callable[[Batch, _Step, OpResult, Mapping[str, bytes | None], float], Any]"


def _get(
    batch: Batch, step: _Step, answer: OpResult, opened: Mapping[str, bytes | None], started: float
) -> Any:
    key = step.keys[0]
    hit, value = batch._hit(step.ops[0].key, answer, step.type, opened)
    batch.cache.guard.observe("batch.get", step.labels[0], "hit" if hit else "miss", started, key)
    return value


def _done(answer: OpResult, full: str, opened: Mapping[str, bytes | None]) -> bool:
    """Whether a one-op step did what it asked; a read: a tombstone or stale entry is absent."""
    if answer.__class__ is bytes:
        return not is_tombstone(answer) and opened.get(full, answer) is not None
    return bool(answer)


def _outcome(done: Outcome, not_done: Outcome) -> _Reader:
    def read(
        batch: Batch,
        step: _Step,
        answer: OpResult,
        opened: Mapping[str, bytes | None],
        started: float,
    ) -> bool:
        ok = _done(answer, step.ops[0].key, opened)
        outcome = done if ok else not_done
        batch.cache.guard.observe(_OPERATION[step.kind], step.labels[0], outcome, started)
        return ok

    return read


def _incr(
    batch: Batch, step: _Step, answer: OpResult, opened: Mapping[str, bytes | None], started: float
) -> int:
    batch.cache.guard.observe("batch.incr", step.labels[0], "set", started, step.keys[0])
    return int(answer)  # type: ignore[arg-type]


_ONE: Final[Mapping[str, _Reader]] = {
    "get": _get,
    "set": _outcome("set", "skip"),
    "delete": _outcome("delete", "delete"),
    "exists": _outcome("hit", "miss"),
    "expire": _outcome("set", "miss"),
    "incr": _incr,
}
