"""Importing the package root, the throttle policy or the test helpers loads none of Celery, kombu or redis.

The handler's imports cost ~260 ms; a tool that only needs the pure throttle policy, or a user's test suite that
only needs ``capture_alerts``, should not pay for them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu', 'redis')))"


@pytest.mark.parametrize("module", ["alerting", "alerting.shared.throttle", "alerting.testing"])
def test_importing_a_light_module_loads_no_celery_kombu_or_redis(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}, sys; {HEAVY}"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


def test_the_root_still_exports_alerting_handler_on_first_use() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import alerting; print(alerting.AlertHandler.__module__, alerting.AlertHandler.__name__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "alerting.producer.handler AlertHandler\n", "")
