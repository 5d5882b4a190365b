"""The README's Django snippet works when pasted, as it says, at the end of a fresh ``startproject`` settings file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_block(heading: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split(f"### {heading}\n\n```python\n", 1)[1].split("```", 1)[0]


def test_the_django_snippet_pasted_into_a_fresh_project_passes_checks_and_keeps_console_logging(
    tmp_path: Path,
) -> None:
    django_admin = [sys.executable, "-m", "django", "startproject", "shop", str(tmp_path)]
    subprocess.run(django_admin, check=True, capture_output=True, timeout=60)
    settings = tmp_path / "shop" / "settings.py"
    settings.write_text(settings.read_text(encoding="utf-8") + "\n" + _readme_block("Django"), encoding="utf-8")

    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout

    probe = (
        "import django, logging; django.setup(); from django.conf import settings; "
        "print(settings.MIDDLEWARE[0]); print(sorted(type(h).__name__ for h in logging.getLogger().handlers))"
    )
    env_run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"DJANGO_SETTINGS_MODULE": "shop.settings", "PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert env_run.returncode == 0, env_run.stderr
    middleware, handlers = env_run.stdout.splitlines()
    assert middleware == "alerting.contrib.django.AlertingMiddleware"  # first, as the snippet says
    assert handlers == "['AlertHandler', 'StreamHandler']"  # alerts, and the app's own console logging kept
