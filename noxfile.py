"""nox sessions: the tests on each Python the package supports, lint and typecheck, each in a venv of its own.

    nox                                  # lint, typecheck, then the tests on every Python 3.10-3.13 found
    nox -s tests-3.12 -- tests/unit      # one Python, one layer (arguments after -- go to pytest)
    nox -s lint typecheck

`make test` stays the everyday command (one venv, the Python of the machine); nox is for "does it work on the
oldest and newest Python we claim" (pyproject.toml's classifiers). A Python that is not installed is skipped,
with a message (an error under CI=true, as nox does by default).
"""

from __future__ import annotations

import nox

# Must match requires-python and the "Programming Language :: Python :: 3.x" classifiers in pyproject.toml.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"  # the dev extra is large; `nox -R`/`--reuse-venv=no` starts afresh


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """pytest (the integration layer starts its own redis-server; it needs redis-server on PATH)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session(python=PYTHONS[-1])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check, as `make lint`."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over alerting and tests, on the oldest Python (the one [tool.mypy] python_version names)."""
    session.install("-e", ".[dev]")
    session.run("mypy")
