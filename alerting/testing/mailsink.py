"""``MailSink``: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives. For tests and demos.

It can play the servers alerting has to survive: slow (``delay``), temporarily failing
(``fail_next("451 ...", times=2)``), refusing (``reject_all("550 ...")``), refusing some recipients only
(``refuse_recipient(addr, "550 ...")``), and STARTTLS/implicit TLS with AUTH. :class:`Tarpit` plays a server
that answers one byte at a time. Needs the ``testing`` extra (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    at: float  # time.time() when the server accepted it

    @property
    def subject(self) -> str:
        # strip(): a long subject is folded onto a continuation line, which the parser keeps a space of.
        return str(self.message["Subject"] or "").strip()

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return str(part.get_content()) if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return str(part.get_content()) if part is not None else ""


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        with self.sink._cond:
            refusal = self.sink._refused_rcpts.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        sink.attempts += 1
        if sink.delay:
            try:
                await asyncio.sleep(sink.delay)
            except asyncio.CancelledError:
                # aiosmtpd cancels us when the client goes away before our reply; like a real MTA, the message
                # is then not delivered (RFC 5321 4.1.1.4). Count it, so tests can tell an attempt was cut short.
                sink.aborted += 1
                raise
        with sink._cond:
            if sink._failures:
                return sink._failures.popleft()
            if sink._reject:
                return sink._reject
        raw: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received = Received(envelope.mail_from, tuple(envelope.rcpt_tos), message, raw, time.time())
        with sink._cond:
            sink.received.append(received)
            sink._cond.notify_all()
        return "250 2.0.0 OK"


class SMTPController(Controller):
    """aiosmtpd's Controller, able to listen on port 0 (a free port): it reads the bound port before its readiness
    check, which as shipped connects to the port it was given. The one copy: ``MailSink`` and the benchmarks'
    ``FastSink`` run their handlers on it. ``port`` is the bound port once started."""

    def _trigger_server(self) -> None:
        server: Any = self.server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class MailSink:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        users: Mapping[str, str] | None = None,
    ) -> None:
        """``tls_context`` offers STARTTLS (required), or with ``implicit_tls`` wraps the port in TLS (as 465).
        ``users`` turns on AUTH (required) with these logins."""
        self.host = host
        self.delay = delay
        self.received: list[Received] = []
        self.attempts = 0  # DATA commands seen, accepted or not
        self.aborted = 0  # messages whose sender disconnected before the reply (not delivered)
        self._cond = threading.Condition()
        self._failures: deque[str] = deque()
        self._reject: str | None = None
        self._refused_rcpts: dict[str, str] = {}
        self._users = dict(users or {})
        kwargs: dict[str, Any] = {}
        if tls_context is not None and implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if users:
            kwargs.update(
                auth_required=True,
                authenticator=self._authenticate,
                # aiosmtpd only counts STARTTLS as TLS; an implicit-TLS port is encrypted from the first byte.
                auth_require_tls=tls_context is not None and not implicit_tls,
            )
        self._controller = SMTPController(_Handler(self), hostname=host, port=port, **kwargs)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._controller.port)

    # -- behaviour -----------------------------------------------------------------------------------------
    def fail_next(self, reply: str, times: int = 1) -> None:
        """Answer the next ``times`` messages with ``reply`` (e.g. ``"451 4.3.0 Try again later"``)."""
        with self._cond:
            self._failures.extend([reply] * times)

    def reject_all(self, reply: str | None) -> None:
        """Answer every message with ``reply`` until called with None."""
        with self._cond:
            self._reject = reply

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Answer RCPT TO for ``address`` with ``reply`` (an empty one: accept it again); the message is still
        accepted for the others."""
        with self._cond:
            if reply:
                self._refused_rcpts[address.lower()] = reply
            else:
                self._refused_rcpts.pop(address.lower(), None)

    # -- inspection ----------------------------------------------------------------------------------------
    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; returns them all (raises TimeoutError if not)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} messages, got {len(self.received)} within {timeout}s")
                self._cond.wait(remaining)
            return list(self.received)

    def settle(self, quiet: float = 1.0, timeout: float = 30.0) -> list[Received]:
        """Wait until no message has arrived for ``quiet`` seconds; returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = len(self.received)
            while time.monotonic() < deadline:
                self._cond.wait(quiet)
                if len(self.received) == seen:
                    break
                seen = len(self.received)
            return list(self.received)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if user in self._users and self._users[user] == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class Tarpit:
    """A "mail server" on 127.0.0.1 that answers, but one byte every ``interval`` seconds: its banner, and a reply
    to every line it reads. Each byte comes well within any per-read timeout; a whole transaction never ends."""

    def __init__(self, *, interval: float = 0.3, host: str = "127.0.0.1") -> None:
        self.interval = interval
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.closed_by_client = 0  # connections the client gave up on
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Tarpit:
        thread = threading.Thread(target=self._accept, name="tarpit", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> Tarpit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), name="tarpit-conn", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            try:
                if not self._dribble(conn, b"220 tarpit.example ESMTP\r\n"):
                    return
                buffer = b""
                while not self._stopped.is_set():
                    try:
                        chunk = conn.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        self.closed_by_client += 1
                        return
                    buffer += chunk
                    while b"\n" in buffer:
                        _, buffer = buffer.split(b"\n", 1)
                        if not self._dribble(conn, b"250 ok\r\n"):
                            return
            except OSError:
                self.closed_by_client += 1

    def _dribble(self, conn: socket.socket, data: bytes) -> bool:
        for i in range(len(data)):
            if self._stopped.wait(self.interval):
                return False
            try:
                conn.sendall(data[i : i + 1])
            except OSError:
                self.closed_by_client += 1
                return False
        return True
