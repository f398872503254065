"""``GET /metrics``: Prometheus text with alerts by source and outcome, incidents opened, the diagnosis
duration histogram (fed by ``Metrics.timed``), jobs queued and the outbox lag, read from the store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.adapters.http import build_api
from bot.adapters.metrics import Metrics
from bot.core.incidents import Incident
from bot.core.models import Diagnosis
from bot.core.ports import Reporter
from bot.services.incidents import IncidentService
from bot.services.routing import group_key
from bot.testing import MemoryStore, RecordingReporter
from tests.adapters.test_http import FIRING, TOKEN, auth, make_service

OPENED_AT = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)  # make_service's clock


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample line; fails when it is absent."""
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    wanted = f"{name}{{{inside}}}" if labels else name
    for line in text.splitlines():
        if not line.startswith("#") and line.rpartition(" ")[0] == wanted:
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"no sample {wanted} in:\n{text}")


def routed_service(store: MemoryStore) -> IncidentService:
    """Every alert goes to service ``shop``, so an opening queues a diagnosis job."""
    return IncidentService(store, route=lambda _: "shop", group=group_key, clock=lambda: OPENED_AT)


async def scrape(metrics: Metrics, store: MemoryStore, *posts: bytes) -> httpx.Response:
    api = build_api(routed_service(store), store, webhook_token=TOKEN, metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot") as c:
        for body in posts:
            await c.post("/alerts/alertmanager", content=body, headers=auth())
        await c.post("/alerts/alertmanager", content=FIRING, headers={"Authorization": "Bearer wrong"})
        return await c.get("/metrics")


async def test_alerts_and_incidents_are_counted_by_source_and_outcome() -> None:
    store = MemoryStore()
    metrics = Metrics(clock=lambda: OPENED_AT + timedelta(seconds=90))
    response = await scrape(metrics, store, FIRING, FIRING, b"{broken")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert sample(text, "incident_bot_alerts_received_total", source="alertmanager", outcome="opened") == 1
    assert sample(text, "incident_bot_alerts_received_total", source="alertmanager", outcome="joined") == 1
    assert sample(text, "incident_bot_alerts_received_total", source="alertmanager", outcome="duplicate") == 2
    assert sample(text, "incident_bot_alerts_received_total", source="alertmanager", outcome="invalid") == 1
    assert sample(text, "incident_bot_alerts_received_total", source="alertmanager", outcome="unauthorized") == 1
    assert sample(text, "incident_bot_incidents_opened_total") == 1
    assert "# TYPE incident_bot_alerts_received_total counter" in text


async def test_jobs_queued_and_outbox_lag_come_from_the_store() -> None:
    store = MemoryStore()
    metrics = Metrics(clock=lambda: OPENED_AT + timedelta(seconds=90))
    text = (await scrape(metrics, store, FIRING)).text
    assert sample(text, "incident_bot_jobs_queued") == len(await store.pending_jobs()) == 1
    assert sample(text, "incident_bot_outbox_pending") == 1
    assert sample(text, "incident_bot_outbox_lag_seconds") == 90
    for message in store.messages:
        await store.mark_delivered(message.id, OPENED_AT)
    assert sample(await metrics.render(store), "incident_bot_outbox_lag_seconds") == 0


async def test_the_diagnosis_histogram_times_each_job_ok_or_failed() -> None:
    ticks = iter([0.0, 3.0, 10.0, 10.5])
    metrics = Metrics(monotonic=lambda: next(ticks))
    incident = Incident(id="1", key="k", service="shop", routed=True, status=502, opened_at=OPENED_AT)

    async def works(_: Incident, __: Reporter) -> Diagnosis:
        return Diagnosis(status=502)

    async def breaks(_: Incident, __: Reporter) -> Diagnosis:
        raise ConnectionError("no route")

    assert (await metrics.timed(works)(incident, RecordingReporter())).status == 502
    with pytest.raises(ConnectionError):
        await metrics.timed(breaks)(incident, RecordingReporter())
    text = await metrics.render(MemoryStore())
    name = "incident_bot_diagnosis_duration_seconds"
    assert sample(text, f"{name}_bucket", outcome="ok", le="2.5") == 0
    assert sample(text, f"{name}_bucket", outcome="ok", le="5") == 1
    assert sample(text, f"{name}_bucket", outcome="ok", le="+Inf") == 1
    assert sample(text, f"{name}_sum", outcome="ok") == 3
    assert sample(text, f"{name}_bucket", outcome="failed", le="0.5") == 1
    assert sample(text, f"{name}_count", outcome="failed") == 1


async def test_every_line_is_valid_exposition_text() -> None:
    metrics = Metrics()
    metrics.alert_received('we"ird\nsource', "opened")
    metrics.diagnosis_finished(1.25, True)
    text = await metrics.render(MemoryStore())
    line = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]+="([^"\\\n]|\\["\\n])*",?)*\})? [-+0-9.eInf]+$')
    for row in text.splitlines():
        assert row.startswith("# HELP ") or row.startswith("# TYPE ") or line.match(row), row
    assert 'source="we\\"ird\\nsource"' in text


async def test_a_store_that_does_not_answer_makes_metrics_503() -> None:
    class Broken(MemoryStore):
        async def pending_jobs(self) -> list:  # type: ignore[type-arg]
            raise ConnectionError("database is down")

    store = Broken()
    api = build_api(make_service(store), store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot") as c:
        response = await c.get("/metrics")
    assert response.status_code == 503 and "database" not in response.text
