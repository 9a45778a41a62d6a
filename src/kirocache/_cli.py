"""The ``kirocache`` command: ``kirocache demo`` tours the library on a learning platform."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from kirocache._ring.demo import demo

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kirocache`` command."""
    parser = argparse.ArgumentParser(prog="kirocache", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tour = commands.add_parser("demo", help="a short tour on the in-memory backend or Redis")
    tour.add_argument(
        "--redis-url", default=None, help="run against Redis at this URL instead of memory"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    return demo(args.redis_url or "memory://")
