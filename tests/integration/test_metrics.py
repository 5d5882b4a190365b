"""Prometheus metrics from a real prefork worker: what was received, sent, suppressed, retried, dead-lettered."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from alerting import AlertHandler
from alerting.testing.mailsink import MailSink
from alerting.testing.workerproc import WorkerProcess
from tests.integration.conftest import wait_until
from tests.support.servers import free_port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_worker_metrics_count_every_outcome_and_the_latency(
    make_handler: Callable[..., AlertHandler], mail_sink: MailSink, start_worker: Callable[..., WorkerProcess]
) -> None:
    port = free_port()
    start_worker({"ALERTING_METRICS_PORT": str(port)}, concurrency=2)
    log = logging.getLogger("test.metrics")
    handler = make_handler(log, coalesce_interval=0)

    def disk_full() -> None:
        log.critical("disk almost full")

    mail_sink.fail_next("451 4.3.0 busy", times=1)
    disk_full()  # retried once, then sent
    log.critical("certificate expires soon")  # sent
    mail_sink.wait_for(2)
    disk_full()  # a repeat inside the throttle window: suppressed
    handler.flush(timeout=5)
    mail_sink.reject_all("550 5.7.1 no")
    log.critical("backup job failed")  # dead-lettered

    def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        m = scrape(port)
        return (
            m
            if m.get(("alerting_alerts_received_total", ())) == 4
            and m.get(("alerting_dead_letters_total", (("kind", "smtp-550"),)))
            else None
        )

    m = wait_until(settled, timeout=15)
    assert m[("alerting_emails_sent_total", (("kind", "alert"),))] == 2
    assert m[("alerting_alerts_not_mailed_total", (("reason", "suppressed"),))] == 1
    assert m[("alerting_delivery_retries_total", (("kind", "smtp-451"),))] == 1
    assert m[("alerting_delivery_failures_total", (("kind", "smtp-451"),))] == 1
    assert m[("alerting_delivery_failures_total", (("kind", "smtp-550"),))] == 1
    assert m[("alerting_delivery_latency_seconds_count", ())] == 2
    assert m[("alerting_delivery_latency_seconds_bucket", (("le", "+Inf"),))] == 2
