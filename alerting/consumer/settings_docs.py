"""worker/.env.example, written from the settings registry (``alerting.consumer.settings.SETTINGS``). Pure.

``python -m alerting.consumer.settings_docs --env-example > worker/.env.example`` regenerates the file;
tests/unit/test_settings_docs.py fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from alerting.consumer.settings import SETTINGS, Setting
from alerting.shared.config import DEFAULT_QUEUE

WIDTH = 114  # characters per comment line
SECTION_WIDTH = 107

HEADER = f"""\
Environment for an alert worker (celery -A alerting.worker worker -Q {DEFAULT_QUEUE}), set up for development:
a Redis on this machine, and Mailpit from `docker compose up mailpit` (its web UI: http://localhost:8025).
Inside docker-compose.yml the worker reaches them by service name instead: redis://redis:6379/0 and mailpit:1025.

  cp worker/.env.example worker/.env       (then edit it)
  set -a; . worker/.env; set +a; celery -A alerting.worker worker -Q {DEFAULT_QUEUE}

The same file works with `docker run --env-file worker/.env`, once the hosts are ones the container can reach.

One variable per line, comments on their own lines (env files have no inline comments). Values shown are the
defaults unless marked "development". Durations are seconds and may be fractional. A bad value stops the
worker at start with exit code 78 and a message naming the variable.
This file is generated: python -m alerting.consumer.settings_docs --env-example > worker/.env.example"""

#: A section title before the first variable of each group.
SECTIONS = {
    "ALERTING_BROKER_URL": "Redis",
    "ALERTING_SMTP_HOST": "SMTP",
    "ALERTING_MAIL_TO": "Mail",
    "ALERTING_THROTTLE_WINDOW": "Throttling and delivery",
    "ALERTING_METRICS_PORT": "Operations",
}

#: Values the example sets for a development setup instead of the default: (value, why).
DEVELOPMENT = {
    "ALERTING_SMTP_PORT": ("1025", "Mailpit accepts anything on port 1025, no TLS, no authentication."),
    "ALERTING_MAIL_TO": ("ops@example.com", "Mailpit delivers to any address."),
    "ALERTING_MAIL_FROM": ("alerting@example.com", "a fixed sender, whatever this host is called."),
}


def example_value(setting: Setting) -> str:
    """What the example file sets: the default, or the development value (never a secret)."""
    if setting.secret:
        return ""
    return DEVELOPMENT.get(setting.name, (setting.default, ""))[0]


def env_example(settings: Sequence[Setting] = SETTINGS) -> str:
    lines = [_comment(line) if line else "#" for line in HEADER.splitlines()]
    for setting in settings:
        section = SECTIONS.get(setting.name)
        if section:
            lines += ["", f"# --- {section} ".ljust(SECTION_WIDTH, "-")]
        if setting.help:
            lines += _wrapped(setting.help)
        if setting.name in DEVELOPMENT:
            lines += _wrapped(f"development: {DEVELOPMENT[setting.name][1]}")
        lines.append(f"{setting.name}={example_value(setting)}")
    return "\n".join(lines) + "\n"


def _comment(line: str) -> str:
    return f"# {line}"


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent="# ", subsequent_indent="# ", break_long_words=False, break_on_hyphens=False
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alerting.consumer.settings_docs")
    parser.add_argument("--env-example", action="store_true", required=True, help="print worker/.env.example")
    parser.parse_args(argv)
    sys.stdout.write(env_example())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
