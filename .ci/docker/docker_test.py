"""`make docker-test`: docker-compose.yml, run for real (.ci/docker-test runs this with the system python3).

Steps, each timed: an engine that answers (installed with apt and started when missing), Docker Compose, the base
images (pulled, or local stand-ins when no registry answers), then the unchanged docker-compose.yml plus one
override that swaps Mailpit for a mail catcher we can build: build and start, worker healthy, /boom mailed,
three workers folding a burst of one alert into one mail and one digest, and `down -v` leaving nothing behind.
Exits non-zero on the first failure, after printing the containers' logs and tearing the stack down.

Environment: EXTRA_CA_CERTS (PEM; default: the host's /usr/local/share/ca-certificates/*.crt) is passed to the
image builds; DOCKER_TEST_KEEP=1 leaves the stack running after a failure, for a look around.
Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / ".ci" / "docker"
OUT = ROOT / ".ci" / "out"
# A project name of its own: a developer's `docker compose up` in the same checkout is left alone.
PROJECT = "celery-alerting-ci"
COMPOSE_FILE = ROOT / "docker-compose.yml"
MAILSINK_OVERRIDE = HERE / "compose.mailsink.yml"  # used only when Mailpit's image cannot be had
MAILPIT_IMAGE = "axllent/mailpit"
APP = "http://127.0.0.1:8000"
MAIL_API = "http://127.0.0.1:8025/api/v1"  # Mailpit's API; the stand-in serves the same shapes
THROTTLE_WINDOW = 8  # seconds: long enough to send a burst inside it, short enough to wait for its digest
BURST = 10
WORKERS = 3

T = TypeVar("T")


class Failed(Exception):
    """A step's check did not hold; the message says what was expected and what was seen."""


