"""The worker's settings are documented where users look, with the defaults the code uses: the table in
README.md ("Settings" -> "The worker"), worker/.env.example, and alerting.consumer.settings.DEFAULTS cannot drift apart.

(They did: the code treats an empty ALERTING_SMTP_TLS_VERIFY as the default, true; both documents said false.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from alerting.consumer.settings import DEFAULTS, load

ROOT = Path(__file__).resolve().parents[2]


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def readme_table() -> dict[str, str]:
    """variable -> default cell, from the worker table of README.md; "`A` / `_B`" rows give one entry each."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### The worker (environment variables)", 1)[1].split("\n#", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`ALERTING_"):
            continue
        names = re.findall(r"`([A-Z_]+)`", cells[0])
        base = names[0]
        full = [base] + [_expand(base, n) for n in names[1:]]
        defaults = [d.strip() for d in cells[1].split(" / ")] if len(full) > 1 else [cells[1]]
        if len(defaults) != len(full):
            defaults = [cells[1]] * len(full)
        table.update(zip(full, defaults, strict=True))
    return table


def _expand(base: str, short: str) -> str:
    """``_PORT`` after ``ALERTING_SMTP_HOST`` is ALERTING_SMTP_PORT; ``_MAX`` after ``ALERTING_RETRY_BACKOFF`` is
    ALERTING_RETRY_BACKOFF_MAX: the sibling if there is one, else the extension."""
    if not short.startswith("_"):
        return short
    sibling = re.sub(r"_[A-Z]+$", "", base) + short
    return sibling if sibling in DEFAULTS or base + short not in DEFAULTS else base + short


def env_example() -> dict[str, tuple[str, str]]:
    """variable -> (value, the comment above it), from worker/.env.example."""
    entries: dict[str, tuple[str, str]] = {}
    comment: list[str] = []
    for line in (ROOT / "worker" / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("# "))
        elif "=" in line:
            name, value = line.split("=", 1)
            entries[name.strip()] = (value.strip(), " ".join(comment))
            comment = []
        else:
            comment = []
    return entries


def test_the_code_lists_every_variable_it_reads() -> None:
    environment = RecordingEnv({"ALERTING_MAIL_TO": "ops@example.com", "ALERTING_MAIL_FROM": "a@example.com"})
    load(environment)
    assert environment.read == set(DEFAULTS)


@pytest.mark.parametrize("variable", sorted(DEFAULTS))
def test_every_variable_is_in_the_readme_table_with_the_codes_default(variable: str) -> None:
    table = readme_table()
    assert variable in table, f"{variable} is missing from README.md's worker settings table"
    default = DEFAULTS[variable]
    if default:
        assert f"`{default}`" in table[variable], f"README.md says {table[variable]!r}; the code uses {default!r}"


@pytest.mark.parametrize("variable", sorted(DEFAULTS))
def test_every_variable_is_in_the_env_example_with_the_codes_default(variable: str) -> None:
    entries = env_example()
    assert variable in entries, f"{variable} is missing from worker/.env.example"
    value, comment = entries[variable]
    if "development" not in comment:  # the file marks the values it sets for development
        assert value == DEFAULTS[variable], (
            f"worker/.env.example sets {value!r}; the code's default is {DEFAULTS[variable]!r}"
        )


def test_the_documents_list_no_variable_the_code_does_not_read() -> None:
    assert set(readme_table()) - set(DEFAULTS) == set()
    assert set(env_example()) - set(DEFAULTS) == set()


def test_an_empty_tls_verify_means_the_default_in_the_code_and_in_the_docs() -> None:
    assert load({"ALERTING_MAIL_TO": "o@example.com", "ALERTING_MAIL_FROM": "a@example.com",
                 "ALERTING_SMTP_TLS_VERIFY": ""}).smtp.verify is True  # fmt: skip
    _, comment = env_example()["ALERTING_SMTP_TLS_VERIFY"]
    worker_readme = (ROOT / "worker" / "README.md").read_text(encoding="utf-8")
    for text in (comment, worker_readme):
        assert not re.search(r"empty[^.]*(means|counts as) false", text, re.IGNORECASE), text
