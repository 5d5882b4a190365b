"""The worker's settings are declared once, in alerting.consumer.settings.SETTINGS, and documented where users look
with what the code does: worker/.env.example is generated from the registry, and the table in README.md
("Settings" -> "The worker") names every variable with the registry's default and range.

(They drifted once: the code treats an empty ALERTING_SMTP_TLS_VERIFY as the default, true; both documents said false.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from alerting.consumer.settings import BY_NAME, DAY, PORTS, SETTINGS, Setting, load
from alerting.consumer.settings_docs import DEVELOPMENT, env_example

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(BY_NAME)


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


def readme_rows() -> dict[str, tuple[str, str]]:
    """variable -> (default cell, description cell), from the worker table of README.md; "`A` / `_B`" rows give
    one entry each."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### The worker (environment variables)", 1)[1].split("\n#", 1)[0]
    table: dict[str, tuple[str, str]] = {}
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
        table.update((name, (default, cells[2])) for name, default in zip(full, defaults, strict=True))
    return table


def _expand(base: str, short: str) -> str:
    """``_PORT`` after ``ALERTING_SMTP_HOST`` is ALERTING_SMTP_PORT; ``_MAX`` after ``ALERTING_RETRY_BACKOFF`` is
    ALERTING_RETRY_BACKOFF_MAX: the sibling if there is one, else the extension."""
    if not short.startswith("_"):
        return short
    sibling = re.sub(r"_[A-Z]+$", "", base) + short
    return sibling if sibling in BY_NAME or base + short not in BY_NAME else base + short


def committed_env_example() -> str:
    return (ROOT / "worker" / ".env.example").read_text(encoding="utf-8")


def env_values() -> dict[str, str]:
    lines = committed_env_example().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def help_of(setting: Setting) -> str:
    """The entry's help, or that of the entry above it that it shares ("" = covered by the one above)."""
    index = SETTINGS.index(setting)
    while not SETTINGS[index].help:
        index -= 1
    return SETTINGS[index].help


def number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def mentions(text: str, value: float) -> bool:
    """``text`` gives ``value`` as a number (86400, 0.05) or in days (7 days, 1 day)."""
    spellings = [number(value)]
    if value >= DAY and value % DAY == 0:
        spellings.append(f"{int(value // DAY)} day")
    return any(re.search(rf"(?<![\d.]){re.escape(s)}(?!\.?\d)", text) for s in spellings)


def test_the_code_reads_every_variable_of_the_registry_and_no_other() -> None:
    environment = RecordingEnv({"ALERTING_MAIL_TO": "ops@example.com", "ALERTING_MAIL_FROM": "a@example.com"})
    load(environment)
    assert environment.read == set(BY_NAME)
    assert len(BY_NAME) == len(SETTINGS)  # no variable declared twice


def test_the_committed_env_example_is_the_one_generated_from_the_registry() -> None:
    assert committed_env_example() == env_example(), (
        "worker/.env.example is out of date: python -m alerting.consumer.settings_docs --env-example "
        "> worker/.env.example"
    )


def test_the_generator_runs_as_documented() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alerting.consumer.settings_docs", "--env-example"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert result.stdout == committed_env_example()


@pytest.mark.parametrize("variable", NAMES)
def test_the_env_example_sets_each_default_except_the_values_marked_for_development(variable: str) -> None:
    setting, values = BY_NAME[variable], env_values()
    expected = DEVELOPMENT[variable][0] if variable in DEVELOPMENT else setting.default
    assert values[variable] == ("" if setting.secret else expected)


def test_secrets_are_never_given_a_value_in_the_example() -> None:
    secrets = [s.name for s in SETTINGS if s.secret]
    assert secrets == ["ALERTING_SMTP_PASSWORD", "ALERTING_SMTP_PASSWORD_FILE"]
    assert all(env_values()[name] == "" and not BY_NAME[name].default for name in secrets)


@pytest.mark.parametrize("variable", NAMES)
def test_every_variable_is_in_the_readme_table_with_the_codes_default(variable: str) -> None:
    table = readme_rows()
    assert variable in table, f"{variable} is missing from README.md's worker settings table"
    default = BY_NAME[variable].default
    if default:
        assert f"`{default}`" in table[variable][0], f"README.md says {table[variable][0]!r}; the code: {default!r}"


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.range not in (None, PORTS)], ids=lambda s: s.name)
def test_the_readme_and_the_env_example_state_the_range_the_code_enforces(setting: Setting) -> None:
    assert setting.range is not None
    _, description = readme_rows()[setting.name]
    for text in (description, help_of(setting)):
        assert mentions(text, setting.range.maximum), f"{setting.range.maximum:g} not stated in {text!r}"
        if setting.range.minimum > 0:
            assert mentions(text, setting.range.minimum), f"{setting.range.minimum:g} not stated in {text!r}"


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.range is not None], ids=lambda s: s.name)
def test_each_range_is_enforced_at_its_bounds(setting: Setting) -> None:
    assert setting.range is not None
    low, high = setting.range.minimum, setting.range.maximum
    if setting.name == "ALERTING_SUBJECT_PREFIX":
        assert setting.parse(setting, "x" * int(high)) == "x" * int(high)
        with pytest.raises(ValueError, match=setting.name):
            setting.parse(setting, "x" * (int(high) + 1))
        return
    setting.parse(setting, number(high))
    with pytest.raises(ValueError, match=setting.name):
        setting.parse(setting, number(high + 1))
    if setting.range.allow_zero:
        setting.parse(setting, number(low))
    with pytest.raises(ValueError, match=setting.name):
        setting.parse(setting, number(low - 1 if low >= 1 else -1))


def test_the_documents_list_no_variable_the_code_does_not_read() -> None:
    assert set(readme_rows()) - set(BY_NAME) == set()
    assert set(env_values()) - set(BY_NAME) == set()


def test_an_empty_tls_verify_means_the_default_in_the_code_and_in_the_docs() -> None:
    assert load({"ALERTING_MAIL_TO": "o@example.com", "ALERTING_MAIL_FROM": "a@example.com",
                 "ALERTING_SMTP_TLS_VERIFY": ""}).smtp.verify is True  # fmt: skip
    help_text = BY_NAME["ALERTING_SMTP_TLS_VERIFY"].help
    worker_readme = (ROOT / "worker" / "README.md").read_text(encoding="utf-8")
    for text in (help_text, committed_env_example(), worker_readme):
        assert not re.search(r"empty[^.]*(means|counts as) false", text, re.IGNORECASE), text