def run(
    args: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    merge: bool = False,
) -> str:
    """Run a command and return its stdout (and stderr too with `merge`); its output also goes to `log` if given,
    and its last lines are in the exception when it fails."""
    proc = subprocess.run(
        list(args),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout + proc.stderr
    if log is not None:
        log.write_text(output, encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        where = f" (log: {log})" if log else ""
        raise Failed(f"{' '.join(args[:4])}... exited {proc.returncode}{where}\n{tail}")
    return output if merge else proc.stdout


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll `probe` until it returns something other than None; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def fetch(method: str, url: str, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)  # noqa: S310 (our own http://127.0.0.1 URLs)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def answers(url: str) -> bool:
    try:
        fetch("GET", url, timeout=2)
    except (OSError, HTTPException):  # URLError is an OSError
        return False
    return True


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def messages() -> list[dict[str, Any]]:
    """Every message caught so far, as {"Subject", "To": [addresses], "Text"}, oldest first."""
    _, listing = fetch("GET", MAIL_API + "/messages")
    found = []
    for summary in reversed(json.loads(listing)["messages"]):  # listed newest first
        _, body = fetch("GET", f"{MAIL_API}/message/{summary['ID']}")
        message = json.loads(body)
        to = [r["Address"] for r in message.get("To") or []]
        found.append({"Subject": message["Subject"], "To": to, "Text": message.get("Text", "")})
    return found


def forget_messages() -> None:
    fetch("DELETE", MAIL_API + "/messages")


def extra_ca_certs() -> str:
    if os.environ.get("EXTRA_CA_CERTS"):
        return os.environ["EXTRA_CA_CERTS"]
    # Where Debian's update-ca-certificates takes local CAs from: a TLS-intercepting proxy's CA lives there.
    certs = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    return "\n".join(c.read_text(encoding="utf-8").strip() for c in certs)


class DockerTest:
    def __init__(self) -> None:
        self.durations: list[tuple[str, float, str]] = []
        self.compose: list[str] = []
        self.compose_files = ["-f", str(COMPOSE_FILE)]
        ca = extra_ca_certs()
        self.env = {**os.environ, "EXTRA_CA_CERTS": ca, "ALERTING_THROTTLE_WINDOW": str(THROTTLE_WINDOW)}
        self.env.pop("DOCKER_TEST_KEEP", None)
        print(f"docker-test: EXTRA_CA_CERTS: {ca.count('BEGIN CERTIFICATE')} certificate(s) passed to image builds")

    def step(self, name: str, action: Callable[[], str | None]) -> None:
        print(f"\n== {name}", flush=True)
        start = time.monotonic()
        status = "FAILED"
        try:
            note = action()
            status = "ok" + (f": {note}" if note else "")
        finally:
            elapsed = time.monotonic() - start
            self.durations.append((name, elapsed, status))
            print(f"-- {name}: {status} ({elapsed:.1f} s)", flush=True)

    def compose_run(self, *args: str, timeout: float, log: str | None = None) -> str:
        command = [*self.compose, "-p", PROJECT, *self.compose_files, *args]
        return run(command, timeout=timeout, env=self.env, log=OUT / log if log else None)

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        labels = [f"label=com.docker.compose.project={PROJECT}"]
        if service:
            labels.append(f"label=com.docker.compose.service={service}")
        filters = [arg for label in labels for arg in ("--filter", label)]
        ids = run(["docker", "ps", "-aq", *filters], timeout=30).split()
        if not ids:
            return []
        inspected: list[dict[str, Any]] = json.loads(run(["docker", "inspect", *ids], timeout=30))
        return inspected

    # ---- the steps -------------------------------------------------------------------------------------------
    def engine(self) -> str:
        return run([str(HERE / "ensure-engine")], timeout=900).strip().splitlines()[-1]

    def compose_tool(self) -> str:
        self.compose = run([str(HERE / "ensure-compose")], timeout=900).split()
        version = run([*self.compose, "version"], timeout=30).strip().splitlines()[0]
        return f"{' '.join(self.compose)} ({version})"

    def base_images(self) -> str:
        out = run([str(HERE / "base-images")], timeout=900, env={**os.environ})
        print(out, end="")
        return "stand-ins built" if "stand-in" in out and "building" in out else "present"

    def clean_slate(self) -> str | None:
        # A run that was killed may have left its stack up (the machine is reused): start from nothing.
        self.compose_run("down", "-v", "--remove-orphans", "--timeout", "5", timeout=120)
        busy = [port for port in (8000, 1025, 8025) if listening(port)]
        if busy:
            raise Failed(f"host port(s) {busy} already in use: docker-compose.yml publishes 8000, 1025 and 8025")
        present = run(["docker", "images", "-q", MAILPIT_IMAGE], timeout=30).strip()
        if present or self.pulled(MAILPIT_IMAGE):
            return f"{MAILPIT_IMAGE} present: docker-compose.yml alone"
        self.compose_files += ["-f", str(MAILSINK_OVERRIDE)]
        print(f"docker-test: {MAILPIT_IMAGE} cannot be pulled here: the mailpit service is swapped for the mail")
        print(
            f"             catcher of {MAILSINK_OVERRIDE.relative_to(ROOT)} (aiosmtpd on 1025, Mailpit's API on 8025)"
        )
        return "mailpit swapped for the stand-in mail catcher"

    @staticmethod
    def pulled(image: str) -> bool:
        try:
            run(["docker", "pull", "-q", image], timeout=20)
        except (Failed, subprocess.TimeoutExpired):
            return False  # no registry answers: never an error
        return True

    def up(self) -> str:
        self.compose_run("up", "-d", "--build", timeout=900, log="compose-up.log")
        return f"build + start log: {OUT / 'compose-up.log'}"

    def worker_healthy(self, count: int = 1) -> str:
        def healthy() -> int | None:
            workers = self.containers("worker")
            states = [w["State"] for w in workers]
            for worker, state in zip(workers, states, strict=True):
                if state["Status"] in ("exited", "dead") or state.get("Restarting"):
                    name = worker["Name"].lstrip("/")
                    raise Failed(f"worker container {name} stopped (exit code {state['ExitCode']}): see its log below")
            ok = [s for s in states if s.get("Health", {}).get("Status") == "healthy"]
            return len(ok) if len(ok) >= count else None

        wait_until(f"{count} healthy worker container(s)", healthy, timeout=120)
        wait_until("the example app on :8000", lambda: True if answers(APP + "/") else None, timeout=60)
        wait_until("the mail catcher on :8025", lambda: True if answers(MAIL_API + "/messages") else None, timeout=60)
        return f"{count} worker(s) healthy, app and mail catcher answer"

    def boom_is_mailed(self) -> str:
        forget_messages()
        status, body = fetch("GET", APP + "/boom")
        if status != 500 or "alerted" not in body:
            raise Failed(f"GET /boom answered {status}: {body[:200]!r}")
        start = time.monotonic()
        mails = wait_until("the /boom alert in the mail catcher", lambda: messages() or None, timeout=60)
        latency = time.monotonic() - start
        if len(mails) != 1:
            raise Failed(f"expected one mail, got {[m['Subject'] for m in mails]}")
        mail = mails[0]
        expected_subject = "[CRITICAL] examples.flask_app.app: Checkout failed on /boom"
        if expected_subject not in mail["Subject"]:
            raise Failed(f"subject {mail['Subject']!r} does not contain {expected_subject!r}")
        for text in ("Checkout failed on /boom", "RuntimeError", "the payment provider did not answer", "/boom"):
            if text not in mail["Text"]:
                raise Failed(f"mail body lacks {text!r}:\n{mail['Text'][:2000]}")
        if sorted(mail["To"]) != ["oncall@example.com", "ops@example.com"]:
            raise Failed(f"mail went to {mail['To']}")
        return f"{mail['Subject']!r} to {', '.join(mail['To'])}, {latency:.2f} s after the request"

    def scale(self) -> str:
        self.compose_run("up", "-d", "--no-build", "--scale", f"worker={WORKERS}", timeout=300, log="compose-scale.log")
        return self.worker_healthy(WORKERS)

    def burst_is_throttled(self) -> str:
        forget_messages()
        sent = time.monotonic()
        for _ in range(BURST):
            status, _ = fetch("GET", APP + "/crash")
            if status != 500:
                raise Failed(f"GET /crash answered {status}")
        first = wait_until("the first /crash alert", lambda: messages() or None, timeout=60)
        at_once = time.monotonic() - sent
        if len(first) != 1 or " more in " in first[0]["Subject"]:
            raise Failed(f"expected exactly one mail at once, got {[m['Subject'] for m in first]}")
        if "no price for item 17" not in first[0]["Text"] + first[0]["Subject"]:
            raise Failed(f"the first mail is not the /crash alert: {first[0]['Subject']!r}")

        def digest() -> list[dict[str, Any]] | None:
            found = messages()
            return found if len(found) >= 2 else None

        wait_until("the digest at the end of the throttle window", digest, timeout=THROTTLE_WINDOW + 60)
        digest_after = time.monotonic() - sent
        # A second digest would come within a poll interval or two of the first: give it that long to show up.
        time.sleep(3)
        mails = messages()
        digests = [m for m in mails if " more in " in m["Subject"]]
        subjects = [m["Subject"] for m in mails]
        if len(mails) != 2 or len(digests) != 1:
            raise Failed(f"expected one mail and one digest, got {len(mails)}: {subjects}")
        match = re.search(r"\((\d+) more in ", digests[0]["Subject"])
        if match is None or int(match.group(1)) != BURST - 1:
            raise Failed(f"expected a digest of {BURST - 1} repeats, got {digests[0]['Subject']!r}")
        handled = self.tasks_per_worker()
        return (
            f"{BURST} x /crash -> 1 mail after {at_once:.2f} s, 1 digest ({match.group(0)}...) after "
            f"{digest_after:.1f} s (window {THROTTLE_WINDOW} s); tasks run per worker: {handled}"
        )

    def tasks_per_worker(self) -> list[int]:
        counts = []
        for worker in self.containers("worker"):
            logs = run(["docker", "logs", worker["Id"]], timeout=30, merge=True)
            counts.append(len(re.findall(r"Task alerting\.\w+\[[^\]]+\] succeeded", logs)))
        return counts

    def down(self) -> str:
        # Each service's own stop_grace_period applies, as for users: the time shows how promptly they stop.
        self.compose_run("down", "-v", "--remove-orphans", timeout=300, log="compose-down.log")
        label = f"label=com.docker.compose.project={PROJECT}"
        left = {
            "containers": run(["docker", "ps", "-aq", "--filter", label], timeout=30).split(),
            "networks": run(["docker", "network", "ls", "-q", "--filter", label], timeout=30).split(),
            "volumes": run(["docker", "volume", "ls", "-q", "--filter", label], timeout=30).split(),
        }
        if any(left.values()):
            raise Failed(f"left behind after down: {left}")
        # Each rebuild leaves the previous image untagged ("dangling", ~230 MB): on a machine that runs CI again and
        # again they would fill the disk. Only this project's dangling images go; the tagged ones stay as the cache.
        run(["docker", "image", "prune", "-f", "--filter", label], timeout=120)
        run(["docker", "image", "prune", "-f", "--filter", "label=io.celery-alerting.image"], timeout=120)  # smoke test
        return "no container, network or volume of the project left; its dangling images pruned"

    # ---- driver ----------------------------------------------------------------------------------------------
    def show_logs(self) -> None:
        if not self.compose:
            return
        try:
            print("\n== container logs (last 80 lines per service)")
            print(self.compose_run("logs", "--no-color", "--tail", "80", timeout=60))
            print(self.compose_run("ps", "-a", timeout=60))
        except (Failed, subprocess.TimeoutExpired) as exc:
            print(f"(could not read the logs: {exc})")

    def main(self) -> int:
        OUT.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        stack_up = False
        failure: str | None = None
        try:
            self.step("engine", self.engine)
            self.step("compose", self.compose_tool)
            self.step("base images", self.base_images)
            self.step("clean slate, mail server", self.clean_slate)
            stack_up = True
            self.step("compose up --build", self.up)
            self.step("worker healthy", self.worker_healthy)
            self.step("GET /boom -> alert mailed", self.boom_is_mailed)
            self.step(f"--scale worker={WORKERS}", self.scale)
            self.step(f"{BURST} repeats -> 1 mail + 1 digest", self.burst_is_throttled)
            self.step("compose down -v", self.down)
            stack_up = False
        except Exception as exc:  # a check that failed, a timeout, or a bug here: report, tear down, exit 1
            failure = str(exc) if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
            print(f"\nFAILED: {failure}", file=sys.stderr)
            if stack_up:
                self.show_logs()
                if os.environ.get("DOCKER_TEST_KEEP") == "1":
                    print(f"DOCKER_TEST_KEEP=1: the stack is left up (docker compose -p {PROJECT} ...)")
                else:
                    try:
                        self.compose_run("down", "-v", "--remove-orphans", "--timeout", "5", timeout=300)
                    except (Failed, subprocess.TimeoutExpired) as down_exc:
                        print(f"(tearing down failed too: {down_exc})", file=sys.stderr)
        total = time.monotonic() - started
        print("\n== docker-test summary")
        for name, elapsed, status in self.durations:
            print(f"  {elapsed:6.1f} s  {name}: {status}")
        print(f"  {total:6.1f} s  total: {'FAILED' if failure else 'passed'}")
        return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(DockerTest().main())
