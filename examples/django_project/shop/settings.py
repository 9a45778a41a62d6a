"""Settings of the example project: one kirocache CACHES alias serves everything.

``KIROCACHE_URL`` (or ``REDIS_URL``) picks the backend; memory when neither is set.
"""

from __future__ import annotations

import os

# A real project reads this from the environment or a secret store; it also keys the
# signature of every cached value (see docs/how-to/web-frameworks.md).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-do-not-use-in-production-0123")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = ["django.contrib.sessions", "shop"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "shop.urls"
DATABASES: dict[str, dict[str, str]] = {}  # sessions live in the cache: no database
USE_TZ = True

CACHES = {
    "default": {
        "BACKEND": "kirocache.contrib.django.KirocacheCache",
        "LOCATION": os.environ.get("KIROCACHE_URL") or os.environ.get("REDIS_URL") or "memory://",
        "TIMEOUT": 300,
        "KEY_PREFIX": "shop",
        "OPTIONS": {"key_prefix": "django-example:"},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_CACHE_ALIAS = "default"
