"""``kirocache serve`` (the admin app on uvicorn) and ``kirocache demo`` (the tour)."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket

from kirocache import BackendError
from kirocache._cli.failures import FAILED, USAGE, CliError
from kirocache._cli.output import echo
from kirocache._cli.settings import describe_target, open_cache, target_url

__all__ = ["ADMIN_TOKEN", "READ_TOKEN", "run_demo", "serve"]

ADMIN_TOKEN = "KIROCACHE_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
READ_TOKEN = "KIROCACHE_READ_TOKEN"  # noqa: S105 - the variable's name, not a secret
_EXTRA = "pip install 'kirocache[admin]'"


def _check_port(host: str, port: int) -> None:
    """Fail in one line now, rather than in uvicorn's log, when the address is taken."""
    if not 0 < port < 65536:
        raise CliError(USAGE, f"--port must be between 1 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CliError(USAGE, f"--host {host!r} is not an address to listen on: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise CliError(FAILED, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(args: argparse.Namespace) -> int:
    """Run the admin app (API and dashboard) on uvicorn until stopped (SIGINT or SIGTERM).

    The tokens come from the environment only (a command line is visible to every user of
    the machine): ``KIROCACHE_ADMIN_TOKEN`` for the admin scope, ``KIROCACHE_READ_TOKEN``
    for the read scope.
    """
    if not (os.environ.get(ADMIN_TOKEN) or os.environ.get(READ_TOKEN) or args.allow_anonymous_read):
        msg = (
            f"serve refuses to start without a token: set {ADMIN_TOKEN} (and {READ_TOKEN} "
            "for read-only clients), or pass --allow-anonymous-read"
        )
        raise CliError(USAGE, msg)
    try:
        import uvicorn

        from kirocache.web import admin_app_from_env
    except ImportError as exc:
        missing = exc.name or "a dependency"
        msg = f"serve needs the admin extra ({missing} is not installed): {_EXTRA}"
        raise CliError(USAGE, msg) from None
    _check_port(args.host, args.port)
    cache = open_cache(args, strict=False)
    try:
        app = admin_app_from_env(cache, allow_anonymous_read=args.allow_anonymous_read)
        where = describe_target(args, cache)
        address = f"http://{args.host}:{args.port}/"
        echo(f"kirocache: admin app for {where} on {address} (Ctrl-C stops)", err=True)
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning" if args.quiet else "info",
            server_header=False,
        )
    finally:
        with contextlib.suppress(BackendError):
            cache.close()
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The tour of the library, on memory or on the Redis of ``--url`` / ``REDIS_URL``.

    It works under its own key prefix, ``kirocache-demo:``, and deletes only keys there.
    """
    from kirocache._ring.demo import demo

    if args.app or args.key_prefix is not None:
        msg = "demo works under its own key prefix 'kirocache-demo:': drop --app and --key-prefix"
        raise CliError(USAGE, msg)
    if args.redis_url is not None:  # the option of earlier versions
        args.url = args.redis_url
    url = target_url(args)
    cache = open_cache(args)
    try:
        cache.ping()  # unreachable: exit 3 with one line, before the tour prints anything
    finally:
        with contextlib.suppress(BackendError):
            cache.close()
    return demo(url)
