"""The cache a command works on: from ``--url`` or the environment, or the application's own."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any
from urllib.parse import urlsplit

from kirocache import Cache
from kirocache._cli.failures import USAGE, CliError
from kirocache.backends import mask_url

__all__ = ["describe_target", "load_app_cache", "open_cache", "target_url"]

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def target_url(args: argparse.Namespace) -> str:
    """The URL the command works on: ``--url``, else ``REDIS_URL``, else ``memory://``."""
    url: str | None = args.url
    if url is None:
        # as the library reads it (an empty variable is unset); Cache.from_url checks it
        url = os.environ.get("REDIS_URL") or None
    return url or "memory://"


def describe_target(args: argparse.Namespace, cache: Cache) -> str:
    """Where the command works, safe to print: the masked URL or the ``--app`` target."""
    if args.app:
        return f"{args.app} ({cache!r})"
    return mask_url(target_url(args))


def open_cache(args: argparse.Namespace, *, strict: bool = True) -> Cache:
    """The cache of ``--app``, or one built from ``--url`` / the environment.

    Args:
        args: The parsed command line.
        strict: Raise on backend faults (``on_error="raise"``) with no circuit breaker, so
            a command either does what it says or fails with an exit code. ``serve`` runs
            a long-lived cache with the library's defaults (fail open, a breaker) instead.

    Returns:
        The cache; the caller closes it.

    Raises:
        CliError: ``--app`` cannot be loaded or is combined with ``--url``/``--key-prefix``.
        ConfigurationError: The URL, an environment variable or an option is invalid.
    """
    if args.app:
        if args.url is not None or args.key_prefix is not None:
            msg = "--app brings its own cache: drop --url and --key-prefix"
            raise CliError(USAGE, msg)
        return load_app_cache(args.app)
    url = target_url(args)
    settings: dict[str, Any] = {"on_error": "raise", "breaker": None} if strict else {}
    if args.key_prefix is not None:
        settings["key_prefix"] = args.key_prefix
    if args.timeout is not None and urlsplit(url).scheme in _REDIS_SCHEMES:
        settings["timeout"] = args.timeout  # one deadline per call: connect, handshake, reply
    # None: the library reads REDIS_URL itself and names the variable in its errors;
    # REDIS_PASSWORD and REDIS_DB apply as they do for the application
    return Cache.from_url(args.url, **settings)


def load_app_cache(target: str) -> Cache:
    """Import ``module:attribute`` (as uvicorn does for apps) and return that ``Cache``.

    The attribute may also be a function that returns the cache. The current directory
    is searched first, so ``--app myapp.cache:cache`` works from the project's root.

    Raises:
        CliError: The target is malformed, cannot be imported or is not a ``Cache``.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        msg = f"--app must be module:attribute, e.g. myapp.cache:cache, got {target!r}"
        raise CliError(USAGE, msg)
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        found: object = importlib.import_module(module_name)
        for name in attribute.split("."):
            found = getattr(found, name)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot load --app {target!r}: {type(exc).__name__}: {exc}"
        raise CliError(USAGE, msg) from None
    except Exception as exc:  # noqa: BLE001 - the application's module failed as it loaded
        msg = f"importing {module_name!r} for --app failed: {type(exc).__name__}: {exc}"
        raise CliError(USAGE, msg) from None
    finally:
        if added:
            sys.path.remove(cwd)
    if callable(found) and not isinstance(found, Cache):
        try:
            found = found()  # a factory, as with uvicorn's --factory
        except Exception as exc:  # noqa: BLE001 - the application's factory failed
            msg = f"calling --app {target!r} failed: {type(exc).__name__}: {exc}"
            raise CliError(USAGE, msg) from None
    if not isinstance(found, Cache):
        msg = f"--app {target!r} is a {type(found).__name__}, not a kirocache Cache"
        raise CliError(USAGE, msg)
    return found
