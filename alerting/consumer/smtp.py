"""The only module that talks SMTP. I/O.

One connection per worker process, reused between tasks and re-opened when the server has dropped it.
:func:`classify` is the one place where smtplib, ssl and socket errors become ours: transient (retry
later) or permanent (dead letters).

Every send has a deadline for the whole SMTP transaction (connect, TLS, AUTH, MAIL, RCPT, DATA), not only per
read: a server that dribbles one byte at a time satisfies every per-read timeout and would otherwise hold the
task until Celery's hard time limit kills it. A watchdog shuts the socket down at the deadline, which wakes
any blocked read; that is independent of how smtplib and ssl loop over reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Sequence

from alerting.consumer.deadlines import TRANSACTION_TIMEOUTS, transaction_deadline
from alerting.consumer.mime import Email
from alerting.consumer.settings import SMTPSettings
from alerting.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

log = logging.getLogger("alerting.smtp")


Refused = dict[str, tuple[int, bytes]]


def classify(exc: BaseException, server: str | None = None) -> DeliveryError:  # noqa: C901 -- one flat table of exception kinds, read top to bottom; order matters (subclasses first)
    """Map an exception raised while sending to a transient or permanent :class:`DeliveryError`.

    ``server`` (``host:port``) is named in connection errors, so a log line or dead letter says which server.
    """
    at = f" {server}" if server else ""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
        if any(400 <= c < 500 for c in codes):
            return TransientDeliveryError(f"recipients refused for now: {detail}", kind="smtp-4xx")
        return PermanentDeliveryError(f"all recipients refused: {detail}", kind="recipients")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if 400 <= exc.smtp_code < 500:
            return TransientDeliveryError(
                f"authentication deferred: {exc.smtp_code} {_text(exc.smtp_error)}", kind="auth"
            )
        return PermanentDeliveryError(f"authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}", kind="auth")
    if isinstance(exc, smtplib.SMTPResponseException):  # data, sender, helo, connect errors carry a code
        code = exc.smtp_code
        text = f"server replied {code} {_text(exc.smtp_error)}"
        if 400 <= code < 500:
            return TransientDeliveryError(text, kind=f"smtp-{code}")
        if 500 <= code < 600:
            return PermanentDeliveryError(text, kind=f"smtp-{code}")
        return TransientDeliveryError(text, kind="smtp-other")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentDeliveryError(f"server does not support what the settings require: {exc}", kind="unsupported")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(f"TLS certificate refused: {exc.verify_message}", kind="tls-verify")
    if isinstance(exc, ssl.SSLError):
        return TransientDeliveryError(f"TLS error: {exc}", kind="tls")
    if _is_timeout(exc):
        return TransientDeliveryError(f"timed out talking to the SMTP server{at}", kind="timeout")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientDeliveryError(f"server{at} disconnected: {exc}", kind="disconnected")
    if isinstance(exc, socket.gaierror):
        return TransientDeliveryError(f"cannot resolve the SMTP host{at}: {exc}", kind="dns")
    if isinstance(exc, OSError):
        return TransientDeliveryError(f"cannot reach the SMTP server{at}: {exc}", kind="connection")
    return TransientDeliveryError(f"unexpected error while sending: {type(exc).__name__}: {exc}", kind="unexpected")


def _is_timeout(exc: BaseException) -> bool:
    """A read timeout, also when smtplib re-raised it as "Connection unexpectedly closed: timed out"."""
    if isinstance(exc, TimeoutError):  # socket.timeout is this class since Python 3.10
        return True
    return isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    """Verified by default (system CAs, or ``ALERTING_SMTP_CA_FILE``); unverified only when configured so."""
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SMTPSender:
    """Sends messages over one reused connection. Safe to share between threads (sends are serialised)."""

    def __init__(self, settings: SMTPSettings, mail_from: str, mail_to: tuple[str, ...]) -> None:
        self.settings = settings
        self.mail_from = mail_from
        self.mail_to = mail_to
        self.deadline = transaction_deadline(settings.timeout)
        self.server = f"{settings.host}:{settings.port}"
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self._watchdog = _Watchdog()

    def send(self, msg: Email, to: Sequence[str] | None = None) -> Refused:
        """Send ``msg`` to ``to`` (default: the configured recipients). Returns the recipients the server refused
        while accepting the message for the others (empty when all got it); raises :class:`DeliveryError`."""
        recipients = list(to) if to else list(self.mail_to)
        with self._lock:
            watchdog = self._watchdog
            watchdog.arm(self.deadline)
            try:
                return self._send(msg, recipients, watchdog)
            except DeliveryError:
                if watchdog.fired:
                    raise self._overran() from None
                raise
            finally:
                watchdog.disarm()

    def _send(self, msg: Email, recipients: list[str], watchdog: _Watchdog) -> Refused:
        for _ in range(2):
            reused = self._conn is not None
            try:
                conn = self._conn or self._connect(watchdog)
                watchdog.watch(conn)
                refused: Refused = conn.sendmail(self.mail_from, recipients, msg.as_bytes())
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                self._drop()
                if reused and not watchdog.fired and not _is_timeout(exc):
                    continue  # the server closed an idle connection: one fresh try, at once
                raise classify(exc, self.server) from exc
            except Exception as exc:
                self._drop()  # state of the SMTP dialogue unknown: start clean next time
                raise classify(exc, self.server) from exc
            finally:
                watchdog.watch(None)
            return refused
        raise TransientDeliveryError(f"server {self.server} disconnected twice in a row", kind="disconnected")

    def _overran(self) -> TransientDeliveryError:
        return TransientDeliveryError(
            f"the SMTP server {self.server} did not complete the transaction within {self.deadline:g}s "
            f"(ALERTING_SMTP_TIMEOUT x {TRANSACTION_TIMEOUTS:g})",
            kind="timeout",
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.quit()
                except Exception:  # closing a dead connection: nothing to report
                    self._conn.close()
                self._conn = None

    def _connect(self, watchdog: _Watchdog) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP
        # Built unconnected, so the watchdog holds the connection before the first byte of the banner is awaited.
        if s.security == "ssl":
            conn = smtplib.SMTP_SSL(timeout=s.timeout, context=tls_context(s))
        else:
            conn = smtplib.SMTP(timeout=s.timeout)
        # What the constructor sets when given the host: STARTTLS checks the certificate against it.
        conn._host = s.host  # type: ignore[attr-defined]
        watchdog.watch(conn)
        try:
            conn.connect(s.host, s.port)
            if watchdog.fired:  # shut down before connect() stored its socket: the banner read did not see it
                raise TimeoutError("transaction deadline")
            conn.ehlo()
            if s.security == "starttls":
                conn.starttls(context=tls_context(s))
                conn.ehlo()
            if s.user and s.password:
                conn.login(s.user, s.password)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class _Watchdog:
    """Shuts the watched connection's socket down when the armed deadline passes. One thread per sender, started
    on first use in each process (a thread per send cost ~0.35 ms, a tenth of a worker's time per alert)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._conn: smtplib.SMTP | None = None
        self._deadline: float | None = None  # time.monotonic() at which to fire; None: disarmed
        self._pid: int | None = None
        self.fired = False

    def arm(self, seconds: float) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child (threads do not survive a fork)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="smtp-deadline", daemon=True).start()
            self._deadline = time.monotonic() + seconds
            self.fired = False
            self._cond.notify()

    def watch(self, conn: smtplib.SMTP | None) -> None:
        with self._cond:
            self._conn = conn

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._conn = None

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._deadline = None
                self.fired = True
                sock = getattr(self._conn, "sock", None) if self._conn is not None else None
                if sock is not None:
                    # socket.socket's own shutdown, also for an SSLSocket: ssl's would drop its state under a thread
                    # that is reading; the raw shutdown just makes that read end (EOF or error). OSError: closed.
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
