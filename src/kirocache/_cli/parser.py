"""The command line: commands, options and the plain-text help with examples."""

from __future__ import annotations

import argparse
from typing import NoReturn

from kirocache._cli.failures import USAGE, CliError

__all__ = ["COMMANDS", "build_parser"]

DESCRIPTION = """\
Look at and act on a kirocache cache from the shell.

The cache is the one your application uses: --url, else REDIS_URL (with
REDIS_PASSWORD and REDIS_DB, as for the library), else memory:// (an empty
cache in this process, to try the commands). --app module:attribute uses the
application's own Cache object instead, with its key prefix and event rules.
The options below may come before or after the command."""

EPILOG = """\
examples:
  kirocache ping
  kirocache --url redis://localhost:6379/0 --key-prefix myapp: stats
  kirocache keys 'user:profile:*' --limit 20
  kirocache inspect user:profile:42 --json
  kirocache invalidate --tag user:42 --key user:profile:42
  kirocache invalidate --pattern 'search:*'
  kirocache --app myapp.cache:cache invalidate --event user.updated --entity-id 42
  kirocache health --json
  KIROCACHE_ADMIN_TOKEN=... kirocache serve --port 8000

environment:
  REDIS_URL, REDIS_PASSWORD, REDIS_DB   where the cache is (as for the library)
  KIROCACHE_ADMIN_TOKEN                 admin-scope bearer token of 'serve'
  KIROCACHE_READ_TOKEN                  read-scope bearer token of 'serve'

exit codes:
  0    done (health: healthy or degraded)
  1    the operation failed or found a problem: unhealthy, no such key,
       a command the server refused, a cleanup with failed calls
  2    usage or configuration error: unknown command or option, bad URL,
       key or pattern, no token for serve, a missing extra
  3    the backend is unreachable or refused the connection: down, wrong
       host or port, timeout, TLS or authentication failure
  130  interrupted (Ctrl-C)

'kirocache COMMAND --help' shows each command's options and examples."""

# name: (summary, details and examples)
COMMANDS: dict[str, tuple[str, str]] = {
    "ping": (
        "check that the backend answers, with the round-trip time",
        ("examples:\n  kirocache ping\n  kirocache ping --json"),
    ),
    "stats": (
        "the backend's own figures: keys, memory, clients, hits, evictions",
        "examples:\n  kirocache stats\n  kirocache stats --json | jq .used_memory",
    ),
    "health": (
        "health check: status, issues and what to do about them",
        (
            "Exit code 0 when healthy or degraded (1 with --fail-on degraded), 1 when\n"
            "unhealthy, 3 when the backend does not answer.\n\n"
            "examples:\n  kirocache health\n  kirocache health --fail-on degraded --json"
        ),
    ),
    "alerts": (
        "the alert rules evaluated now: which fire, with their severity",
        (
            "Exit code 0 unless --fail-on is given and an alert of that severity or\n"
            "higher fires (1); 3 when the backend does not answer.\n\n"
            "examples:\n  kirocache alerts\n  kirocache alerts --fail-on high --json"
        ),
    ),
    "keys": (
        "list keys matching a glob pattern (SCAN, under the key prefix)",
        (
            "Keys are shown without the key prefix, one per line. SCAN walks the key\n"
            "space in pages, never blocking the server as KEYS would.\n\n"
            "examples:\n  kirocache keys\n  kirocache keys 'user:profile:*' --limit 0 | wc -l\n"
            "  kirocache keys 'search:*' --json"
        ),
    ),
    "inspect": (
        "one entry's TTL, size, format and tags (never its value)",
        (
            "Exit code 1 when there is no entry at the key.\n\n"
            "examples:\n  kirocache inspect user:profile:42\n"
            "  kirocache inspect user:profile:42 --json"
        ),
    ),
    "invalidate": (
        "invalidate keys, tags, a pattern, a namespace or an event",
        (
            "Each option may be given several times; they run in the order listed here.\n"
            "Keys and tags leave tombstones, so a value computed before is not stored\n"
            "after. A pattern delete walks the keys by SCAN in batches and shows its\n"
            "progress on a terminal. An event needs the application's rules: --app.\n\n"
            "examples:\n"
            "  kirocache invalidate --key user:profile:42\n"
            "  kirocache invalidate --tag user:42 --tag user:7\n"
            "  kirocache invalidate --pattern 'search:*' --batch-size 1000\n"
            "  kirocache invalidate --namespace recommendations:\n"
            "  kirocache --app myapp.cache:cache invalidate --event user.profile.updated \\\n"
            "      --entity-id 42 --field course_id=py101"
        ),
    ),
    "bump": (
        "invalidate a bumpable namespace at once by raising its generation",
        (
            "Only for namespaces the application made with bumpable=True; for any\n"
            "other, use 'kirocache invalidate --namespace PREFIX'.\n\n"
            "examples:\n  kirocache bump learning:path:"
        ),
    ),
    "cleanup": (
        "run one cleanup: expired entries, dead tag and dependency index entries",
        (
            "Exit code 1 when some backend calls failed (the run goes on past them).\n\n"
            "examples:\n  kirocache cleanup\n  kirocache cleanup --json"
        ),
    ),
    "serve": (
        "run the admin API and dashboard on uvicorn (needs the admin extra)",
        (
            "Tokens come from the environment only: KIROCACHE_ADMIN_TOKEN (admin scope:\n"
            "invalidate, cleanup, reveal) and KIROCACHE_READ_TOKEN (read scope). Without\n"
            "either, serve refuses to start unless --allow-anonymous-read is given.\n"
            "Install the extra with: pip install 'kirocache[admin]'\n\n"
            "examples:\n"
            "  KIROCACHE_ADMIN_TOKEN=$(cat /run/secrets/kc) kirocache serve\n"
            "  kirocache serve --host 0.0.0.0 --port 9000 --allow-anonymous-read"
        ),
    ),
    "demo": (
        "a short tour of the library, in memory or on Redis",
        (
            "It works under its own key prefix, kirocache-demo:, and deletes only keys\n"
            "there.\n\nexamples:\n  kirocache demo\n"
            "  kirocache --url redis://localhost:6379/15 demo"
        ),
    ),
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and an exception, not an exit."""

    def error(self, message: str) -> NoReturn:
        """Raise the usage error as a ``CliError`` (exit code 2)."""
        raise CliError(USAGE, f"{message} (see '{self.prog} --help')")


def _add_common(parser: argparse.ArgumentParser, *, under_command: bool) -> None:
    """The options every command takes, before or after its name.

    Under a command their default is "not given", so a value given before the command
    is kept.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if under_command else value

    off = default(False)  # noqa: FBT003 - a store_true flag's default

    group = parser.add_argument_group("cache and output")
    group.add_argument(
        "--url", default=default(None), help="cache URL (redis://, rediss://, unix://, memory://)"
    )
    group.add_argument(
        "--key-prefix", default=default(None), metavar="PREFIX", help="the cache's key prefix"
    )
    group.add_argument(
        "--app",
        default=default(None),
        metavar="MODULE:ATTR",
        help="use the application's Cache object (or a function returning it)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(None),
        metavar="SECONDS",
        help="deadline of each Redis call: connect, handshake and reply (default 0.25 s)",
    )
    group.add_argument("--json", action="store_true", default=off, help="print data as JSON")
    group.add_argument("-q", "--quiet", action="store_true", default=off, help="no progress line")
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=off,
        help="log the library's warnings and debug lines on stderr",
    )


