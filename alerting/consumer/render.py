"""Alerts, digests and summaries → email messages (plain text with an HTML alternative). Pure.

Everything that comes from a log record is untrusted: subjects lose CR, LF, NUL and other control
characters before they reach a header, and every value is HTML-escaped in the HTML part.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate, make_msgid
from typing import Any

from alerting.consumer.mime import Email
from alerting.consumer.schema import Alert
from alerting.shared.outbox import Digest, Summary

SUBJECT_MAX = 150
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


@dataclass(frozen=True)
class MailConfig:
    mail_from: str
    mail_to: tuple[str, ...]
    subject_prefix: str = ""


def clean_header_text(text: str, limit: int = SUBJECT_MAX) -> str:
    """One line, no control characters (so no header injection), at most ``limit`` characters."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return message.strip()


def alert_subject(alert: Alert, prefix: str = "") -> str:
    return clean_header_text(f"{prefix}[{alert.level}] {alert.logger}: {first_line(alert.message)}")


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the three kinds of mail ------------------------------------------------------------------------------
def render_alert(alert: Alert, mail: MailConfig) -> Email:
    intro = f"{alert.level} in {alert.logger}" + (f" ({alert.service})" if alert.service else "")
    sections = _alert_sections(alert)
    if alert.count > 1:
        sections.insert(0, ("Occurrences", f"{alert.count} (repeats within a second were sent as one message)"))
    return _message(mail, alert_subject(alert, mail.subject_prefix), intro, alert.message, sections, alert)


def render_digest(digest: Digest, sample: Alert, mail: MailConfig) -> Email:
    """``sample`` is ``digest.sample`` parsed: the latest repeat, shown in full."""
    count = digest.count
    span = human_duration(digest.window_end - digest.window_start)
    subject = clean_header_text(f"{mail.subject_prefix}[{sample.level}] {sample.logger}: {first_line(sample.message)}")
    subject = clean_header_text(f"{subject[: SUBJECT_MAX - 30]} ({count} more in {span})")
    intro = (
        f"{count} more occurrence{'s' if count != 1 else ''} of this alert between "
        f"{iso_utc(digest.first)} and {iso_utc(digest.last)} (window of {span}). "
        "The latest one follows in full."
    )
    sections = [("Occurrences", str(count)), *_alert_sections(sample)]
    msg = _message(mail, subject, intro, sample.message, sections, sample)
    return msg.with_header("X-Alerting-Digest-Count", str(count))  # for mail filters (and tests)


def render_summary(summary: Summary, mail: MailConfig, rate: str) -> Email:
    entries = sorted(summary.entries, key=lambda e: -e.count)
    total = sum(e.count for e in entries)
    subject = clean_header_text(
        f"{mail.subject_prefix}[alerting] {total} alert{'s' if total != 1 else ''} held back by the rate limit ({rate})"
    )
    intro = (
        f"The cluster-wide rate limit ({rate}) was reached, so these alerts were folded into this summary "
        "instead of being mailed one by one. Repeats of each are reported in its digest."
    )
    lines = "\n".join(f"{e.count:>6} × {clean_header_text(e.subject, 300)}" for e in entries)
    since = summary.since
    sections = [("First held back", iso_utc(since) if since else "unknown"), ("Alerts", lines)]
    return _message(mail, subject, intro, "", sections, None)


# -- building blocks ----------------------------------------------------------------------------------------
def _alert_sections(alert: Alert) -> list[tuple[str, str]]:
    where = f"{alert.pathname}:{alert.lineno}" + (f" in {alert.func}()" if alert.func else "")
    who = f"pid {alert.pid}" if alert.pid is not None else "pid ?"
    if alert.process_name or alert.thread_name:
        who += f" ({alert.process_name or '?'} / {alert.thread_name or '?'})"
    sections: list[tuple[str, str]] = [
        ("When", iso_utc(alert.created)),
        ("Host", f"{alert.host or '?'}, {who}"),
    ]
    if alert.service:
        sections.append(("Service", alert.service))
    sections += [("Logger", alert.logger), ("Source", where)]
    if alert.exc_type:
        sections.append(("Exception", alert.exc_type))
    if alert.traceback:
        sections.append(("Traceback", alert.traceback.rstrip()))
    if alert.stack:
        sections.append(("Stack", alert.stack.rstrip()))
    if alert.context:
        sections.append(("Request", _pairs(alert.context.items())))
    if alert.extra:
        sections.append(("Extra", _pairs(alert.extra.items())))
    if alert.dropped and alert.dropped.total:
        detail = ", ".join(
            f"{fp} ×{n}" for fp, n in sorted(alert.dropped.by_fingerprint.items(), key=lambda kv: -kv[1])
        )
        sections.append(
            (
                "Dropped before this alert",
                f"{alert.dropped.total} alerts did not fit the application's buffer: {detail}",
            )
        )
    sections.append(("Alert", f"id {alert.id}, fingerprint {alert.fingerprint}"))
    return sections


