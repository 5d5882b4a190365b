"""Servers the fault-injection tests start, stop and break: a private redis-server and a TCP server that hangs."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own, on its own port, that the test can stop and start again (same port).

    With ``tls_cert``/``tls_key`` it listens with TLS only (``rediss://``)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; the fault-injection tests need it")
        self.binary = binary
        self.port = port or free_port()
        self.password = password
        self.tls = (tls_cert, tls_key, tls_ca) if tls_cert and tls_key else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key]
            args += ["--tls-auth-clients", "no"] + (["--tls-ca-cert-file", ca] if ca else [])
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True)

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            return True
        return False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HungServer:
    """Accepts TCP connections and never answers: a Redis that is up but stuck (or a black-holing network)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> HungServer:
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(128)
        self._sock.settimeout(0.1)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._conns:
            conn.close()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = self._sock.accept()
                self._conns.append(conn)  # held open, never read, never answered

    def __enter__(self) -> HungServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_port_free(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                time.sleep(0.05)
                continue
            return
    raise TimeoutError(f"port {port} still busy")


class SentinelServer:
    """A real Redis Sentinel (redis-server --sentinel) monitoring ``master`` under ``name``."""

    def __init__(self, master: RedisServer, name: str = "alerts-master") -> None:
        self.master = master
        self.name = name
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="alerting-sentinel-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.port}/0?master_name={self.name}"

    def start(self) -> SentinelServer:
        conf = Path(self._dir) / "sentinel.conf"  # sentinel rewrites its config file: it must be writable
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self._dir}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 1\n"
        )
        self.proc = subprocess.Popen(
            [self.master.binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.execute_command("SENTINEL", "get-master-addr-by-name", self.name):  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis sentinel did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> SentinelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
