"""A real SMTP server for .ci/package-test, run by the DEVELOPMENT venv (it needs aiosmtpd, users' installs don't).

    python .ci/package/mailsink.py OUT_DIR

Listens on a free port of 127.0.0.1 and writes it to OUT_DIR/port once it accepts connections. Each message it
accepts becomes OUT_DIR/mail-<n>.txt (From, To, Subject, then the decoded plain-text body), written whole and then
renamed, so a reader never sees half a message. Runs until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from alerting.testing.mailsink import MailSink


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with MailSink() as sink:
        (out / "port.tmp").write_text(str(sink.port), encoding="utf-8")
        (out / "port.tmp").rename(out / "port")
        written = 0
        while not stop:
            try:
                received = sink.wait_for(written + 1, timeout=0.2)
            except TimeoutError:
                continue
            for mail in received[written:]:
                written += 1
                text = (
                    f"From: {mail.mail_from}\nTo: {', '.join(mail.rcpt_tos)}\nSubject: {mail.subject}\n\n{mail.text()}"
                )
                tmp = out / f"mail-{written}.tmp"
                tmp.write_text(text, encoding="utf-8")
                tmp.rename(out / f"mail-{written}.txt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
