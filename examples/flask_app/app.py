"""A minimal Flask app whose /boom route logs a CRITICAL record, which ``AlertHandler`` turns into an alert email.

    flask --app examples.flask_app.app run --port 8000     (or: docker compose up, then open http://localhost:8000)

Logging is configured with a plain ``dictConfig`` before the app exists, as Flask's documentation recommends.
"""

from __future__ import annotations

import logging.config

from flask import Flask

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain"},
            # CRITICAL and above; the broker comes from ALERTING_BROKER_URL (default redis://localhost:6379/0).
            # Nothing connects until the first alert, and a broker outage never slows a request down.
            "alerts": {"class": "alerting.AlertHandler", "service": "flask-example"},
        },
        # app.logger is the logger named after the app's import name, which is this module's name.
        "loggers": {__name__: {"level": "INFO", "handlers": ["console", "alerts"]}},
    }
)

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return (
        "<!doctype html><title>celery-alerting example</title>"
        '<p><a href="/boom">/boom</a> logs a CRITICAL record: an alert email follows '
        '(with docker compose, see <a href="http://localhost:8025">Mailpit</a>).</p>'
    )


@app.get("/boom")
def boom() -> tuple[str, int]:
    try:
        raise RuntimeError("the payment provider did not answer")
    except RuntimeError:
        app.logger.critical("Checkout failed on /boom", exc_info=True)
    return "Something went wrong; the on-call team has been alerted.\n", 500
