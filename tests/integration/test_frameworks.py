"""The Django and Flask examples end to end: a failing request → AlertHandler → Redis → real worker → real SMTP
server, and the email shows the request. Each example runs in its own interpreter, configured only through its
environment, as it would be deployed: Django settings can be configured once per process, and both examples
configure logging at import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import redis

from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import wait_until_settled

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-query-value"

DJANGO_CLIENT = textwrap.dedent(
    """
    import sys

    import django
    from django.test import Client
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()  # lets the test Client's host ("testserver") in
    client = Client(raise_request_exception=False)
    print(client.get("/").status_code, client.get("/boom/", {"order": "17", "token": sys.argv[1]}).status_code)
    """
)

FLASK_CLIENT = textwrap.dedent(
    """
    import sys

    from examples.flask_app.app import app

    client = app.test_client()
    print(client.get("/boom", query_string={"token": sys.argv[1]}).status_code, client.get("/crash").status_code)
    """
)


def run_example(script: str, redis_url: str, queue: str, **env: str) -> str:
    """Run ``script`` in a fresh interpreter (``sys.argv[1]`` is SECRET); its exit flushes the alerts to Redis."""
    result = subprocess.run(
        [sys.executable, "-c", script, SECRET],
        cwd=ROOT,
        env={**os.environ, "ALERTING_BROKER_URL": redis_url, "ALERTING_QUEUE": queue, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_django_example_boom_view_sends_an_alert_email_showing_the_request(
    redis_url: str,
    redis_client: redis.Redis,
    queue: str,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()

    out = run_example(DJANGO_CLIENT, redis_url, queue, DJANGO_SETTINGS_MODULE="examples.django_project.settings")

    assert out == "200 500"
    (mail,) = mail_sink.wait_for(1, timeout=20)
    assert mail.subject == (
        "[CRITICAL] request.unhandled: Unhandled RuntimeError on GET /boom/: the payment provider did not answer"
    )
    text = mail.text()
    assert "django-example" in text
    assert "method: GET" in text
    assert "path: /boom/" in text
    assert "query_string: order=17&token=[redacted]" in text
    assert SECRET not in mail.raw.decode("utf-8", "replace")
    assert "examples/django_project/views.py" in text  # the source is the view, not Django's logging call
    assert "remote_addr" not in text  # personal data only with ALERTING["SEND_PII"]
    wait_until_settled(redis_client, queue)  # the example exited after publishing; the worker handled it all
    assert len(mail_sink.received) == 1, "one alert per exception (Django's ERROR record is not one)"


def test_flask_example_sends_alert_emails_showing_the_request(
    redis_url: str,
    redis_client: redis.Redis,
    queue: str,
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()

    out = run_example(FLASK_CLIENT, redis_url, queue)

    assert out == "500 500"
    mails = {mail.subject: mail for mail in mail_sink.wait_for(2, timeout=20)}
    logged = mails.pop("[CRITICAL] examples.flask_app.app: Checkout failed on /boom")
    text = logged.text()
    assert "flask-example" in text
    assert "path: /boom" in text
    assert "query_string: token=[redacted]" in text
    assert SECRET not in logged.raw.decode("utf-8", "replace")
    assert "RuntimeError: the payment provider did not answer" in text

    (unhandled,) = mails.values()
    assert (
        unhandled.subject
        == "[CRITICAL] examples.flask_app.app: Unhandled LookupError on GET /crash: no price for item 17"
    )
    assert "path: /crash" in unhandled.text()
    wait_until_settled(redis_client, queue)
    assert len(mail_sink.received) == 2


def test_django_example_passes_its_system_checks(redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "examples/django_project/manage.py", "check", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "ALERTING_BROKER_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
