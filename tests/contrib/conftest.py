"""Fixtures for the framework integrations: Django configured once, per-test cache settings."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from contrib.contrib_support import EXAMPLES, SECRET_KEY, custom_key_func, django_cache


@pytest.fixture(scope="session")
def django_settings() -> None:
    """Django configured for this process, once (settings.configure cannot be undone).

    Tests change the parts they need with ``override_settings``, which restores them.
    The example project's package is importable, so its urls and views can be used.
    """
    import django
    from django.conf import settings

    if str(EXAMPLES / "django_project") not in sys.path:
        sys.path.insert(0, str(EXAMPLES / "django_project"))
    if not settings.configured:
        settings.configure(
            SECRET_KEY=SECRET_KEY,
            DEBUG=False,
            ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=["django.contrib.sessions"],
            DATABASES={},
            CACHES={"default": django_cache("memory://")},
            USE_TZ=True,
        )
        django.setup()


@pytest.fixture(
    params=[pytest.param("memory"), pytest.param("redis", marks=pytest.mark.real_redis)]
)
def location(request: pytest.FixtureRequest) -> str:
    """The kirocache URL a test's ``CACHES`` point at: memory, then the real redis-server."""
    if request.param == "memory":
        return f"memory://t{uuid.uuid4().hex[:10]}"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def django_caches(django_settings: None, location: str) -> Iterator[Any]:
    """``django.core.cache.caches`` with Django's test aliases on one kirocache location.

    ``default``; ``prefix`` (a ``KEY_PREFIX``); ``v2`` (``VERSION`` 2); ``custom_key`` (a
    ``KEY_FUNCTION``) -- all sharing one kirocache key prefix, as aliases on one Redis
    database would. Every alias is cleared afterwards.
    """
    from django.core.cache import caches
    from django.test import override_settings

    shared = {"key_prefix": f"djt{uuid.uuid4().hex[:10]}:"}
    setting = {
        "default": django_cache(location, OPTIONS=dict(shared)),
        "prefix": django_cache(location, KEY_PREFIX="cacheprefix", OPTIONS=dict(shared)),
        "v2": django_cache(location, VERSION=2, OPTIONS=dict(shared)),
        "custom_key": django_cache(location, KEY_FUNCTION=custom_key_func, OPTIONS=dict(shared)),
    }
    with override_settings(CACHES=setting):
        try:
            yield caches
        finally:
            for alias in setting:
                caches[alias].clear()