def _pairs(items: Iterable[tuple[str, Any]]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in items)


def _message(
    mail: MailConfig,
    subject: str,
    intro: str,
    message: str,
    sections: Sequence[tuple[str, str]],
    alert: Alert | None,
) -> Email:
    headers = [
        ("Subject", subject),
        ("From", mail.mail_from),
        ("To", ", ".join(mail.mail_to)),
        ("Date", formatdate(usegmt=True)),
        ("Message-ID", make_msgid(domain=mail.mail_from.rpartition("@")[2] or None)),
        # RFC 3834: tells vacation responders and ticket systems not to answer an automated message.
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
    ]
    if alert is not None:
        headers += [("X-Alerting-Fingerprint", alert.fingerprint), ("X-Alerting-Id", alert.id)]
    text = [intro, ""]
    if message:
        text += [message, ""]
    width = max((len(t) for t, v in sections if "\n" not in v and t not in _MULTILINE), default=0) + 2
    for title, value in sections:
        if "\n" in value or title in _MULTILINE:
            text += ["", f"{title}:", *(f"    {line}" for line in value.splitlines()), ""]
        else:
            text.append(f"{title + ':':<{width}}{value}")
    colour = accent(alert.levelno) if alert is not None else _NEUTRAL
    return Email(tuple(headers), "\n".join(text), _html(subject, intro, message, sections, colour))


_CSS_TH = "text-align:left;vertical-align:top;padding:6px 12px 6px 0;color:#57606a;font-weight:600;white-space:nowrap"
_CSS_TD = "padding:6px 0;vertical-align:top;overflow-wrap:anywhere"
_CSS_BLOCK_TITLE = "padding:14px 0 4px;color:#57606a;font-weight:600;text-align:left"
_CSS_PRE = (
    "margin:0;padding:10px;background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;"
    "font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word"
)
_FONT = "14px/1.5 -apple-system,Segoe UI,Helvetica,Arial,sans-serif"
_MULTILINE = {"Traceback", "Stack", "Request", "Extra", "Alerts"}
# Header colour by severity: red for CRITICAL and above, orange for ERROR, amber for WARNING, blue otherwise
# (summaries, and anything below WARNING someone chose to alert on).
_ACCENTS = ((50, "#cf222e"), (40, "#bc4c00"), (30, "#9a6700"))
_NEUTRAL = "#0969da"


def accent(levelno: int | None) -> str:
    if levelno is None:
        return _NEUTRAL
    return next((colour for floor, colour in _ACCENTS if levelno >= floor), _NEUTRAL)


def _html(subject: str, intro: str, message: str, sections: Sequence[tuple[str, str]], colour: str) -> str:
    e = html.escape
    rows = []
    for title, value in sections:
        if title in _MULTILINE:
            # Blocks take the full width, title above: beside a label column, tracebacks wrap into a mess on phones.
            rows.append(f'<tr><th colspan="2" style="{_CSS_BLOCK_TITLE}">{e(title)}</th></tr>')
            rows.append(
                f'<tr><td colspan="2" style="{_CSS_TD}"><pre style="{_CSS_PRE}">{_block(title, value)}</pre></td></tr>'
            )
        else:
            rows.append(f'<tr><th style="{_CSS_TH}">{e(title)}</th><td style="{_CSS_TD}">{e(value)}</td></tr>')
    headline = (
        f'<div style="font-size:16px;font-weight:600;margin:12px 0;white-space:pre-wrap;overflow-wrap:anywhere">'
        f"{e(message)}</div>"
        if message
        else ""
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(subject)}</title></head>"
        '<body style="margin:0;padding:0;background:#f6f8fa">'
        f'<div style="max-width:860px;margin:0 auto;padding:20px;font:{_FONT};color:#1f2328">'
        '<div style="background:#ffffff;border:1px solid #d0d7de;border-radius:8px;overflow:hidden">'
        f'<div style="background:{colour};color:#ffffff;padding:12px 20px;font-weight:600;overflow-wrap:anywhere">'
        f"{e(subject)}</div>"
        f'<div style="padding:16px 20px"><div style="color:#57606a">{e(intro)}</div>{headline}'
        f'<table style="border-collapse:collapse;width:100%">{"".join(rows)}</table></div></div>'
        '<div style="color:#57606a;font-size:12px;padding:8px 4px">Sent by celery-alerting.</div>'
        "</div></body></html>"
    )


def _block(title: str, value: str) -> str:
    """A block's HTML; a traceback's last line (the exception itself) in bold."""
    if title != "Traceback":
        return html.escape(value)
    head, _, last = value.rstrip().rpartition("\n")
    if not head:
        return f"<strong>{html.escape(last)}</strong>"
    return f"{html.escape(head)}\n<strong>{html.escape(last)}</strong>"
