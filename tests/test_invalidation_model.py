"""Random sequences of sets, tags, dependencies and invalidations, checked against a model.

After every step, each key of a small universe must be present in the cache exactly when
the model says so: nothing that should be gone is still there, and nothing else was
removed. Runs on memory, fakeredis and the real redis-server.

The second machine adds faults (every call refused, or only the writes, as OOM does; the
breaker opens on its own) and recoveries. Its invariant is the promise of pending
invalidations: after an invalidation returns -- applied or not -- no read serves a value
it removed; a read serves only what the last successful write put there.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from conftest import HYPOTHESIS_EXAMPLES
from kirocache import Cache, Tag
from kirocache.backends import Op
from kirocache.testing import ManualClock
from outage import outage

if TYPE_CHECKING:
    from kirocache.testing.conformance import FullBackend

KEYS = ("a1", "a2", "a3", "b1", "b2", "c1")
TAGS = ("t1", "t2", "t3")
FAMILIES = ("a", "b", "c")
NODES = [*(f"k:{key}" for key in KEYS), *(f"t:{tag}" for tag in TAGS)]


class Model:
    """What should be cached: live keys, tag members, dependency edges."""

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        # keys invalidated since they were last set: they hold a tombstone (absent to reads,
        # but a key that a pattern delete unlinks and counts)
        self.tombstoned: set[str] = set()
        self.members: dict[str, set[str]] = {tag: set() for tag in TAGS}
        self.dependents: dict[str, set[str]] = {node: set() for node in NODES}

    def set(self, key: str, value: int, tags: list[str]) -> None:
        self.live[key] = value
        self.tombstoned.discard(key)
        for tag in tags:
            self.members[tag].add(key)

    def cascade(self, nodes: list[str]) -> None:
        """Invalidate nodes and everything reachable from them, each once."""
        seen: set[str] = set()
        todo = list(nodes)
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            if node.startswith("t:"):
                tag = node[2:]
                todo += [f"k:{key}" for key in self.members[tag]]
                self.members[tag] = set()
            else:
                self.live.pop(node[2:], None)
                self.tombstoned.add(node[2:])
            todo += sorted(self.dependents[node])

    def delete_family(self, family: str) -> int:
        """Unlink a family's keys, values and tombstones; returns how many there were."""
        gone = {key for key in [*self.live, *self.tombstoned] if key.startswith(family)}
        for key in gone:
            self.live.pop(key, None)
            self.tombstoned.discard(key)
        return len(gone)


def node_of(name: str) -> str | Tag:
    return Tag(name[2:]) if name.startswith("t:") else name[2:]


class Invalidations(RuleBasedStateMachine):
    backend: FullBackend

    def __init__(self) -> None:
        super().__init__()
        self.cache = Cache(self.backend, key_prefix=f"model:{uuid.uuid4().hex}:")
        self.model = Model()

    @rule(
        key=st.sampled_from(KEYS),
        value=st.integers(0, 99),
        tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
    )
    def set(self, key: str, value: int, tags: list[str]) -> None:
        assert self.cache.set(key, value, 60, tags=tags) is True
        self.model.set(key, value, tags)

    @rule(dependent=st.sampled_from(NODES), source=st.sampled_from(NODES))
    def depends(self, dependent: str, source: str) -> None:
        if dependent == source:
            return
        assert self.cache.depends(node_of(dependent), on=node_of(source), ttl=60) is True
        self.model.dependents[source].add(dependent)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        existed = key in self.model.live
        assert self.cache.delete(key) is existed
        self.model.cascade([f"k:{key}"])

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    def delete_many(self, keys: list[str]) -> None:
        existed = sum(key in self.model.live for key in keys)
        assert self.cache.delete_many(keys) == existed
        self.model.cascade([f"k:{key}" for key in keys])

    @rule(tags=st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True))
    def invalidate_tags(self, tags: list[str]) -> None:
        self.cache.invalidate_tags(*tags)
        self.model.cascade([f"t:{tag}" for tag in tags])

    @rule(family=st.sampled_from(FAMILIES))
    def invalidate_pattern(self, family: str) -> None:
        removed = self.cache.invalidate_pattern(f"{family}*")
        assert removed == self.model.delete_family(family)

    @invariant()
    def cache_agrees_with_model(self) -> None:
        found = self.cache.get_many(list(KEYS))
        assert found == self.model.live


