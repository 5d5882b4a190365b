"""A TCP server that speaks Redis's protocol but answers every command with the same wrong-typed reply: a
state store that has been replaced by something else (a misrouted port, a proxy answering for a dead backend)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import ClassVar

from tests.support.servers import free_port


class WrongAnswerServer:
    """Parses RESP commands (arrays of bulk strings) and answers each with ``reply`` (raw RESP, default ``+OK``),
    except the connection handshake (PING, HELLO), answered as Redis 7 would: the client connects happily."""

    HANDSHAKE: ClassVar[dict[str, bytes]] = {"PING": b"+PONG\r\n", "HELLO": b"%1\r\n+proto\r\n:3\r\n"}

    def __init__(self, reply: bytes = b"+OK\r\n", port: int | None = None) -> None:
        self.reply = reply
        self.port = port or free_port()
        self.commands: list[str] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> WrongAnswerServer:
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = self._sock.accept()
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while True:
                    command, buffer = _take_command(buffer)
                    if command is None:
                        break
                    self.commands.append(command)
                    with contextlib.suppress(OSError):
                        conn.sendall(self.HANDSHAKE.get(command, self.reply))


def _take_command(buffer: bytes) -> tuple[str | None, bytes]:
    """One complete ``*N\\r\\n($len\\r\\nbytes\\r\\n)*N`` command off the front of ``buffer``, or None."""
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None, buffer
    header, rest = buffer.split(b"\r\n", 1)
    parts = []
    for _ in range(int(header[1:])):
        if b"\r\n" not in rest:
            return None, buffer
        length_line, rest = rest.split(b"\r\n", 1)
        length = int(length_line[1:])
        if len(rest) < length + 2:
            return None, buffer
        parts.append(rest[:length])
        rest = rest[length + 2 :]
    return (parts[0].decode(errors="replace").upper() if parts else ""), rest
