"""Settings that passed the start check and broke at run time now stop a real worker at start: exit 78 (EX_CONFIG)
and one line naming the variable. Also the metrics port without the ``metrics`` extra installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alerting.testing.workerproc import WorkerProcess

# Blocks the import the way a missing distribution does, in every process started with this directory on
# PYTHONPATH (site imports sitecustomize at start-up).
BLOCK_PROMETHEUS = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == "prometheus_client" or name.startswith("prometheus_client."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _run_worker(env: dict[str, str], queue: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    worker = WorkerProcess(env, queue=queue)
    return subprocess.run(worker.args, env=worker.env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALERTING_DIGEST_POLL_INTERVAL", "1e300"),  # was: the poller thread died of OverflowError, no digests
        ("ALERTING_IDEMPOTENCY_TTL", "1e20"),  # was: every decision failed in Redis, throttling silently off
    ],
)
def test_a_worker_with_an_out_of_range_setting_exits_78_naming_it(
    worker_env: dict[str, str], queue: str, variable: str, value: str
) -> None:
    result = _run_worker({**worker_env, variable: value}, queue)

    assert result.returncode == 78, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith(f"celery-alerting: configuration error: {variable}: "), lines[0]


def test_metrics_port_without_the_metrics_extra_exits_78_with_the_fix(
    worker_env: dict[str, str], queue: str, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_PROMETHEUS, encoding="utf-8")
    python_path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    probe = subprocess.run(
        [sys.executable, "-c", "import prometheus_client"], env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "No module named 'prometheus_client'" in probe.stderr  # the block works: as if not installed

    result = _run_worker({**worker_env, "ALERTING_METRICS_PORT": "9108", "PYTHONPATH": python_path}, queue)

    assert result.returncode == 78, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("celery-alerting: configuration error: ALERTING_METRICS_PORT: "), lines[0]
    assert 'pip install "celery-alerting[metrics]"' in lines[0]