def _add_options(name: str, command: argparse.ArgumentParser) -> None:
    """The options of one command."""
    if name == "health":
        command.add_argument(
            "--fail-on",
            choices=("degraded", "unhealthy"),
            default="unhealthy",
            help="the status that makes the exit code 1 (default: unhealthy)",
        )
    elif name == "alerts":
        command.add_argument(
            "--fail-on",
            choices=("low", "medium", "high", "critical"),
            default=None,
            help="exit code 1 when an alert of this severity or higher fires",
        )
    elif name == "keys":
        command.add_argument("pattern", nargs="?", default="*", help="glob (default: *)")
        command.add_argument(
            "--limit", type=int, default=1000, help="stop after this many keys; 0: all (1000)"
        )
        command.add_argument(
            "--count", type=int, default=500, help="keys per SCAN page, a hint (500)"
        )
        command.add_argument("--cursor", type=int, default=0, help="go on from this cursor")
    elif name == "inspect":
        command.add_argument("key", help="the key, without the key prefix")
    elif name == "invalidate":
        _add_invalidate(command)
    elif name == "bump":
        command.add_argument("namespace", help="the namespace prefix, e.g. learning:path:")
    elif name == "serve":
        command.add_argument("--host", default="127.0.0.1", help="address (127.0.0.1)")
        command.add_argument("--port", type=int, default=8000, help="port (8000)")
        command.add_argument(
            "--allow-anonymous-read",
            action="store_true",
            help="serve the read-only routes and the dashboard without a token",
        )
    elif name == "demo":
        command.add_argument("--redis-url", default=None, help=argparse.SUPPRESS)


def _add_invalidate(command: argparse.ArgumentParser) -> None:
    add = command.add_argument
    add("--key", action="append", default=[], help="a key (and its dependents)")
    add("--tag", action="append", default=[], help="every entry carrying this tag")
    add("--pattern", action="append", default=[], help="every key matching this glob")
    add("--namespace", action="append", default=[], metavar="PREFIX", help="a whole namespace")
    add("--event", metavar="TYPE", help="an event, through the application's rules (--app)")
    add("--entity-id", metavar="ID", help="the event's entity_id")
    add("--user-id", metavar="ID", help="the event's user_id")
    add("--field", action="append", default=[], metavar="NAME=VALUE", help="an event field")
    add("--batch-size", type=int, default=500, help="keys per batch of a pattern delete (500)")


def build_parser(version: str) -> Parser:
    """The ``kirocache`` parser with every command.

    Args:
        version: What ``--version`` prints after the program name.
    """
    parser = Parser(
        prog="kirocache",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kirocache {version}")
    _add_common(parser, under_command=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (summary, details) in COMMANDS.items():
        command = commands.add_parser(
            name,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}.\n\n{details}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_options(name, command)
        _add_common(command, under_command=True)
    return parser
