"""`incident-bot serve` as a user runs it: a real server process on SQLite, a real Alertmanager payload
posted to it, the incident read back over the API and with `incidents list|show`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CAPTURED = Path(__file__).parent / "fixtures" / "alerts" / "alertmanager"
PAYLOAD = (CAPTURED / "01-firing-group-of-two.json").read_bytes()
PARTLY = (CAPTURED / "04-one-resolved-one-firing.json").read_bytes()
RESOLVED = (CAPTURED / "08-all-resolved.json").read_bytes()
TOKENS = {"INCIDENT_BOT_WEBHOOK_TOKEN": "hook-token-123", "INCIDENT_BOT_API_TOKEN": "api-token-456"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    config = tmp_path / "incident-bot.yaml"
    config.write_text(
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'bot.db'}\nlisten: 127.0.0.1:{port}\n"
        "hosts: {web-1: {address: 127.0.0.1}}\n"
        "services: {lab: {match: {labels: {service: lab}}, hosts: [web-1]}}\n"
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--config", str(config)],
        env={**os.environ, **TOKENS},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.2)
        yield base, config
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_an_alert_becomes_an_incident_readable_over_the_api_and_the_cli(server: tuple[str, Path]) -> None:
    base, config = server
    hook = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}
    api = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
    for _ in range(3):  # Alertmanager's retries and repeats
        response = httpx.post(f"{base}/alerts/alertmanager", content=PAYLOAD, headers=hook, timeout=10)
        assert response.status_code == 202, response.text
    assert httpx.post(f"{base}/alerts/alertmanager", content=PAYLOAD, timeout=10).status_code == 401
    listed = httpx.get(f"{base}/api/incidents", headers=api, timeout=10).json()["incidents"]
    assert len(listed) == 1
    incident = listed[0]
    assert incident["state"] == "triggered" and incident["alert_count"] == 2

    cli_list = bot("incidents", "list", "--json", "--config", str(config))
    assert cli_list.returncode == 0, cli_list.stderr
    assert [i["id"] for i in json.loads(cli_list.stdout)["incidents"]] == [incident["id"]]
    shown = bot("incidents", "show", incident["id"], "--config", str(config))
    assert shown.returncode == 0 and "opened" in shown.stdout
    missing = bot("incidents", "show", "999", "--config", str(config))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1

    for payload in (PARTLY, RESOLVED):  # the group clears one alert at a time, as Alertmanager sent it
        assert httpx.post(f"{base}/alerts/alertmanager", content=payload, headers=hook, timeout=10).status_code == 202
    final = httpx.get(f"{base}/api/incidents/{incident['id']}", headers=api, timeout=10).json()
    assert final["state"] == "resolved"
    assert [e["kind"] for e in final["timeline"]][-1] == "resolved"


def test_a_public_listener_without_tokens_is_refused_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"listen: 0.0.0.0:{free_port()}\ndatabase_url: sqlite+aiosqlite:///{tmp_path / 'x.db'}\n")
    env = {k: "" for k in TOKENS}
    done = bot("serve", "--config", str(config), env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "INCIDENT_BOT_WEBHOOK_TOKEN" in done.stderr


def test_a_public_listener_with_slack_in_http_mode_and_no_signing_secret_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"listen: 0.0.0.0:{free_port()}\ndatabase_url: sqlite+aiosqlite:///{tmp_path / 'x.db'}\n")
    done = bot(
        "serve", "--config", str(config), env={**TOKENS, "SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_SIGNING_SECRET": ""}
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "SLACK_SIGNING_SECRET is unset" in done.stderr


def test_a_telegram_webhook_without_its_secret_is_refused_even_on_loopback(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\ndatabase_url: sqlite+aiosqlite:///{tmp_path / 'x.db'}\n"
        "telegram: {webhook_url: https://bot.example.com/telegram/webhook}\n"
    )
    done = bot("serve", "--config", str(config), env={**TOKENS, "TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "TELEGRAM_WEBHOOK_SECRET" in done.stderr


def test_a_second_serve_on_the_same_sqlite_file_refuses_to_start(server: tuple[str, Path], tmp_path: Path) -> None:
    """SQLite is the single-process store: the second process says so instead of sharing the file."""
    _, config = server
    second = tmp_path / "second.yaml"
    second.write_text(config.read_text().replace(server[0].rsplit(":", 1)[1], str(free_port())))
    done = bot("serve", "--config", str(second), env=TOKENS)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "another incident-bot serve already uses" in done.stderr


def test_a_diagnosis_stuck_on_a_silent_host_does_not_hold_back_the_next_incident(tmp_path: Path) -> None:
    """``jobs.concurrency`` workers: while one job waits on a host that never answers, another incident's
    diagnosis is done."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts into the backlog and never says a word
        port = free_port()
        config = tmp_path / "incident-bot.yaml"
        config.write_text(
            f"database_url: sqlite+aiosqlite:///{tmp_path / 'bot.db'}\nlisten: 127.0.0.1:{port}\n"
            "ssh: {connect_timeout: 30, deadline: 40}\n"
            f"hosts: {{mute: {{address: 127.0.0.1, port: {silent.getsockname()[1]}}}}}\n"
            "services: {slow: {match: {labels: {service: slow}}, hosts: [mute]},"
            " fast: {match: {labels: {service: fast}}}}\n"
            "jobs: {concurrency: 2}\n"
        )
        log = (tmp_path / "serve.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--config", str(config)],
            env={**os.environ, **TOKENS, "XDG_STATE_HOME": str(tmp_path / "state")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        hook = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}
        api = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
        try:
            deadline = time.monotonic() + 20
            while not _up(base):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
            for service in ("slow", "fast"):
                body = {"id": service, "state": "firing", "status": 502, "service": service}
                assert httpx.post(f"{base}/alerts/generic", json=body, headers=hook, timeout=10).status_code == 202
            deadline = time.monotonic() + 15
            while True:
                incidents = {
                    i["service"]: i for i in httpx.get(f"{base}/api/incidents", headers=api).json()["incidents"]
                }
                fast = httpx.get(f"{base}/api/incidents/{incidents['fast']['id']}", headers=api).json()
                if "diagnosis" in fast:
                    break
                assert time.monotonic() < deadline, "the fast incident waited behind the slow one"
                time.sleep(0.3)
            slow = httpx.get(f"{base}/api/incidents/{incidents['slow']['id']}", headers=api).json()
            assert "diagnosis" not in slow  # still waiting on its silent host
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