def test_invalidations_agree_with_the_model(backend: FullBackend) -> None:
    machine = type("Machine", (Invalidations,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=HYPOTHESIS_EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


class FaultyInvalidations(Invalidations):
    """The rules above with faults and recoveries; reads may miss, never serve old values."""

    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)
        self.outage = outage(self.backend)
        self.clock = ManualClock()
        self.cache = Cache(self.outage, key_prefix=f"model:{uuid.uuid4().hex}:", clock=self.clock)
        self.cache.invalidator.pending.close()  # the calls replay: a deterministic run
        self.model = Model()

    @rule(writes_only=st.booleans())
    def fail(self, writes_only: bool) -> None:
        self.outage.failing, self.outage.writes_only = True, writes_only

    @rule()
    def recover(self) -> None:
        self.outage.failing = False
        self.clock.advance(5)  # past the breaker's recovery time and the replay's backoff

    @rule(
        key=st.sampled_from(KEYS),
        value=st.integers(0, 99),
        tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
    )
    def set(self, key: str, value: int, tags: list[str]) -> None:
        if self.cache.set(key, value, 60, tags=tags):
            self.model.set(key, value, tags)

    @rule(dependent=st.sampled_from(NODES), source=st.sampled_from(NODES))
    def depends(self, dependent: str, source: str) -> None:
        if dependent == source:
            return
        if self.cache.depends(node_of(dependent), on=node_of(source), ttl=60):
            self.model.dependents[source].add(dependent)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        self.cache.delete(key)  # applied or kept pending: the model forgets the key now
        self.model.cascade([f"k:{key}"])

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    def delete_many(self, keys: list[str]) -> None:
        self.cache.delete_many(keys)
        self.model.cascade([f"k:{key}" for key in keys])

    @rule(family=st.sampled_from(FAMILIES))
    def invalidate_pattern(self, family: str) -> None:
        self.cache.invalidate_pattern(f"{family}*")
        self.model.delete_family(family)

    @invariant()
    def cache_agrees_with_model(self) -> None:
        # A miss is allowed (a fault, a pending invalidation); an old value never is.
        found = self.cache.get_many(list(KEYS))
        for key in KEYS:
            single = self.cache.get(key)
            for value in (found.get(key), single):
                assert value is None or value == self.model.live.get(key), (key, value)


def test_invalidations_are_never_lost_to_faults(backend: FullBackend) -> None:
    machine = type("FaultyMachine", (FaultyInvalidations,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=HYPOTHESIS_EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


class EvictingInvalidations(Invalidations):
    """The rules above while an eviction policy takes tag indexes and stamps at random.

    Its invariant is the promise of stamped entries: a read may miss (an evicted stamp
    makes its entries unreadable), it never serves a value a tag invalidation removed,
    even when the index that listed the entry was evicted first. Dependencies stay out:
    an evicted index hides its keys' dependents from the cascade (docs/invalidation.md).
    """

    @rule(tag=st.sampled_from(TAGS), stamp=st.booleans())
    def evict(self, tag: str, stamp: bool) -> None:
        keys = self.cache.keyspace
        self.backend.execute([Op("delete", keys.stamp_key(tag) if stamp else keys.tag_key(tag))])

    def depends(self, dependent: str, source: str) -> None:  # not a rule here
        raise AssertionError(dependent, source)

    @rule(
        key=st.sampled_from(KEYS),
        value=st.integers(0, 99),
        tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
    )
    def set(self, key: str, value: int, tags: list[str]) -> None:
        # A value written again carries only its new tags. An index still listing the key
        # under an old tag over-invalidates (a miss, allowed here); an evicted one does not.
        assert self.cache.set(key, value, 60, tags=tags) is True
        for members in self.model.members.values():
            members.discard(key)
        self.model.set(key, value, tags)

    @rule(family=st.sampled_from(FAMILIES))
    def invalidate_pattern(self, family: str) -> None:
        # stale tagged entries still hold bytes: the count may differ, never what is served
        self.cache.invalidate_pattern(f"{family}*")
        self.model.delete_family(family)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        # a stale tagged entry still holds bytes: its delete may count it, the model does not
        self.cache.delete(key)
        self.model.cascade([f"k:{key}"])

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    def delete_many(self, keys: list[str]) -> None:
        self.cache.delete_many(keys)
        self.model.cascade([f"k:{key}" for key in keys])

    @invariant()
    def cache_agrees_with_model(self) -> None:
        found = self.cache.get_many(list(KEYS))
        batch = self.cache.batch().get_many(list(KEYS)).execute()[0]
        for key in KEYS:
            for value in (found.get(key), batch.get(key), self.cache.get(key)):
                assert value is None or value == self.model.live.get(key), (key, value)


def test_tag_invalidations_hold_when_indexes_and_stamps_are_evicted(
    backend: FullBackend,
) -> None:
    machine = type("EvictingMachine", (EvictingInvalidations,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=HYPOTHESIS_EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
