"""The deployment files (docker-compose.yml, the Dockerfiles, .dockerignore) and the Flask example, checked
offline: no Docker daemon, no network. Validation uses the compose-spec schema vendored in check-jsonschema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML  # a dependency of check-jsonschema (PyYAML is not installed)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
WORKER_DOCKERFILE = ROOT / "worker" / "Dockerfile"
EXAMPLE_DOCKERFILE = ROOT / "examples" / "Dockerfile"


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = YAML(typ="safe", pure=True).load(COMPOSE.read_text(encoding="utf-8"))
    return document


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_redis_mailpit_worker_and_example_app() -> None:
    services = load_compose()["services"]
    assert {"redis", "mailpit", "worker", "app"} <= services.keys()

    assert services["redis"]["image"].startswith("redis:7")
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]

    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    assert {1025, 8025} <= container_ports(services["mailpit"])

    app = services["app"]
    assert (app["build"]["context"], app["build"]["dockerfile"]) == (".", "examples/Dockerfile")
    assert 8000 in container_ports(app)
    assert app["environment"]["ALERTING_BROKER_URL"] == "redis://redis:6379/0"
    assert "redis" in app["depends_on"]


def test_compose_worker_builds_from_worker_dockerfile_and_talks_to_redis_and_mailpit() -> None:
    worker = load_compose()["services"]["worker"]
    assert (worker["build"]["context"], worker["build"]["dockerfile"]) == (".", "worker/Dockerfile")
    assert (ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()

    env = worker["environment"]
    assert env["ALERTING_BROKER_URL"] == "redis://redis:6379/0"
    assert (env["ALERTING_SMTP_HOST"], str(env["ALERTING_SMTP_PORT"])) == ("mailpit", "1025")
    assert env["ALERTING_MAIL_TO"]
    assert env["ALERTING_MAIL_FROM"]
    assert not any("PASSWORD" in name for name in env)  # secrets come from files, not from the compose file

    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "mailpit" in worker["depends_on"]


def test_compose_builds_pass_a_proxy_ca_through_to_both_dockerfiles_empty_by_default() -> None:
    services = load_compose()["services"]
    for service, dockerfile in (("worker", WORKER_DOCKERFILE), ("app", EXAMPLE_DOCKERFILE)):
        assert services[service]["build"]["args"] == {"EXTRA_CA_CERTS": "${EXTRA_CA_CERTS:-}"}
        instructions = dockerfile_instructions(dockerfile)
        assert ("ARG", 'EXTRA_CA_CERTS=""') in instructions
        (pip_step,) = [args for keyword, args in instructions if keyword == "RUN" and "pip install" in args]
        assert "PIP_CERT" in pip_step  # pip trusts it in that step only: no ENV, nothing in the trust store
        assert not any("EXTRA_CA_CERTS" in args for keyword, args in instructions if keyword == "ENV")


def test_compose_throttle_window_defaults_to_five_minutes_and_can_be_set_from_the_environment() -> None:
    env = load_compose()["services"]["worker"]["environment"]
    assert env["ALERTING_THROTTLE_WINDOW"] == "${ALERTING_THROTTLE_WINDOW:-300}"


def test_ci_mail_catcher_override_swaps_only_the_mailpit_service() -> None:
    override = YAML(typ="safe", pure=True).load((ROOT / ".ci" / "docker" / "compose.mailsink.yml").read_text())
    assert set(override) == {"services"}
    assert set(override["services"]) == {"mailpit"}
    assert set(override["services"]["mailpit"]) == {"image", "build"}  # same ports, no other change


def test_worker_container_consumes_the_alerts_queue() -> None:
    worker = load_compose()["services"]["worker"]
    cmd = [json.loads(args) for keyword, args in dockerfile_instructions(WORKER_DOCKERFILE) if keyword == "CMD"][-1]
    command = worker.get("command", cmd)  # compose's command, when set, replaces the image's CMD
    assert command[:4] == ["celery", "-A", "alerting.worker", "worker"]
    assert command[command.index("-Q") + 1] == "alerts"


def test_worker_image_has_a_health_check_on_the_ready_file() -> None:
    instructions = dockerfile_instructions(WORKER_DOCKERFILE)
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "ALERTING_READY_FILE=" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "PASSWORD" not in env
    (healthcheck,) = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    assert "$ALERTING_READY_FILE" in healthcheck


@pytest.mark.parametrize("dockerfile", [WORKER_DOCKERFILE, EXAMPLE_DOCKERFILE], ids=["worker", "example"])
def test_images_run_as_a_non_root_user(dockerfile: Path) -> None:
    users = [args for keyword, args in dockerfile_instructions(dockerfile) if keyword == "USER"]
    assert users, f"{dockerfile} has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


@pytest.mark.parametrize("dockerfile", [WORKER_DOCKERFILE, EXAMPLE_DOCKERFILE], ids=["worker", "example"])
def test_build_context_includes_everything_the_dockerfiles_copy(dockerfile: Path) -> None:
    # .dockerignore is an allow-list ("*" then "!path" lines); a COPY of anything else fails the build.
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
            assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is in .dockerignore"


# The example configures logging with dictConfig at import, which (as dictConfig always does) closes every
# handler already in the process; run it in its own interpreter so that the rest of the test session keeps its own.
EXAMPLE_CLIENT = textwrap.dedent(
    """
    import json
    from alerting.testing import capture_alerts
    from examples.flask_app.app import app

    client = app.test_client()
    index = client.get("/")
    with capture_alerts() as alerts:
        boom = client.get("/boom")
    print(json.dumps({
        "index": [index.status_code, index.get_data(as_text=True)],
        "boom": [boom.status_code, boom.get_data(as_text=True)],
        "alerts": alerts,
    }))
    """
)


def test_flask_example_boom_route_returns_500_and_alerts_once() -> None:
    # A broker nobody listens on: should capturing fail, nothing could reach a real Redis.
    env = {**os.environ, "ALERTING_BROKER_URL": "redis://127.0.0.1:9/15"}
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLE_CLIENT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)

    status, page = outcome["index"]
    assert status == 200
    assert 'href="/boom"' in page

    status, body = outcome["boom"]
    assert status == 500
    assert body.strip()
    (alert,) = outcome["alerts"]
    assert alert["level"] == "CRITICAL"
    assert alert["exc_type"] == "RuntimeError"
    assert alert["message"] == "Checkout failed on /boom"
    assert "the payment provider did not answer" in alert["traceback"]
    assert alert["service"] == "flask-example"
    assert alert["logger"] == "examples.flask_app.app"
