"""The project's app: makes Django's default cache kirocache's default too."""

from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """Wires ``@cached`` functions to the cache Django's ``CACHES["default"]`` built."""

    name = "shop"

    def ready(self) -> None:
        """Make ``caches["default"]``'s kirocache ``Cache`` the default of ``@cached``."""
        from django.core.cache import caches

        import kirocache

        kirocache.configure(caches["default"].cache)
