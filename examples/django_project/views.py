"""Views of the example project: /boom/ raises, and the alert email shows the request path."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "<!doctype html><title>celery-alerting Django example</title>"
        '<p><a href="/boom/">/boom/</a> raises an exception: an alert email follows '
        '(with docker compose, see <a href="http://localhost:8025">Mailpit</a>).</p>'
    )


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the payment provider did not answer")
