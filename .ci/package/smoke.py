"""What a user's code does with the installed package, run by the CLEAN venv's python of .ci/package-test.

    python smoke.py app TOKEN              log one CRITICAL record through alerting.AlertHandler, then exit
    python smoke.py django APP_DIR         GET /boom/ of examples/django_project (a copy in APP_DIR)
    python smoke.py flask APP_DIR          GET /boom of examples/flask_app (a copy in APP_DIR)
    python smoke.py metrics URL NAME...    the worker's /metrics page has these metrics

The broker and queue come from ALERTING_BROKER_URL and ALERTING_QUEUE. Each command first checks that `alerting` is
the installed one, not a source tree that happens to be importable. The alert is published by the handler's flush
when the interpreter exits, as in a short-lived script.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.request
from pathlib import Path


def installed_alerting() -> None:
    import alerting

    where = Path(alerting.__file__).resolve()
    if not where.is_relative_to(Path(sys.prefix).resolve()):
        sys.exit(f"alerting was imported from {where}, not from the venv {sys.prefix}")
    print(f"alerting {alerting.__version__} from {where.parent}")


def app(token: str) -> None:
    from alerting import AlertHandler

    handler = AlertHandler(queue=os.environ["ALERTING_QUEUE"], service="package-test")
    logger = logging.getLogger("package_test")
    logger.addHandler(handler)
    logger.critical("package-test alert %s", token)


def django(app_dir: str) -> None:
    sys.path.insert(0, app_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    import django
    from django.test import Client

    django.setup()
    response = Client(raise_request_exception=False).get("/boom/", HTTP_HOST="localhost")
    if response.status_code != 500:
        sys.exit(f"GET /boom/ answered {response.status_code}, expected 500")
    print("GET /boom/ -> 500")


def flask(app_dir: str) -> None:
    sys.path.insert(0, app_dir)
    from examples.flask_app.app import app

    response = app.test_client().get("/boom")
    if response.status_code != 500:
        sys.exit(f"GET /boom answered {response.status_code}, expected 500")
    print("GET /boom -> 500")


def metrics(url: str, *names: str) -> None:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local http:// URL we were given
        page = response.read().decode()
    lines = [line for line in page.splitlines() if line.startswith("alerting_")]
    missing = [name for name in names if not any(line.startswith(name) for line in lines)]
    if missing:
        sys.exit(f"{url} lacks {missing}; it has:\n" + "\n".join(lines))
    print("\n".join(line for line in lines if line.startswith(names)))


if __name__ == "__main__":
    installed_alerting()
    command, *args = sys.argv[1:]
    {"app": app, "django": django, "flask": flask, "metrics": metrics}[command](*args)
