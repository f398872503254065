"""The real Prometheus Alertmanager posting to a real `incident-bot serve`, on SQLite and PostgreSQL.

Alertmanager (Debian's prometheus-alertmanager) is started with a webhook receiver pointing at the bot
and a short repeat interval; alerts are fired with `amtool`. Asserted: one incident for the group
however often Alertmanager repeats it, its status and service, the bearer token in use; then the
alerts are expired and the incident resolves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_serve import free_port

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"
TOKENS = {"INCIDENT_BOT_WEBHOOK_TOKEN": "am-hook-token", "INCIDENT_BOT_API_TOKEN": "am-api-token"}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    make_db: Callable[[], str] = request.getfixturevalue("pg_database_url")
    return make_db()


def start_stack(
    procs: Processes,
    tmp_path: Path,
    config: Path,
    *,
    database_url: str,
    ports: tuple[int, int],
    repeat_interval: int = 3,
    env: dict[str, str] | None = None,
) -> Path:
    """Migrate (PostgreSQL), start `serve` with ``config`` and an Alertmanager that posts to it; returns serve's log."""
    bot_port, am_port = ports
    am_config = tmp_path / "am.yml"
    am_config.write_text(
        "route:\n  receiver: bot\n  group_by: [alertname, service]\n"
        f"  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: {repeat_interval}s\n"
        "receivers:\n  - name: bot\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{bot_port}/alerts/alertmanager\n        send_resolved: true\n"
        "        http_config:\n          authorization:\n"
        f"            credentials: {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}\n"
    )
    if database_url.startswith("postgresql"):
        upgraded = subprocess.run(
            [sys.executable, "-m", "bot", "db", "upgrade", "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert upgraded.returncode == 0, upgraded.stderr
    serve_log = tmp_path / "serve.log"
    serve = procs.start([sys.executable, "-m", "bot", "serve", "--config", str(config)], serve_log, env or TOKENS)
    wait_until(lambda: healthy(f"http://127.0.0.1:{bot_port}/healthz") or serve.poll() is not None, 30, "serve")
    assert serve.poll() is None, serve_log.read_text()
    procs.start(
        [ALERTMANAGER, f"--config.file={am_config}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
         f"--web.external-url=http://127.0.0.1:{am_port}"],
        tmp_path / "alertmanager.log",
    )  # fmt: skip
    wait_until(lambda: healthy(f"http://127.0.0.1:{am_port}/-/ready"), 30, "alertmanager")
    return serve_log


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[dict[str, Any]]:
    if not (Path(ALERTMANAGER).exists() and shutil.which(AMTOOL)):
        pytest.fail("prometheus-alertmanager is not installed: run ./dev setup")
    bot_port, am_port = free_port(), free_port()
    config = tmp_path / "incident-bot.yaml"
    config.write_text(
        f"database_url: {database_url}\nlisten: 127.0.0.1:{bot_port}\n"
        "hosts: {web-1: {address: 127.0.0.1}}\n"
        "services: {shop: {match: {labels: {service: shop}}, hosts: [web-1]}}\n"
    )
    procs = Processes()
    try:
        start_stack(procs, tmp_path, config, database_url=database_url, ports=(bot_port, am_port))
        yield {"bot": f"http://127.0.0.1:{bot_port}", "am": f"http://127.0.0.1:{am_port}", "tmp": tmp_path}
    finally:
        procs.stop()


def amtool(am: str, *args: str) -> None:
    done = subprocess.run([AMTOOL, f"--alertmanager.url={am}", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def notifications(am: str) -> float:
    """How many webhook notifications Alertmanager has sent successfully (its own metrics)."""
    text = httpx.get(f"{am}/metrics", timeout=5).text
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("alertmanager_notifications_total") and 'integration="webhook"' in line
    )
    failed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("alertmanager_notifications_failed_total") and 'integration="webhook"' in line
    )
    return total - failed


def incidents(bot: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
    found: list[dict[str, Any]] = httpx.get(f"{bot}/api/incidents", headers=headers, timeout=5).json()["incidents"]
    return found


def test_alertmanager_repeats_make_one_incident_that_resolves_when_the_alerts_end(stack: dict[str, Any]) -> None:
    am, bot = stack["am"], stack["bot"]
    labels = ["alertname=HTTP5xx", "service=shop", "status=502", "instance=https://shop.example.com/"]
    amtool(am, "alert", "add", *labels, "--annotation=summary=shop returns 502 Bad Gateway")
    amtool(
        am, "alert", "add", "alertname=HTTP5xx", "service=shop", "status=502", "instance=https://shop.example.com/api"
    )
    wait_until(lambda: bool(incidents(bot)), 30, "the first incident")
    time.sleep(8)  # several repeat intervals: Alertmanager re-sends the whole group
    [incident] = incidents(bot)
    assert incident["service"] == "shop" and incident["status"] == 502 and incident["state"] == "triggered"
    assert incident["alert_count"] == 2
    assert notifications(am) >= 2, "Alertmanager should have sent the group more than once by now"

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    amtool(am, "alert", "add", *labels, f"--end={now}")
    amtool(am, "alert", "add", "alertname=HTTP5xx", "service=shop", "status=502",
           "instance=https://shop.example.com/api", f"--end={now}")  # fmt: skip
    wait_until(lambda: incidents(bot)[0]["state"] == "resolved", 30, "the incident to resolve")
    assert len(incidents(bot)) == 1
