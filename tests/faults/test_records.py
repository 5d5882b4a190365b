"""Odd records that applications really produce still become alerts: logged through AlertHandler, delivered by a
real worker process, read at a real SMTP server.

Found in review: a file name that is not valid UTF-8, a ``created`` in milliseconds, NaN or not a number at all,
and secrets inside lists of (key, value) pairs. The handler published the first kind and the worker could not
render it (no mail, no dead letter); it gave up on the second in the calling thread ("--- Logging error ---",
nothing counted); the third reached the mail in clear.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink, Received
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import dead_letters
from tests.support.wire import everything_in

# What os.fsdecode() makes of a Latin-1 file name on a UTF-8 system: lone surrogates, which UTF-8 cannot encode.
ODD_PATH = os.fsdecode(b"/srv/app/caf\xe9/r\xe9sum\xe9.py")


class _Opaque:
    def __repr__(self) -> str:
        return "<Opaque clock>"


def _logger() -> logging.Logger:
    return logging.getLogger(f"faults.records.{uuid.uuid4().hex[:6]}")


def _record(log: logging.Logger, msg: str, args: tuple[Any, ...] = (), **attrs: Any) -> logging.LogRecord:
    """A record as the application's logging call made it, then altered the way apps (or their libraries) do."""
    record = log.makeRecord(log.name, logging.CRITICAL, "/srv/app/jobs.py", 12, msg, args, None, extra=None)
    record.__dict__.update(attrs)
    return record


def _by_subject(mails: list[Received], marker: str) -> Received:
    (mail,) = [m for m in mails if marker in m.subject]
    return mail


def test_surrogate_file_names_and_implausible_times_are_alerted_with_visible_repairs(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    start_worker()
    log = _logger()
    handler = make_handler(log)
    now = time.time()
    odd_times = {"ms": now * 1000, "nan": math.nan, "far": 1e20, "negative": -5.0}

    log.handle(_record(log, "path-in-arg: could not read %s", (ODD_PATH,)))
    log.handle(_record(log, "path-in-pathname: import failed", pathname=ODD_PATH, filename=os.path.basename(ODD_PATH)))
    log.handle(_record(log, "path-in-extra: upload failed", upload=ODD_PATH))
    for label, created in odd_times.items():
        log.handle(_record(log, f"time-{label}: job failed", created=created))

    mails = mail_sink.wait_for(3 + len(odd_times), timeout=15)
    assert dead_letters(redis_client) == []
    # Each odd file name arrives with its undecodable bytes shown, not dropped and not crashing the render.
    assert "caf\\xe9/r\\xe9sum\\xe9.py" in _by_subject(mails, "path-in-arg").subject
    assert "caf\\xe9/r\\xe9sum\\xe9.py" in _by_subject(mails, "path-in-pathname").text()
    assert "caf\\xe9/r\\xe9sum\\xe9.py" in _by_subject(mails, "path-in-extra").text()
    # Each implausible time is replaced by the time of capture, and the original is kept in the alert.
    for label, created in odd_times.items():
        text = _by_subject(mails, f"time-{label}").text()
        assert repr(created) in text, text
        assert time.strftime("%Y-%m-%d", time.gmtime(now)) in text
    assert handler.stats()["normalised"] == len(odd_times)  # times replaced; text repairs show in the text itself


def test_record_whose_created_is_not_a_number_is_alerted_and_counted(
    make_handler: Callable[..., AlertHandler],
    mail_sink: MailSink,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    start_worker()
    log = _logger()
    handler = make_handler(log)
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign,assignment]  # stdlib: "--- Logging error ---"

    for label, created in {"str": "yesterday", "none": None, "object": _Opaque()}.items():
        log.handle(_record(log, f"created-{label}: nightly export failed", created=created))

    mails = mail_sink.wait_for(3, timeout=15)
    assert errors == []
    assert dead_letters(redis_client) == []
    assert "'yesterday'" in _by_subject(mails, "created-str").text()
    assert "None" in _by_subject(mails, "created-none").text()
    assert "<Opaque clock>" in _by_subject(mails, "created-object").text()
    assert handler.stats()["normalised"] == 3


def test_secrets_in_pairs_and_lists_of_dicts_never_reach_the_mail(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    log = _logger()
    make_handler(log)

    log.critical(
        "upstream call failed",
        extra={
            "headers": [("Authorization", "Bearer pair-secret-1"), ("Accept", "text/html")],
            "pairs": (("api_key", "pair-secret-2"),),
            "calls": [{"url": "https://api.example/v1", "Authorization": "Bearer list-dict-secret-3"}],
            "nested": [["X-Auth-Token", "deep-secret-4"]],
        },
    )

    (mail,) = mail_sink.wait_for(1)
    everything = everything_in(mail)
    for secret in ("pair-secret-1", "pair-secret-2", "list-dict-secret-3", "deep-secret-4"):
        assert secret not in everything
    assert "text/html" in mail.text()  # pairs that hold no secret are shown as they were
    assert "https://api.example/v1" in mail.text()
