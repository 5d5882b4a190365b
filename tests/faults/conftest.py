"""Fault-injection layer: each test breaks one promise the way it broke in review (real Redis that is stopped or
hung, real worker processes, SMTP servers that misbehave, hostile records) and checks the promise holds."""

from __future__ import annotations

from pathlib import Path

import pytest

# The integration layer's fixtures (private Redis, SMTP sink, worker processes), shared rather than copied.
from tests.integration.conftest import mail_sink, private_redis, start_worker, worker_env  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)
