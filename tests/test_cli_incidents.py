"""``incidents ack|resolve|export`` as a user runs them, on a real SQLite store: what they print, the
exit codes (0 done, 1 already resolved, 2 unknown incident) and the postmortem export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.services.incidents import IncidentService
from tests.services.test_incidents import Clock, alert, group_of, service_of


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], check=False, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
async def config(tmp_path: Path) -> str:
    """A config whose SQLite store holds incident #1 (shop, 502, triggered) and its diagnosis."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        store = SqlStore(engine)
        clock = Clock()
        await IncidentService(store, route=service_of, group=group_of, clock=clock).ingest([alert("a1")])
        diagnosis = {"status": 502, "findings": [], "causes": [
            {"id": "upstream_down", "confidence": 0.9, "title": "Upstream is not running", "summary": "",
             "evidence": ["connect() failed (111: Connection refused)"], "next_steps": []}]}  # fmt: skip
        await store.save_diagnosis("1", diagnosis, clock.now)
    finally:
        await engine.dispose()
    path = tmp_path / "incident-bot.yaml"
    path.write_text(f"database_url: {url}\n")
    return str(path)


def test_ack_then_ack_again_then_resolve_then_resolve_again(config: str) -> None:
    first = cli("incidents", "ack", "1", "--actor", "alice", "--config", config)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "incident #1 acknowledged by alice\n"
    again = cli("incidents", "ack", "1", "--config", config)
    assert again.returncode == 0 and "already acknowledged by alice" in again.stdout
    done = cli("incidents", "resolve", "1", "--config", config)
    assert done.returncode == 0 and done.stdout == "incident #1 resolved\n"
    twice = cli("incidents", "resolve", "1", "--config", config)
    assert twice.returncode == 1 and twice.stderr == "incident-bot: incident #1 is already resolved\n"
    shown = json.loads(cli("incidents", "show", "1", "--json", "--config", config).stdout)
    assert shown["state"] == "resolved" and shown["acknowledged_by"] == "alice"
    assert shown["timeline"][-1]["actor"].startswith("cli")


@pytest.mark.parametrize("command", ["ack", "resolve", "export"])
def test_an_unknown_incident_is_one_line_and_exit_2(config: str, command: str) -> None:
    out = cli("incidents", command, "999", "--config", config)
    assert out.returncode == 2
    assert out.stderr == "incident-bot: error: no incident '999' in the store\n"


def test_export_prints_a_markdown_postmortem_and_json_on_request(config: str) -> None:
    cli("incidents", "ack", "1", "--actor", "alice", "--config", config)
    markdown = cli("incidents", "export", "1", "--config", config)
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.startswith("# Postmortem: incident #1: Site502")
    assert "> `connect() failed (111: Connection refused)`" in markdown.stdout
    assert "## Action items" in markdown.stdout and "(by alice)" in markdown.stdout
    as_json = cli("incidents", "export", "1", "--format", "json", "--config", config)
    body = json.loads(as_json.stdout)
    assert body["incident"]["id"] == "1" and body["diagnosis"]["causes"][0]["id"] == "upstream_down"
    assert body["time_to_resolve_seconds"] is None


def test_export_refuses_an_unknown_format_in_one_line(config: str) -> None:
    out = cli("incidents", "export", "1", "--format", "pdf", "--config", config)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
