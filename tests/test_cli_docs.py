"""The CLI page of the docs and the ``--help`` text tell the same, complete story."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from kirocache._cli import main
from kirocache._cli.failures import FAILED, INTERRUPTED, OK, UNREACHABLE, USAGE
from kirocache._cli.parser import COMMANDS, build_parser

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")


def section(name: str) -> str:
    match = re.search(rf"^### {name}\b.*?(?=^##)", PAGE, re.MULTILINE | re.DOTALL)
    assert match, f"docs/cli.md has no section for {name!r}"
    return match[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_a_section_with_an_example(name: str) -> None:
    assert re.search(rf"kirocache .*\b{name}\b", section(name))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_a_command_is_documented(name: str) -> None:
    parser = build_parser("0")
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    command = commands.choices[name]
    for action in command._actions:
        for option in action.option_strings:
            if option.startswith("--") and action.help != argparse.SUPPRESS:
                assert f"`{option}" in PAGE, f"{name} {option} is not in docs/cli.md"


def test_the_exit_codes_are_the_documented_ones() -> None:
    table = PAGE.split("## Exit codes", 1)[1]
    for code in (OK, FAILED, USAGE, UNREACHABLE, INTERRUPTED):
        assert re.search(rf"^\| {code} \|", table, re.MULTILINE)
    out = build_parser("0").format_help()
    for code in (OK, FAILED, USAGE, UNREACHABLE, INTERRUPTED):
        assert re.search(rf"^  {code} +\S", out, re.MULTILINE)


def test_the_environment_table_names_every_variable_of_the_help() -> None:
    help_text = build_parser("0").format_help()
    names = set(re.findall(r"\b(?:REDIS|KIROCACHE)_[A-Z_]+\b", help_text))
    assert names >= {"REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "KIROCACHE_ADMIN_TOKEN"}
    table = PAGE.split("## Environment", 1)[1]
    for name in names:
        assert f"| `{name}` |" in table


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in COMMANDS]])
def test_help_is_plain_text_with_examples(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kirocache")
    assert "examples:" in out
    for markup in ("``", ":class:", ":func:", ":mod:", "\n.. "):
        assert markup not in out
