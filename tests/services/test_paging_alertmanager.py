"""End to end: the real Prometheus Alertmanager posts to the bot's HTTP API, and the local fake of the
PagerDuty Events API v2 receives the page.

The bot is composed in-process as ``serve`` composes it (the SQLite store, the incident service with
the pager as its hooks, the FastAPI app under uvicorn, the diagnosis, outbox and escalation workers on
one event loop), with the PagerDuty sender pointed at the fake; the diagnosis is a stand-in that reports
the confirmation probe (connection refused) and then names ``upstream_down`` with its evidence, so the
test is about paging, not SSH. Asserted: Alertmanager's repeats page once; PagerDuty gets ``trigger``
(summary naming the service, the status and the top cause), then ``acknowledge`` when the incident is
acknowledged through the API, then ``resolve`` when the alerts end, all with the same routing key and the
incident's key as dedup key; while PagerDuty answers 429 for a while, each event still arrives once.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.adapters.http import build_api
from bot.adapters.pagerduty import PagerDutySender
from bot.config import load_settings
from bot.core.cards import render_message
from bot.core.incidents import Incident
from bot.core.models import Cause, Diagnosis, Finding, Severity
from bot.core.ports import Reporter
from bot.services.diagnosis_jobs import DiagnosisWorker
from bot.services.escalation import EscalationWorker
from bot.services.incidents import IncidentService
from bot.services.outbox import OutboxWorker, Pace
from bot.services.paging import PAGERDUTY, Pager, ThreadLinks, paging_options, rota_from_settings
from bot.services.routing import group_key, route
from bot.testing import RecordingNotifier
from bot.testing.pagerduty_api import FakePagerDuty
from tests.e2e.test_alertmanager import ALERTMANAGER, AMTOOL, TOKENS, Processes, healthy, notifications
from tests.test_serve import free_port

KEY = "e2eR0UT1NGKEY0123456789abcdef012"
REFUSED = "attempt 1/3: connect to 127.0.0.1:443 failed (111: Connection refused)"
UPSTREAM = "connect() failed (111: Connection refused) while connecting to upstream, upstream: http://127.0.0.1:8000/"


def now() -> datetime:
    return datetime.now(UTC)


async def stand_in_diagnosis(incident: Incident, reporter: Reporter) -> Diagnosis:
    """What a diagnosis of a stopped upstream reports: the probe first, then the cause with its evidence."""
    probe = Finding(kind="probe.connect_refused", severity=Severity.CRITICAL, summary="probe: refused",
                    evidence=(REFUSED,))  # fmt: skip
    await reporter.probe([probe])
    finding = Finding(
        kind="nginx.upstream_refused", severity=Severity.CRITICAL, summary="refused", evidence=(UPSTREAM,)
    )
    cause = Cause(
        id="upstream_down", confidence=0.93, title="Upstream is not running", summary="s", evidence=(UPSTREAM,)
    )
    return Diagnosis(status=incident.status, target=incident.service, findings=(probe, finding), causes=(cause,))


@dataclass
class Bot:
    url: str
    store: SqlStore
    chat: RecordingNotifier


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def amtool(am: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        AMTOOL, f"--alertmanager.url={am}", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@contextlib.asynccontextmanager
async def running_bot(tmp_path: Path, pagerduty: FakePagerDuty) -> AsyncIterator[Bot]:
    port = free_port()
    config = tmp_path / "incident-bot.yaml"
    config.write_text(
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'bot.db'}\nlisten: 127.0.0.1:{port}\n"
        "services:\n  shop:\n    match: {labels: {service: shop}}\n    url: https://shop.example.com/\n"
        "    escalation: [{schedule: primary, after: 10m}, {people: [bob]}]\n"
        "oncall:\n  people:\n    alice: {slack: U01ALICE, pagerduty: true}\n    bob: {slack: U01BOB}\n"
        "  schedules:\n    primary: {time_zone: Europe/Berlin, rotation: daily, members: [alice]}\n"
        f"pagerduty: {{events_url: {pagerduty.events_url}, retry_after: 1}}\n"
    )
    settings = load_settings(str(config), env={"PAGERDUTY_ROUTING_KEY": KEY, **TOKENS})
    rota = rota_from_settings(settings)
    assert rota is not None
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    store = SqlStore(engine)
    pager = Pager(store, rota, now, options=paging_options(settings, slack_dm=False, telegram_dm=False),
                  thread_link=ThreadLinks(store, settings.oncall.slack_url if settings.oncall else None))  # fmt: skip
    service = IncidentService(store, route=lambda a: route(a, settings), group=group_key, clock=now, hooks=pager)
    api = build_api(service, store, webhook_token=TOKENS["INCIDENT_BOT_WEBHOOK_TOKEN"],
                    api_token=TOKENS["INCIDENT_BOT_API_TOKEN"])  # fmt: skip
    chat = RecordingNotifier(name="console")
    sender = PagerDutySender(KEY, events_url=settings.pagerduty.events_url, retry_after=settings.pagerduty.retry_after,
                             thread_link=pager.thread_link)  # fmt: skip
    stop = asyncio.Event()
    workers = [
        DiagnosisWorker(store, stand_in_diagnosis, now, "diagnosis", timedelta(minutes=2), hooks=pager).run_forever(
            stop, idle=0.2
        ),
        OutboxWorker(
            store,
            render_message,
            {"console": chat, PAGERDUTY: sender},
            now,
            {"console": Pace(0.0), PAGERDUTY: Pace(0.5)},
            on_rejected=pager.rejected,
            backoff=0.5,
            backoff_cap=2.0,
        ).run_forever(stop, idle=0.2),
        EscalationWorker(store, pager, now, "escalation").run_forever(stop, idle=0.2),
    ]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    tasks = [asyncio.create_task(w) for w in workers] + [asyncio.create_task(server.serve())]
    try:
        await wait_for(lambda: server.started, 20, "the bot's HTTP server")
        yield Bot(f"http://127.0.0.1:{port}", store, chat)
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.aclose()
        await engine.dispose()


@pytest.fixture(scope="module")
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    if not (Path(ALERTMANAGER).exists() and shutil.which(AMTOOL)):
        pytest.fail(
            "prometheus-alertmanager is not installed: run ./dev setup (apt-get install prometheus-alertmanager)"
        )
    procs = Processes()

    def start(bot_port: int) -> str:
        am_port = free_port()
        config = tmp_path / "am.yml"
        config.write_text(
            "route:\n  receiver: bot\n  group_by: [alertname, service]\n"
            "  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 3s\n"
            "receivers:\n  - name: bot\n    webhook_configs:\n"
            f"      - url: http://127.0.0.1:{bot_port}/alerts/alertmanager\n        send_resolved: true\n"
            "        http_config:\n          authorization:\n"
            f"            credentials: {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}\n"
        )
        procs.start(
            [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
             f"--web.external-url=http://127.0.0.1:{am_port}"],
            tmp_path / "alertmanager.log",
        )  # fmt: skip
        return f"http://127.0.0.1:{am_port}"

    yield start
    procs.stop()


async def test_alertmanager_to_pagerduty_trigger_acknowledge_resolve_once_each_through_429s(
    tmp_path: Path, pagerduty: FakePagerDuty, alertmanager: Callable[[int], str]
) -> None:
    pagerduty.reset()
    pagerduty.rate_limit_for(4.0, retry_after=1)  # PagerDuty throttles the first seconds of the outage
    async with running_bot(tmp_path, pagerduty) as bot:
        am = alertmanager(int(bot.url.rsplit(":", 1)[1]))
        await wait_for(lambda: healthy(f"{am}/-/ready"), 30, "alertmanager")
        labels = ["alertname=HTTP5xx", "service=shop", "status=502", "instance=https://shop.example.com/"]
        await amtool(am, "alert", "add", *labels, "--annotation=summary=shop returns 502 Bad Gateway")
        await wait_for(lambda: len(pagerduty.accepted("trigger")) == 1, 60, "the PagerDuty trigger")
        await asyncio.sleep(7)  # Alertmanager repeats the group meanwhile: nobody is paged again
        assert await asyncio.to_thread(notifications, am) >= 2, "Alertmanager should have sent the group again"
        [incident] = await bot.store.list_incidents()
        headers = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
        async with httpx.AsyncClient() as client:
            acked = await client.post(f"{bot.url}/api/incidents/{incident.id}/ack", json={"actor": "alice"},
                                      headers=headers)  # fmt: skip
        assert acked.status_code == 200, acked.text
        await wait_for(lambda: len(pagerduty.accepted("acknowledge")) == 1, 30, "the PagerDuty acknowledge")
        ended = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await amtool(am, "alert", "add", *labels, f"--end={ended}")
        await wait_for(lambda: len(pagerduty.accepted("resolve")) == 1, 60, "the PagerDuty resolve")
        await asyncio.sleep(1)

        events = pagerduty.accepted()
        assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
        assert {e["routing_key"] for e in events} == {KEY}
        assert {e["dedup_key"] for e in events} == {incident.key} == {"shop:5xx"}
        summary = events[0]["payload"]["summary"]
        assert summary.startswith("shop HTTP 502: Upstream is not running (upstream_down")
        assert events[0]["payload"]["custom_details"]["evidence"] == [REFUSED]
        assert 429 in pagerduty.statuses()  # the throttling really happened
        kinds = [e.kind for e in await bot.store.timeline(incident.id)]
        assert kinds.count("paged") == 1 and "page_failed" not in kinds
        pages = [s for s in bot.chat.sent if "page" in s.message.payload]
        assert len(pages) == 1 and pages[0].message.payload["mentions"][0]["slack"] == "U01ALICE"
        assert await bot.store.pending_timers() == []  # the acknowledgement stopped the escalation
