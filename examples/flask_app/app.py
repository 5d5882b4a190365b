"""A minimal Flask app using ``alerting.contrib.flask``: /boom logs a CRITICAL record with its exception, /crash
raises one that nothing handles; each becomes an alert email showing the request (method, path, query string).

    flask --app examples.flask_app.app run --port 8000     (or: docker compose up, then open http://localhost:8000)

Environment variables:
    ALERTING_BROKER_URL   the Redis the alerts go to (default redis://localhost:6379/0); run a worker on it:
                          celery -A alerting.worker worker -Q alerts   (with ALERTING_SMTP_* / ALERTING_MAIL_*)
    ALERTING_QUEUE        the queue the worker consumes (default alerts)

Any other ``AlertHandler`` setting goes in ``app.config`` as ``ALERTING_<NAME>`` (ALERTING_LEVEL, ALERTING_SPOOL_PATH,
ALERTING_SEND_PII...). Nothing connects until the first alert, and a broker outage never slows a request down.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from alerting.contrib.flask import Alerting

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = Flask(__name__)
app.config.update(
    ALERTING_SERVICE="flask-example",
    ALERTING_QUEUE=os.environ.get("ALERTING_QUEUE", "alerts"),
    ALERTING_SEND_PII=False,  # True adds the client address (and a user id, given Alerting(user_id=...))
)
alerting = Alerting(app)  # the handler is on app.logger; the broker comes from ALERTING_BROKER_URL


@app.get("/")
def index() -> str:
    return (
        "<!doctype html><title>celery-alerting example</title>"
        '<p><a href="/boom">/boom</a> logs a CRITICAL record, <a href="/crash">/crash</a> raises an unhandled '
        'exception: an alert email follows each (with docker compose, see <a href="http://localhost:8025">Mailpit</a>).</p>'
    )


@app.get("/boom")
def boom() -> tuple[str, int]:
    try:
        raise RuntimeError("the payment provider did not answer")
    except RuntimeError:
        app.logger.critical("Checkout failed on /boom", exc_info=True)
    return "Something went wrong; the on-call team has been alerted.\n", 500


@app.get("/crash")
def crash() -> str:
    raise LookupError("no price for item 17")  # the extension alerts it; Flask answers 500
