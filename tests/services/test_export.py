"""The postmortem skeleton: title, service, status, the timeline with timestamps, the time to
acknowledge and to resolve, the cause with its quoted evidence and the findings, and the sections
left to fill in — rendered from what the (in-memory) store holds."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.services.export import duration, to_json, to_markdown
from bot.services.incidents import IncidentService
from bot.testing import MemoryStore
from tests.services.test_incidents import Clock, alert, group_of, service_of

EVIDENCE = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to"
    ' upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8000/"'
)
DIAGNOSIS = {
    "status": 502,
    "target": "shop",
    "findings": [
        {"kind": "nginx.upstream_refused", "host": "web-1", "runbook": "proxy_log", "severity": "critical",
         "summary": "12 connect() refused to 127.0.0.1:8000", "evidence": [EVIDENCE], "data": {}},
        {"kind": "disk.ok", "host": "web-1", "severity": "ok", "summary": "disks fine", "evidence": [], "data": {}},
    ],
    "causes": [
        {"id": "upstream_down", "confidence": 0.93, "title": "Upstream is not running", "summary": "nothing listens",
         "evidence": [EVIDENCE], "next_steps": ["systemctl status gunicorn"]},
        {"id": "upstream_crashed", "confidence": 0.2, "title": "Upstream crashed", "summary": "", "evidence": []},
    ],
}  # fmt: skip


@pytest.fixture
async def stored() -> tuple[MemoryStore, str]:
    """An incident opened at 03:25, acknowledged 4m05s later by alice, resolved after 1h02m03s, diagnosed."""
    clock = Clock()
    store = MemoryStore()
    service = IncidentService(store, route=service_of, group=group_of, clock=clock)
    await service.ingest([alert("a1")])
    [incident_id] = store.incidents
    clock.advance(minutes=4, seconds=5)
    await service.acknowledge(incident_id, "alice")
    await store.save_diagnosis(incident_id, DIAGNOSIS, clock.now)
    clock.advance(minutes=57, seconds=58)
    await service.resolve(incident_id, "alice")
    return store, incident_id


async def render(store: MemoryStore, incident_id: str) -> str:
    incident = await store.get_incident(incident_id)
    assert incident is not None
    return to_markdown(incident, await store.timeline(incident_id), await store.get_diagnosis(incident_id))


async def test_the_skeleton_has_the_facts_the_timeline_and_the_durations(stored: tuple[MemoryStore, str]) -> None:
    store, incident_id = stored
    text = await render(store, incident_id)
    assert text.startswith(f"# Postmortem: incident #{incident_id}: Site502")
    assert "| Service | shop |" in text and "| Status | HTTP 502 |" in text and "| State | resolved |" in text
    assert "| Time to acknowledge | 4m05s (by alice) |" in text
    assert "| Time to resolve | 1h02m03s |" in text
    assert "| 2026-11-30 03:25:00Z | opened |" in text
    assert "| 2026-11-30 03:29:05Z | acknowledged | acknowledged by alice | alice |" in text
    assert "| 2026-11-30 04:27:03Z | resolved |" in text


async def test_the_cause_is_named_with_its_evidence_quoted_verbatim(stored: tuple[MemoryStore, str]) -> None:
    store, incident_id = stored
    text = await render(store, incident_id)
    assert "### Cause: Upstream is not running (`upstream_down`, 93%)" in text
    assert f"> `{EVIDENCE}`" in text
    assert "- systemctl status gunicorn" in text
    assert "`upstream_crashed` (20%)" in text
    assert "`nginx.upstream_refused` on web-1: 12 connect() refused" in text
    assert "disk.ok" not in text  # healthy findings are not a postmortem's business


async def test_the_sections_to_fill_in_come_last_in_order(stored: tuple[MemoryStore, str]) -> None:
    store, incident_id = stored
    text = await render(store, incident_id)
    headings = ("## Timeline", "## Diagnosis", "## Impact", "## Root cause", "## Action items")
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "Diagnosed as **Upstream is not running**" in text


async def test_an_open_undiagnosed_incident_says_what_is_missing() -> None:
    store = MemoryStore()
    await IncidentService(store, route=service_of, group=group_of, clock=Clock()).ingest([alert("a1", service=None)])
    [incident_id] = store.incidents
    text = await render(store, incident_id)
    assert "| Service | (unrouted) |" in text
    assert "| Time to acknowledge | - |" in text and "| Time to resolve | - |" in text
    assert "not acknowledged" in text and "not resolved" in text
    assert "No diagnosis was stored for this incident." in text


async def test_table_cells_and_quotes_survive_pipes_newlines_and_backticks() -> None:
    store = MemoryStore()
    clock = Clock()
    service = IncidentService(store, route=service_of, group=group_of, clock=clock)
    weird = alert("a1").model_copy(update={"summary": "down | again\nand `more`"})
    await service.ingest([weird])
    [incident_id] = store.incidents
    line = "printf '`x`' | tee"
    await store.save_diagnosis(incident_id, {**DIAGNOSIS, "causes": [{**DIAGNOSIS["causes"][0], "evidence": [line]}]},
                               clock.now)  # fmt: skip
    text = await render(store, incident_id)
    assert "# Postmortem: incident #1: down \\| again and `more`" in text
    assert f"> ``{line}``" in text


async def test_json_export_carries_the_same_facts_in_seconds(stored: tuple[MemoryStore, str]) -> None:
    store, incident_id = stored
    incident = await store.get_incident(incident_id)
    assert incident is not None
    body = to_json(incident, await store.timeline(incident_id), await store.get_diagnosis(incident_id))
    json.dumps(body)  # serialisable as it is
    assert body["time_to_acknowledge_seconds"] == 245
    assert body["time_to_resolve_seconds"] == 3723
    assert body["diagnosis"]["causes"][0]["id"] == "upstream_down"
    assert [e["kind"] for e in body["timeline"]][-1] == "resolved"


@pytest.mark.parametrize(
    ("delta", "text"),
    [(timedelta(seconds=12), "12s"), (timedelta(minutes=4, seconds=5), "4m05s"),
     (timedelta(hours=26, seconds=1), "26h00m01s"), (None, None)],
)  # fmt: skip
def test_durations_read_like_a_person_writes_them(delta: timedelta | None, text: str | None) -> None:
    assert duration(delta) == text
