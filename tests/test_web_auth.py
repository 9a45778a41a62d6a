"""Tokens, scopes and the token buckets of the admin app, without HTTP."""

from __future__ import annotations

import pytest

from kirocache import ConfigurationError
from kirocache.testing import ManualClock
from kirocache.web import RateLimiter, Token, Tokens

SECRET = "a-secret-of-more-than-16"


def test_a_token_never_shows_its_secret() -> None:
    token = Token("ci", SECRET, "admin")
    assert SECRET not in repr(token)
    assert SECRET not in repr(Tokens([token], allow_anonymous_read=False).names)
    for bad in ("tiny-canary", "has a space in it!!", "nön-ascii-secret-123"):
        with pytest.raises(ConfigurationError) as refused:
            Token("ci", bad, "admin")
        assert bad not in str(refused.value)


def test_the_header_is_matched_to_its_token_and_scope() -> None:
    tokens = Tokens(
        [Token("admin", SECRET, "admin"), Token("read", SECRET + "-r", "read")],
        allow_anonymous_read=False,
    )
    assert tokens.identify(f"Bearer {SECRET}") == ("admin", "admin")
    assert tokens.identify(f"bearer {SECRET}-r") == ("read", "read")
    for refused in (None, SECRET, f"Basic {SECRET}", f"Bearer {SECRET}x", "Bearer ", "Bearer"):
        assert tokens.identify(refused) is None
    anonymous = Tokens([], allow_anonymous_read=True)
    assert anonymous.identify(None) == ("anonymous", "read")
    assert anonymous.identify(f"Bearer {SECRET}") is None


def test_token_names_are_unique() -> None:
    with pytest.raises(ConfigurationError, match="unique"):
        Tokens(
            [Token("a", SECRET, "read"), Token("a", SECRET + "2", "read")],
            allow_anonymous_read=False,
        )


def test_a_bucket_allows_a_burst_then_its_rate() -> None:
    clock = ManualClock()
    limiter = RateLimiter(2, 0.5, clock.monotonic)
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(2.0)
    assert limiter.take("b") == 0.0
    clock.advance(2)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_many_callers_do_not_grow_the_buckets_without_bound() -> None:
    clock = ManualClock()
    limiter = RateLimiter(1, 1.0, clock.monotonic)
    for i in range(5000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
        clock.advance(0.01)
    assert len(limiter) <= 4096
    assert limiter.take("10.0.19.135") > 0  # a recent caller is still remembered
