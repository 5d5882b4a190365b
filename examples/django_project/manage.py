#!/usr/bin/env python
"""Django's command-line utility for the example project.

    python examples/django_project/manage.py runserver 8000      (from the repository root, or anywhere)

Environment variables:
    ALERTING_BROKER_URL   the Redis the alerts go to (default redis://localhost:6379/0); run a worker on it:
                          celery -A alerting.worker worker -Q alerts   (with ALERTING_SMTP_* / ALERTING_MAIL_*)
    ALERTING_QUEUE        the queue the worker consumes (default alerts)
    DJANGO_DEBUG          1 for Django's debug pages (default 0)
    DJANGO_ALLOWED_HOSTS  comma-separated (default localhost,127.0.0.1,[::1])
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The project is addressed as examples.django_project, as in the tests: the repository root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
