"""Exit codes, and every failure turned into one line on stderr with no secret in it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote, urlsplit

from kirocache import (
    BackendError,
    CommandError,
    ConfigurationError,
    InvalidKeyError,
    InvalidTTLError,
    KirocacheError,
)
from kirocache.backends import mask_url

__all__ = [
    "FAILED",
    "INTERRUPTED",
    "OK",
    "SECRET_VARIABLES",
    "UNREACHABLE",
    "USAGE",
    "CliError",
    "Redactor",
    "describe",
    "exit_code",
]

OK: Final = 0
"""The command did what it was asked; a check found the cache healthy."""
FAILED: Final = 1
"""The operation failed or found a problem: the server refused a command, a check is
unhealthy, a key is not there, a cleanup had failed calls."""
USAGE: Final = 2
"""The command line or the configuration is wrong: unknown command or option, bad URL,
bad key or pattern, no token for ``serve``, a missing extra."""
UNREACHABLE: Final = 3
"""The backend could not be reached or refused the connection: down, wrong host or port,
a timeout, TLS or authentication failure."""
INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (SIGINT), as shells report it."""

# Environment variables whose values are secrets, masked in every message the CLI prints.
SECRET_VARIABLES: Final = ("REDIS_PASSWORD", "KIROCACHE_ADMIN_TOKEN", "KIROCACHE_READ_TOKEN")
_MASK: Final = "***"


class CliError(Exception):
    """A failure the CLI reports in one line and ends with ``code``.

    Args:
        code: The exit code.
        message: What went wrong and, where it helps, what to do.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def exit_code(exc: BaseException) -> int:
    """The exit code a library error stands for.

    Args:
        exc: What a command raised.

    Returns:
        ``USAGE`` for a mistake in what was asked, ``UNREACHABLE`` for an unavailable
        backend, ``FAILED`` for anything else (a refused command included).
    """
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, (ConfigurationError, InvalidKeyError, InvalidTTLError)):
        return USAGE
    if isinstance(exc, BackendError) and not isinstance(exc, CommandError) and exc.outage:
        return UNREACHABLE
    return FAILED


class Redactor:
    """Masks known secrets (passwords, tokens) and URL passwords in a message.

    The library's messages already mask URLs; this is the second line of defence for text
    the CLI did not write (an exception from an application's module, a driver's message).

    Args:
        urls: URLs whose passwords are secrets (the ``--url`` given, ``REDIS_URL``).
        secrets: Other secret values.
    """

    def __init__(self, urls: Iterable[str | None] = (), secrets: Iterable[str | None] = ()) -> None:
        self.urls = [url for url in urls if url]
        found = [value for value in secrets if value]
        for url in self.urls:
            found += _url_secrets(url)
        # longest first, so a secret that contains another is masked whole
        self.secrets = sorted({value for value in found if len(value) >= 3}, key=len, reverse=True)

    @classmethod
    def from_environment(cls, url: str | None, more: Iterable[str] = ()) -> Redactor:
        """One for ``url`` (and ``more`` URLs) and the secrets of the environment.

        Args:
            url: The URL given on the command line, if any.
            more: Other URLs whose passwords are secrets.

        Returns:
            A redactor of those URLs, ``REDIS_URL``, ``REDIS_PASSWORD`` and the tokens.
        """
        values = [os.environ.get(name) for name in SECRET_VARIABLES]
        return cls([url, os.environ.get("REDIS_URL"), *more], values)

    def __call__(self, text: str) -> str:
        """``text`` on one line, with URLs masked and every known secret replaced."""
        for url in self.urls:
            text = text.replace(url, mask_url(url))
        for value in self.secrets:
            text = text.replace(value, _MASK)
        return " ".join(text.split())


def _url_secrets(url: str) -> list[str]:
    """The password of ``url``, as written and decoded (``user:p%40ss@`` and ``p@ss``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    query = [
        item.partition("=")[2] for item in parts.query.split("&") if item.startswith("password=")
    ]
    found = [value for value in [password, *query] if value]
    return found + [unquote(value) for value in found]


def describe(exc: BaseException) -> str:
    """The one-line message for an exception raised by a command (not yet redacted)."""
    if isinstance(exc, CliError):
        return exc.message
    if isinstance(exc, KirocacheError):
        text = str(exc)
        if exit_code(exc) == UNREACHABLE:
            return f"backend unavailable: {text}"
        return text
    return f"unexpected {type(exc).__name__}: {exc}"
