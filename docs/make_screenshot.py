"""Render docs/alert-email.png: the HTML part of an alert email, as a worker would send it.

The alert goes through the real code path: a LogRecord from a failing call (with a chained traceback, extras and
request context) → alerting.producer.capture.build → alerting.producer.finalize.finalize (redaction, id, size
cap) → alerting.consumer.schema.parse → alerting.consumer.render.render_alert. The HTML part is saved and photographed
with headless Chromium, which must be on PATH as ``chromium`` (Debian/Ubuntu: ``apt-get install chromium``).

    .venv/bin/python docs/make_screenshot.py [--out docs/alert-email.png] [--html alert-email.html]
"""

from __future__ import annotations

import argparse
import linecache
import logging
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

from alerting.consumer.render import MailConfig, render_alert
from alerting.consumer.schema import parse
from alerting.contrib import request_context
from alerting.producer.capture import build, fingerprint
from alerting.producer.context import bind
from alerting.producer.finalize import finalize
from alerting.producer.redact import Redactor

HERE = Path(__file__).resolve().parent
WIDTH = 1000

# The failing application code. It is compiled under a path of a deployed app and put into linecache, so the
# traceback reads as it would from a real service (with source lines), not from this script.
APP_FILE = "/srv/shop/app/shop/payments/gateway.py"
APP_SOURCE = textwrap.dedent(
    '''\
    import logging

    log = logging.getLogger("shop.payments")


    class PaymentDeclined(Exception):
        """The provider did not authorize the charge."""


    def _post(url, body, timeout):
        raise TimeoutError(f"read timed out after {timeout:.1f}s waiting for {url}")


    def authorize(order_id, amount):
        try:
            return _post("https://api.payprovider.example/v2/authorize", {"order": order_id}, timeout=8.0)
        except TimeoutError as exc:
            raise PaymentDeclined(f"authorization of order {order_id} ({amount}) failed") from exc


    def confirm_checkout(order_id, amount, customer):
        try:
            authorize(order_id, amount)
        except PaymentDeclined:
            log.critical(
                "payment authorization failed for order %s",
                order_id,
                exc_info=True,
                extra={"order_id": order_id, "amount": amount, "customer": customer,
                       "provider": "payprovider", "api_token": "sk_live_51HxQ2cE0b9"},
            )
    '''
)


class _Keep(logging.Handler):
    """Keeps the records it is given: the LogRecord the application would hand to an AlertHandler."""

    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def failing_request_record(redactor: Redactor) -> tuple[logging.LogRecord, dict[str, object]]:
    """Run the app code inside a request context, in a worker thread as a web server would; return its record."""
    linecache.cache[APP_FILE] = (len(APP_SOURCE), None, APP_SOURCE.splitlines(keepends=True), APP_FILE)
    namespace: dict[str, object] = {"__name__": "shop.payments.gateway"}
    exec(compile(APP_SOURCE, APP_FILE, "exec"), namespace)  # noqa: S102 - our own constant source, above
    keep = _Keep()
    logger = logging.getLogger("shop.payments")
    logger.addHandler(keep)
    logger.propagate = False
    context = request_context(
        method="POST",
        path="/checkout/confirm",
        query="step=3&session=8f14e45fceea167a&utm_source=newsletter",
        is_secret=redactor.is_secret_key,
    )
    context.update(remote_addr="203.0.113.24", user_id=1042, request_id="c7a1e9d2-5b1f")
    seen: dict[str, object] = {}

    def request() -> None:
        with bind(**context):
            seen.update(context)
            confirm = namespace["confirm_checkout"]
            assert callable(confirm)
            confirm(48213, "129.90 EUR", "c-1042")

    thread = threading.Thread(target=request, name="ThreadPoolExecutor-0_3")
    thread.start()
    thread.join()
    logger.removeHandler(keep)
    (record,) = keep.records
    return record, seen


def alert_html() -> str:
    redactor = Redactor()
    record, context = failing_request_record(redactor)
    payload = build(
        record,
        fingerprint=fingerprint(record),
        service="shop",
        is_secret_key=redactor.is_secret_key,
        context=context,
    )
    alert = parse(finalize(payload, redactor))
    mail = MailConfig("alerts@shop.example", ("oncall@shop.example",), subject_prefix="[prod] ")
    part = render_alert(alert, mail).get_body(preferencelist=("html",))
    if part is None:
        raise SystemExit("render_alert produced no HTML part")
    return str(part.get_content())


def screenshot(html: Path, png: Path, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not on PATH; install it (Debian/Ubuntu: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="alerting-chromium-") as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={png}",
                f"--window-size={WIDTH},{height}",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    if not png.exists() or png.stat().st_size == 0:
        raise SystemExit(f"chromium wrote no screenshot to {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "alert-email.png", help="the PNG to write")
    parser.add_argument("--html", type=Path, help="also keep the rendered HTML here")
    parser.add_argument("--height", type=int, default=1100, help="viewport height in pixels")
    args = parser.parse_args(argv)
    html = alert_html()
    with tempfile.TemporaryDirectory(prefix="alerting-screenshot-") as tmp:
        page = Path(args.html).resolve() if args.html else Path(tmp) / "alert-email.html"
        page.write_text(html, encoding="utf-8")
        screenshot(page, args.out.resolve(), args.height)
    print(f"wrote {args.out}" + (f" and {args.html}" if args.html else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
