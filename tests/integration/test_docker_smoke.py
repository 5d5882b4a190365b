"""The worker image (worker/Dockerfile) on pytest-celery's containers: it consumes ``alerting.deliver`` from a Redis
container and, with no SMTP server to reach, dead-letters the alert in that Redis.

Needs a Docker daemon; skipped, with the reason, where none answers. Nothing here touches Docker at import time
except the ping that decides the skip, so collection works without one.
"""

from __future__ import annotations

import json
import logging
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
    RedisTestBroker,
)
from pytest_docker_tools import build, container, fxtr

from alerting.payload import build as build_payload
from alerting.payload import fingerprint
from alerting.publisher import finalize
from alerting.redact import Redactor
from alerting.transport import TASK_NAME

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "alerts"  # the image's CMD: celery -A alerting.worker worker -Q alerts --loglevel INFO


def _docker_unavailable() -> str | None:
    """Why no Docker daemon can be used, or None when one answers."""
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # DockerException, requests' connection errors: all mean "no daemon to use"
        return f"no Docker daemon answers (docker.from_env().ping(): {exc}); start Docker to run the image smoke test"
    return None


_NO_DOCKER = _docker_unavailable()

pytestmark = [pytest.mark.docker, pytest.mark.skipif(_NO_DOCKER is not None, reason=_NO_DOCKER or "")]


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
    def initial_env(cls, celery_worker_cluster_config: dict[str, Any], initial: dict[str, Any] | None = None) -> dict:
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


alerting_worker_image = build(path=str(ROOT), dockerfile="worker/Dockerfile", tag="celery-alerting-worker:smoke")

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


def test_worker_image_consumes_a_deliver_task_and_dead_letters_it_without_smtp(celery_setup: CeleryTestSetup) -> None:
    payload = _payload()

    celery_setup.app.send_task(TASK_NAME, args=[payload], queue=QUEUE, serializer="json")

    worker = celery_setup.worker
    assert worker is not None
    worker.assert_log_exists(f"dead-lettered alert {payload['id']}", timeout=60)
    worker.assert_log_exists(f"Task {TASK_NAME}[", timeout=10)
    assert celery_setup.broker is not None
    (raw,) = celery_setup.broker.container.client.lrange("alerting:dead", 0, -1)
    record = json.loads(raw)
    assert record["id"] == payload["id"]
    assert record["attempts"] == 1
    assert record["payload"]["message"] == "database unreachable"
