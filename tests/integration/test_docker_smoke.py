"""The worker image (worker/Dockerfile) on pytest-celery's containers: it consumes ``alerting.deliver`` from a Redis
container and, with no SMTP server to reach, dead-letters the alert in that Redis.

Needs a Docker engine. One that answers is used; else, as root with dockerd installed, .ci/docker/ensure-engine
starts one (what `make docker-test` does). The test is skipped, with the reason, only where no engine can be had
at all. Base images missing locally are pulled or, where no registry answers, built as local stand-ins by
.ci/docker/base-images: a registry failure is never an error. Nothing touches Docker at import or collection time.

Two traps of this machine kind are closed here, not left to pytest-docker-tools' guesses: a ``/.dockerenv`` file
makes it believe the tests run inside a container and point the test's Redis client at ``localhost:6379``, the
host's own Redis, so the broker's address is taken from its published port, always; and the image is built with
the proxy CA (``EXTRA_CA_CERTS``) that pip inside the build needs where HTTPS goes through one.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from celery import Celery
from pytest_celery import (
    CeleryBrokerCluster,
    CeleryTestSetup,
    CeleryTestWorker,
    CeleryWorkerCluster,
    CeleryWorkerContainer,
    RedisContainer,
    RedisTestBroker,
)
from pytest_celery.vendors.redis.defaults import REDIS_CONTAINER_TIMEOUT
from pytest_docker_tools import build, container, fxtr

from alerting.producer.capture import build as build_payload
from alerting.producer.capture import fingerprint
from alerting.producer.finalize import finalize
from alerting.producer.redact import Redactor
from alerting.shared.wire import TASK_NAME

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "alerts"  # the image's CMD: celery -A alerting.worker worker -Q alerts --loglevel INFO
ENGINE_SCRIPT = ROOT / ".ci" / "docker" / "ensure-engine"
BASE_IMAGES_SCRIPT = ROOT / ".ci" / "docker" / "base-images"
BASE_IMAGES = ("python:3.11-slim", "redis:7-alpine")  # FROM in worker/Dockerfile; the broker container below
BROKER_IMAGE = "redis:7-alpine"  # pytest-celery's default, redis:latest, is one more image to pull

pytestmark = [pytest.mark.docker]


def _extra_ca_certs() -> str:
    """PEM text for worker/Dockerfile's EXTRA_CA_CERTS: $EXTRA_CA_CERTS, else the host's local CAs (a proxy's)."""
    if os.environ.get("EXTRA_CA_CERTS"):
        return os.environ["EXTRA_CA_CERTS"]
    certs = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    return "\n".join(c.read_text(encoding="utf-8").strip() for c in certs)


def _ping() -> str | None:
    """Why no Docker engine answers, or None when one does."""
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # DockerException, requests' connection errors: all mean "no engine answers"
        return f"docker.from_env().ping(): {exc}"
    return None


def _no_engine(reason: str) -> None:
    """Skip on a developer's machine without Docker; in CI (``CI`` set, as .ci/run has it, after `make docker-test`
    brought an engine up) a missing engine is a failure: a skipped smoke test proves nothing."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: no Docker engine can be had: {reason}", pytrace=False)
    pytest.skip(f"no Docker engine can be had: {reason}")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers (started here if it is installed but stopped), with the base images present."""
    why = _ping()
    if why is not None:
        if os.geteuid() != 0 or not ENGINE_SCRIPT.is_file():
            _no_engine(f"{why}; start Docker to run the image smoke test")
        started = subprocess.run(
            [str(ENGINE_SCRIPT)],
            env={**os.environ, "ENSURE_ENGINE_NO_INSTALL": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if started.returncode != 0:
            _no_engine(f"{why}; {started.stderr.strip() or started.stdout.strip()}")
    client = docker.from_env(timeout=30)
    try:
        missing = [image for image in BASE_IMAGES if not client.images.list(name=image)]
    finally:
        client.close()
    if missing:
        # Pulled where a registry answers, else built from Debian packages (slow once, then cached).
        result = subprocess.run([str(BASE_IMAGES_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, f"base images {missing}: {result.stdout}{result.stderr}"


@pytest.fixture(scope="session")
def docker_client(docker_engine: None) -> Iterator[docker.DockerClient]:
    """pytest-docker-tools' client, made only once an engine answers (every container fixture here uses it)."""
    client = docker.from_env(timeout=120)
    yield client
    client.close()


class PublishedPortRedisContainer(RedisContainer):
    """The broker container, reached from the test through the port it publishes on the host.

    pytest-docker-tools switches to the container's own address and port (6379) when it sees /.dockerenv; with
    ``host_url`` spelled ``localhost:<port>`` by pytest-celery, that sends the test to the host's Redis on 6379.
    """

    def get_addr(self, port: str) -> tuple[str, int]:
        return ("127.0.0.1", int(self.ports[port][0]))


class AlertingWorkerContainer(CeleryWorkerContainer):
    """The image built from worker/Dockerfile, configured only through ALERTING_* variables, running its own CMD."""

    @property
    def client(self) -> Any:
        return self

    @classmethod
    def worker_name(cls) -> str:
        return "celery"  # the image's CMD does not name the worker: celery@<container hostname>

    @classmethod
    def worker_queue(cls) -> str:
        return QUEUE

    @classmethod
    def initial_env(
        cls, celery_worker_cluster_config: dict[str, Any], initial: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        broker = celery_worker_cluster_config["celery_broker_cluster_config"]["urls"][0]  # on the Docker network
        return {
            "ALERTING_BROKER_URL": broker,
            # Nothing listens on port 1 in the container: a refused connection, a transient failure, and with
            # no retries allowed the alert goes straight to the dead letters.
            "ALERTING_SMTP_HOST": "127.0.0.1",
            "ALERTING_SMTP_PORT": "1",
            "ALERTING_SMTP_TIMEOUT": "2",
            "ALERTING_MAX_RETRIES": "0",
            "ALERTING_MAIL_FROM": "alerts@example.com",
            "ALERTING_MAIL_TO": "ops@example.com",
            **(initial or {}),
        }


alerting_worker_image = build(
    path=str(ROOT),
    dockerfile="worker/Dockerfile",
    tag="celery-alerting-worker:smoke",
    buildargs={"EXTRA_CA_CERTS": _extra_ca_certs()},
    forcerm=True,  # a failed build leaves no stopped intermediate container behind
)

alerting_worker_container = container(
    image="{alerting_worker_image.id}",
    environment=fxtr("alerting_worker_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=AlertingWorkerContainer,
    timeout=60,
)


@pytest.fixture
def alerting_worker_env(celery_worker_cluster_config: dict[str, Any]) -> dict[str, str]:
    return AlertingWorkerContainer.initial_env(celery_worker_cluster_config)


@pytest.fixture
def default_redis_broker_cls() -> type[RedisContainer]:
    return PublishedPortRedisContainer


# pytest-celery's own fixture, with the wrapper class above: its container() factory fixes the wrapper class,
# which default_redis_broker_cls does not reach.
default_redis_broker = container(
    image="{default_redis_broker_image}",
    ports=fxtr("default_redis_broker_ports"),
    environment=fxtr("default_redis_broker_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=PublishedPortRedisContainer,
    timeout=REDIS_CONTAINER_TIMEOUT,
    command=fxtr("default_redis_broker_command"),
)


@pytest.fixture
def default_redis_broker_image() -> str:
    return BROKER_IMAGE


@pytest.fixture
def celery_broker_cluster(celery_redis_broker: RedisTestBroker) -> Iterator[CeleryBrokerCluster]:
    cluster = CeleryBrokerCluster(celery_redis_broker)  # Redis only: it is the broker and the state store
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_backend_cluster() -> None:
    return None  # alerting's tasks keep no results


@pytest.fixture
def celery_worker_cluster(
    alerting_worker_container: AlertingWorkerContainer, celery_setup_app: Celery
) -> Iterator[CeleryWorkerCluster]:
    worker = CeleryTestWorker(alerting_worker_container, app=celery_setup_app)
    cluster = CeleryWorkerCluster(worker)
    yield cluster
    cluster.teardown()


def _payload() -> dict[str, Any]:
    """A valid payload v1, built as the handler builds one."""
    redactor = Redactor()
    try:
        raise ConnectionRefusedError("db-1:5432")
    except ConnectionRefusedError:
        record = logging.getLogger("smoke.db").makeRecord(
            "smoke.db", logging.CRITICAL, __file__, 1, "database unreachable", (), sys.exc_info()
        )
    payload = build_payload(
        record, fingerprint=fingerprint(record), service="smoke", is_secret_key=redactor.is_secret_key
    )
    return finalize(payload, redactor)


# Building the image (pip install through the network) and starting two containers: a cold first run takes longer
# than the suite's default 120 s; with images cached it takes a few seconds.
@pytest.mark.timeout(600)
def test_worker_image_consumes_a_deliver_task_and_dead_letters_it_without_smtp(celery_setup: CeleryTestSetup) -> None:
    assert celery_setup.broker is not None
    broker_url = celery_setup.broker.config()["host_url"]
    assert broker_url.startswith("redis://localhost:")
    assert not broker_url.startswith("redis://localhost:6379/"), "the test would talk to the host's own Redis"
    payload = _payload()

    celery_setup.app.send_task(TASK_NAME, args=[payload], queue=QUEUE, serializer="json")

    worker = celery_setup.worker
    assert worker is not None
    worker.assert_log_exists(f"dead-lettered alert {payload['id']}", timeout=60)
    worker.assert_log_exists(f"Task {TASK_NAME}[", timeout=10)
    (raw,) = celery_setup.broker.container.client.lrange("alerting:dead", 0, -1)
    record = json.loads(raw)
    assert record["id"] == payload["id"]
    assert record["attempts"] == 1
    assert record["payload"]["message"] == "database unreachable"
