"""The wire contract is written once: what the producer builds and what the worker reads name the same fields."""

from __future__ import annotations

import dataclasses
import logging

from alerting.consumer.schema import Alert, parse
from alerting.producer.capture import build
from alerting.producer.finalize import finalize
from alerting.producer.redact import Redactor
from alerting.shared.wire import PAYLOAD_VERSION, PayloadFields

# In the payload but not in the Alert: the version, checked by parse() and not kept.
ENVELOPE_ONLY = {"v"}
# Required by the worker but absent from a freshly built payload: finalize() sets it as the payload leaves.
SET_ON_LEAVING = {"id"}


def test_the_producers_payload_fields_and_the_workers_alert_fields_are_the_same_names() -> None:
    payload_keys = set(PayloadFields.__required_keys__ | PayloadFields.__optional_keys__)
    alert_fields = {f.name for f in dataclasses.fields(Alert)}
    assert payload_keys - ENVELOPE_ONLY == alert_fields


def test_the_fields_the_worker_requires_are_the_payloads_required_fields() -> None:
    no_default = {
        f.name
        for f in dataclasses.fields(Alert)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert set(PayloadFields.__required_keys__) - ENVELOPE_ONLY == no_default - SET_ON_LEAVING


def test_a_built_and_finalized_payload_has_only_contract_fields_and_parses() -> None:
    record = logging.LogRecord("app", logging.CRITICAL, "/srv/app.py", 3, "disk %s full", ("/var",), None)
    payload = finalize(build(record, fingerprint="fp1", service="shop", is_secret_key=lambda _: False), Redactor())
    assert set(payload) <= set(PayloadFields.__required_keys__ | PayloadFields.__optional_keys__)
    assert payload["v"] == PAYLOAD_VERSION
    assert parse(payload).message == "disk /var full"
