"""Developer sessions: tests, lint, typecheck, docs and (on request) bench."""

from __future__ import annotations

import nox

# The first entry is the default; `nox -s tests` runs every listed interpreter it finds and
# `nox -s tests-3.12` (or `--force-python 3.13` on any session) picks one.
PYTHONS = ["3.11", "3.10", "3.12", "3.13"]
DEFAULT_PYTHON = PYTHONS[0]

nox.options.sessions = [f"tests-{DEFAULT_PYTHON}", "lint", "typecheck", "docs"]
nox.options.reuse_venv = "yes"


def install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage (extra arguments go to pytest).

    It runs on pytest-xdist workers, two a core (pyproject's addopts); ``nox -s tests -- -n 0``
    runs it in one process.
    """
    install(session)
    session.run(
        "pytest",
        "--cov",
        "--cov-branch",
        "--cov-report=term-missing",
        *session.posargs,
    )


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """Check the code with ruff, and check that it is formatted."""
    install(session)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check the package and the typing tests with mypy --strict."""
    install(session)
    session.run("mypy", "--strict", "src", "tests/typing", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    install(session)
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """Time kirocache against its peers, then write the ratio table, its plot and the docs page.

    Extra arguments go to pytest (``nox -s bench -- -k hit``); with them, only
    benchmarks/results/ is written and docs/performance.md is left as it is.
    """
    session.install("-e", ".[dev,bench]")
    results = "benchmarks/results/latest.json"
    # -n 0: one process, as timing needs (pytest-benchmark turns itself off under xdist)
    session.run(
        "pytest",
        "benchmarks/",
        "-n",
        "0",
        "--benchmark-only",
        f"--benchmark-json={results}",
        *session.posargs,
    )
    report = ["python", "tools/bench_report.py", results]
    if not session.posargs:
        report += ["--docs", "docs/performance.md"]
    session.run(*report)
