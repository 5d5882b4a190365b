"""A mail catcher standing in for Mailpit where its image cannot be had: SMTP on 1025 (aiosmtpd) and, on 8025, the
part of Mailpit's JSON API that .ci/docker-test reads, in Mailpit's shapes, so that the script reads either one:

    GET    /api/v1/messages      {"total": N, "messages": [{"ID", "Subject", "From": {..}, "To": [{"Address"}]}]}
                                 newest first, as Mailpit lists them
    GET    /api/v1/message/ID    {"ID", "Subject", "From": {"Address"}, "To": [{"Address"}], "Text"}
    DELETE /api/v1/messages      forget them all

Messages are kept in memory only. Standard library plus aiosmtpd.
"""

from __future__ import annotations

import email
import email.policy
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

_lock = threading.Lock()
_messages: list[dict[str, Any]] = []


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's name
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        with _lock:
            _messages.append(
                {
                    "ID": str(len(_messages) + 1),
                    "From": {"Name": "", "Address": envelope.mail_from},
                    "To": [{"Name": "", "Address": rcpt} for rcpt in envelope.rcpt_tos],
                    "Subject": str(msg.get("Subject", "")),
                    "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "Text": body.get_content() if body is not None else "",
                }
            )
        return "250 Message accepted for delivery"


class Api(BaseHTTPRequestHandler):
    def _send(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server's name
        path = self.path.split("?", 1)[0].rstrip("/")
        with _lock:
            if path == "/api/v1/messages":
                summaries = [{k: v for k, v in m.items() if k != "Text"} for m in reversed(_messages)]
                self._send(200, {"total": len(_messages), "messages": summaries})
                return
            if path.startswith("/api/v1/message/"):
                wanted = path.rsplit("/", 1)[1]
                found = [m for m in _messages if m["ID"] == wanted]
                if found:
                    self._send(200, found[0])
                    return
        self._send(404, {"error": "not found; try /api/v1/messages"})

    def do_DELETE(self) -> None:
        with _lock:
            _messages.clear()
        self._send(200, {"total": 0})

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test script polls often; its requests are not news


if __name__ == "__main__":
    # As PID 1, Python ignores SIGTERM unless told otherwise: `docker compose down` would wait its whole timeout.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The controller's own readiness check connects to hostname, so give it an address it can reach.
    # All interfaces: the worker sends from its own container, the test script reads through a published port.
    controller = Controller(
        Sink(),
        hostname="0.0.0.0",  # noqa: S104
        port=1025,
        server_hostname="mailsink",
    )
    controller.start()
    print("mailsink: SMTP on 1025, API on 8025 (/api/v1/messages)", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()  # noqa: S104
