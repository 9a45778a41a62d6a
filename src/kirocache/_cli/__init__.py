"""The ``kirocache`` command: look at and act on a cache from the shell (``kirocache --help``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version

import kirocache
from kirocache import BackendError, Cache
from kirocache._cli import commands
from kirocache._cli.failures import INTERRUPTED, USAGE, CliError, Redactor, describe, exit_code
from kirocache._cli.invalidate import invalidate
from kirocache._cli.output import echo
from kirocache._cli.parser import COMMANDS, build_parser
from kirocache._cli.serve import run_demo, serve
from kirocache._cli.settings import open_cache

__all__ = ["main"]

_ON_CACHE: dict[str, Callable[[Cache, argparse.Namespace], int]] = {
    "ping": commands.ping,
    "stats": commands.stats,
    "health": commands.health,
    "alerts": commands.alerts,
    "keys": commands.keys,
    "inspect": commands.inspect,
    "invalidate": invalidate,
    "bump": commands.bump,
    "cleanup": commands.cleanup,
}
# These report an unreachable backend in their output (and exit 3) rather than failing first.
_REPORT_UNREACHABLE = frozenset({"ping", "health", "alerts"})


def _version() -> str:
    try:
        return version("kirocache")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return kirocache.__version__


@contextlib.contextmanager
def _library_logging(*, verbose: bool, serving: bool) -> Iterator[None]:
    """Keep the library's log lines off stderr, unless asked (``-v``) or serving.

    A command's failure is one line the CLI writes; the library's own warning about the
    same fault would be a second. The logger is put back afterwards (tests call ``main``
    in-process).
    """
    logger = logging.getLogger("kirocache")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    handler: logging.Handler = logging.NullHandler()
    if verbose or serving:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("kirocache: %(levelname)s %(name)s: %(message)s"))
        logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.handlers = [handler]
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]


def _run(args: argparse.Namespace) -> int:
    command: str | None = args.command
    if command is None:
        msg = f"choose a command: {', '.join(COMMANDS)} (see 'kirocache --help')"
        raise CliError(USAGE, msg)
    if args.json and command in ("serve", "demo"):
        raise CliError(USAGE, f"{command} prints no data: drop --json")
    if command == "serve":
        return serve(args)
    if command == "demo":
        return run_demo(args)
    cache = open_cache(args)
    try:
        if command not in _REPORT_UNREACHABLE:
            cache.ping()  # an unreachable backend: one clear line and exit 3, before any work
        return _ON_CACHE[command](cache, args)
    finally:
        # a backend that fails as it closes changes nothing the command did or reports
        with contextlib.suppress(BackendError):
            cache.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kirocache`` command.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit code: 0 done, 1 failed, 2 usage or configuration error, 3 backend
        unreachable, 130 interrupted (the CLI page of the docs has the details).
    """
    parser = build_parser(_version())
    try:
        args = parser.parse_args(argv)
    except CliError as exc:
        # argparse may quote what was typed: mask any URL or known secret in it
        words = sys.argv[1:] if argv is None else list(argv)
        redact = Redactor.from_environment(None, [w for w in words if "://" in w])
        echo(f"kirocache: {redact(exc.message)}", err=True)
        return exc.code
    except SystemExit as exc:  # --help and --version print and exit 0
        return exc.code if isinstance(exc.code, int) else 0
    redact = Redactor.from_environment(args.url)
    with _library_logging(verbose=args.verbose, serving=args.command == "serve"):
        try:
            code = _run(args)
            sys.stdout.flush()  # here, so a closed pipe is caught below
        except KeyboardInterrupt:
            echo("kirocache: interrupted", err=True)
            return INTERRUPTED
        except BrokenPipeError:
            # stdout went away (`kirocache keys | head`): stop quietly, as other tools do
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except Exception as exc:  # noqa: BLE001 - every failure ends as one line and a code
            with contextlib.suppress(OSError):  # what it printed before it failed comes first
                sys.stdout.flush()
            echo(f"kirocache: {redact(describe(exc))}", err=True)
            return exit_code(exc)
        return code
