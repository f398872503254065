"""The issue's end-to-end check: the real Prometheus Alertmanager alerting a real `incident-bot serve`
about the fault lab with its upstream down, on SQLite and on PostgreSQL.

The lab is started and `upstream_down` broken; the bot's config is the lab's own
``<lab>/incident-bot.yaml`` (service ``lab`` matches the label ``service: lab``, its host is the lab
over SSH) plus ``database_url`` and ``listen``. Alertmanager's webhook receiver posts to the bot with
bearer credentials and repeats the group every few seconds; an alert is fired with ``amtool``.
Asserted over ``/api/incidents``: exactly one incident with status 502 whose diagnosis holds findings
from the lab's host and names ``upstream_down`` as the top cause, quoting nginx's
``connect() … failed (111: Connection refused)`` line; after several repeats still one incident and
one diagnosis job; once the alert is expired with ``amtool --end`` the incident resolves.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.lab import Lab
from tests.e2e.test_alertmanager import (
    ALERTMANAGER,
    AMTOOL,
    TOKENS,
    Processes,
    amtool,
    database_url,  # noqa: F401 - the sqlite/postgresql parametrised fixture
    incidents,
    notifications,
    start_stack,
    wait_until,
)
from tests.labfixture import running_lab
from tests.test_serve import free_port

REPEAT_INTERVAL = 3  # seconds: Alertmanager re-sends the (unchanged) group this often


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-aml-") as the_lab:
        yield the_lab


@pytest.fixture
def stack(lab: Lab, tmp_path: Path, database_url: str) -> Iterator[dict[str, Any]]:  # noqa: F811
    if not (Path(ALERTMANAGER).exists() and Path(AMTOOL).exists()):
        pytest.fail("prometheus-alertmanager is not installed: run ./dev setup")
    bot_port, am_port = free_port(), free_port()
    document: dict[str, Any] = yaml.safe_load((lab.paths.root / "incident-bot.yaml").read_text())
    document["database_url"] = database_url
    document["listen"] = f"127.0.0.1:{bot_port}"
    config = tmp_path / "incident-bot.yaml"
    config.write_text(yaml.safe_dump(document))
    env = {**TOKENS, "XDG_STATE_HOME": str(tmp_path / "state")}
    procs = Processes()
    try:
        lab.rotate_logs()
        lab.break_("upstream_down")
        serve_log = start_stack(
            procs,
            tmp_path,
            config,
            database_url=database_url,
            ports=(bot_port, am_port),
            repeat_interval=REPEAT_INTERVAL,
            env=env,
        )
        yield {"bot": f"http://127.0.0.1:{bot_port}", "am": f"http://127.0.0.1:{am_port}", "log": serve_log}
    finally:
        procs.stop()
        lab.repair()


def detail(bot: str, incident_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
    answer = httpx.get(f"{bot}/api/incidents/{incident_id}", headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def kinds(body: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in body["timeline"]]


def test_alertmanager_alert_about_the_lab_is_one_incident_diagnosed_upstream_down_that_resolves(
    stack: dict[str, Any], lab: Lab
) -> None:
    am, bot = stack["am"], stack["bot"]
    labels = ["alertname=HTTP5xx", "service=lab", "status=502", f"instance={lab.url}"]
    amtool(am, "alert", "add", *labels, "--annotation=summary=the lab returns 502 Bad Gateway")

    wait_until(lambda: bool(incidents(bot)), 30, "the incident")
    [incident] = incidents(bot)
    assert incident["service"] == "lab" and incident["routed"] and incident["status"] == 502
    wait_until(lambda: "diagnosis" in detail(bot, incident["id"]), 120, f"the diagnosis\n{stack['log'].read_text()}")
    sent = notifications(am)
    wait_until(lambda: notifications(am) >= sent + 2, 6 * REPEAT_INTERVAL, "two more repeats of the group")

    [again] = incidents(bot)
    assert again["id"] == incident["id"] and again["state"] == "triggered" and again["alert_count"] == 1
    body = detail(bot, incident["id"])
    assert kinds(body).count("diagnosis_queued") == 1, kinds(body)  # the repeats queued no second job
    assert kinds(body).count("diagnosis_done") == 1, kinds(body)
    diagnosis = body["diagnosis"]
    from_lab = [f for f in diagnosis["findings"] if f.get("host") == "lab"]
    assert from_lab, [(f["kind"], f.get("host")) for f in diagnosis["findings"]]  # read over SSH from the lab
    causes = diagnosis["causes"]
    assert causes[0]["id"] == "upstream_down", [(c["id"], c["confidence"]) for c in causes[:3]]
    refused = [line for line in causes[0]["evidence"] if "connect() to" in line and "(111: Connection refused)" in line]
    assert refused, causes[0]["evidence"]
    done = next(e for e in body["timeline"] if e["kind"] == "diagnosis_done")
    assert done["data"]["cause"] == "upstream_down"

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    amtool(am, "alert", "add", *labels, f"--end={now}")
    wait_until(lambda: incidents(bot)[0]["state"] == "resolved", 30, "the incident to resolve")
    [resolved] = incidents(bot)
    assert resolved["id"] == incident["id"]
    assert kinds(detail(bot, incident["id"]))[-1] == "resolved"
