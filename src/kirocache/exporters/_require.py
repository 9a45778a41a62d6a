"""Import an optional library, or say which extra provides it."""

from __future__ import annotations

import importlib
from types import ModuleType

from kirocache.exceptions import ConfigurationError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, raising ``ConfigurationError`` naming ``extra`` when it is missing.

    Raises:
        ConfigurationError: The library is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"{module} is not installed; install it with: pip install 'kirocache[{extra}]'"
        raise ConfigurationError(msg) from exc
