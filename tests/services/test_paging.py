"""Paging and escalation on the in-memory store and an injected clock (nothing sleeps): an incident is
paged after its confirmation probe (thread mention, direct messages, PagerDuty trigger naming the likely
cause), escalates after each level's delay, stops on acknowledgement (even against a timer already
claimed), acknowledges and resolves on PagerDuty with the same dedup key, defers a blip, falls back when
no probe reports, skips a level with nobody on call, folds a storm into one page with a count, pages a
reopened incident again, follows a hand-off across the spring-forward switch, and answers ``oncall``
and ``oncall override`` from chat."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import ChatPermissions
from bot.core.blocks import plain_text
from bot.core.cards import render_message
from bot.core.chat_commands import Actor, parse
from bot.core.incidents import Incident, IncidentState, OutboxMessage
from bot.core.models import Alert, Cause, Diagnosis, Finding, Severity
from bot.core.oncall import Layer, Level, Person, Rota, Schedule, Window
from bot.errors import ChatRejected
from bot.services.chatops import ChatOps, Policy
from bot.services.escalation import EscalationWorker
from bot.services.incidents import IncidentService
from bot.services.outbox import OutboxWorker, Pace
from bot.services.paging import PAGERDUTY, SLACK_DM, TELEGRAM_DM, Pager, PagingOptions, dedup_key
from bot.testing import MemoryStore, RecordingNotifier, RecordingReporter

BERLIN = ZoneInfo("Europe/Berlin")
#: Tuesday 2026-03-17 12:00 UTC: alice's week of the primary rotation (alice, bob; Mondays 09:00 Berlin).
T0 = datetime(2026, 3, 17, 12, 0, tzinfo=UTC)
REFUSED = "attempt 1/3: connect to 203.0.113.10:443 failed (111: Connection refused)"
UPSTREAM = "connect() failed (111: Connection refused) while connecting to upstream, upstream: http://127.0.0.1:8000/"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def rota(**policies: tuple[Level, ...]) -> Rota:
    primary = Layer(members=("alice", "bob"), zone=BERLIN, handoff=time(9, 0), length_days=7, start=date(2026, 3, 16))
    office = Layer(members=("olga",), zone=BERLIN, window=Window(frozenset({0}), time(9, 0), time(10, 0)))
    people = {
        "alice": Person("alice", slack="U0ALICE", telegram="1001", telegram_username="alice_tg", pagerduty=True),
        "bob": Person("bob", slack="U0BOB"),
        "carol": Person("carol", telegram="1003", pagerduty=True, display="Carol C."),
        "olga": Person("olga", slack="U0OLGA"),
    }
    shop = (
        Level(schedule="primary", after=timedelta(minutes=10)),
        Level(people=("carol",), after=timedelta(minutes=15)),
    )
    return Rota(
        people=people,
        schedules={"primary": Schedule("primary", (primary,), BERLIN), "office": Schedule("office", (office,), BERLIN)},
        policies={"shop": shop, **policies},
        default=(Level(people=("bob",)),),
    )


def alert(fp: str, state: str = "firing", service: str | None = "shop", status: int = 502) -> Alert:
    labels = {"alertname": f"Site{status}", **({"service": service} if service else {})}
    return Alert.model_validate(
        {"source": "alertmanager", "fingerprint": fp, "state": state, "status": status, "labels": labels,
         "summary": f"{service} answers {status}"}
    )  # fmt: skip


class World:
    """A store, a clock, the incident service with the pager as its hooks, and one escalation worker."""

    def __init__(self, team: Rota | None = None, *, per_alert: bool = False, **options: Any) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.rota = team or rota()
        settings = {"pagerduty": True, "direct": frozenset({SLACK_DM, TELEGRAM_DM}), **options}
        self.pager = Pager(self.store, self.rota, self.clock, options=PagingOptions(**settings))
        self.service = IncidentService(
            self.store,
            route=lambda a: a.labels.get("service") if a.labels.get("service") in ("shop", "blog") else None,
            group=(lambda a, s: f"{s}:{a.fingerprint}") if per_alert else (lambda a, s: f"{s or 'unrouted'}:5xx"),
            clock=self.clock,
            hooks=self.pager,
        )
        self.worker = EscalationWorker(self.store, self.pager, self.clock, "w1")

    async def open(self, fp: str = "a1", **kw: Any) -> Incident:
        report = await self.service.ingest([alert(fp, **kw)])
        incident_id = report.results[0].incident_id
        assert incident_id is not None
        found = await self.store.get_incident(incident_id)
        assert found is not None
        return found

    async def probe(self, incident: Incident, *findings: Finding) -> RecordingReporter:
        thread = RecordingReporter()
        await self.pager.reporter(incident, thread).probe(list(findings or (refused(),)))
        return thread

    def sent(self, target: str, incident: str | None = None) -> list[OutboxMessage]:
        return [m for m in self.store.messages if m.target == target and incident in (None, m.incident_id)]

    def pages(self, incident: str | None = None) -> list[dict[str, Any]]:
        return [m.payload["page"] for m in self.sent("", incident) if "page" in m.payload]

    def posts(self, incident: str) -> list[str]:
        return [m.payload["text"] for m in self.sent("", incident) if "text" in m.payload]

    def events(self, pagerduty_action: str | None = None) -> list[dict[str, Any]]:
        found = [m.payload["pagerduty"] for m in self.sent(PAGERDUTY)]
        return [e for e in found if pagerduty_action in (None, e["event_action"])]

    async def timeline(self, incident: str, kind: str) -> list[str]:
        return [e.text for e in await self.store.timeline(incident) if e.kind == kind]

    async def run_due(self) -> int:
        fired = 0
        while await self.worker.run_once():
            fired += 1
        return fired


def refused() -> Finding:
    return Finding(kind="probe.connect_refused", severity=Severity.CRITICAL, summary="probe: connection refused",
                   evidence=(REFUSED,))  # fmt: skip


def answered() -> Finding:
    return Finding(kind="probe.ok", severity=Severity.OK, summary="probe: answered HTTP 200 on all 3 attempts",
                   evidence=("attempt 1/3: HTTP 200",))  # fmt: skip


def diagnosis(cause: str = "upstream_down", title: str = "Upstream is not running") -> Diagnosis:
    finding = Finding(
        kind="nginx.upstream_refused", severity=Severity.CRITICAL, summary="refused", evidence=(UPSTREAM,)
    )
    return Diagnosis(
        status=502, target="shop", findings=(finding,),
        causes=(Cause(id=cause, confidence=0.93, title=title, summary="s", evidence=(UPSTREAM,)),),
    )  # fmt: skip


# -- the first page -----------------------------------------------------------------------------------


async def test_an_incident_is_paged_after_its_probe_in_the_thread_by_dm_and_on_pagerduty() -> None:
    world = World()
    incident = await world.open()
    assert world.pages() == [] and world.events() == []  # nothing before the probe
    await world.probe(incident)

    [page] = world.pages()
    assert page["people"] == ["alice"] and page["level"] == 1 and page["levels"] == 2
    assert page["found"]["cause"]["id"] == "upstream_down" and page["found"]["source"] == "probe"
    assert page["found"]["evidence"] == [REFUSED]
    [post] = [m for m in world.sent("") if "page" in m.payload]
    assert post.payload["mentions"] == [
        {"name": "alice", "slack": "U0ALICE", "telegram": "1001", "telegram_username": "alice_tg"}
    ]
    assert [m.payload["dm"] for m in world.sent(SLACK_DM)] == [{"user": "U0ALICE", "person": "alice"}]
    assert [m.payload["dm"] for m in world.sent(TELEGRAM_DM)] == [{"user": "1001", "person": "alice"}]
    [trigger] = world.events("trigger")
    assert trigger["dedup_key"] == incident.key == dedup_key(incident)
    summary = trigger["payload"]["summary"]
    assert "shop" in summary and "502" in summary and "upstream_down" in summary and len(summary) <= 1024
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["custom_details"]["evidence"] == [REFUSED]

    shown = await world.store.get_incident(incident.id)
    assert shown is not None and shown.oncall == "alice"
    card = plain_text(render_message(world.sent("")[-1], shown, None))
    assert "On call: alice" in card
    [paged] = await world.timeline(incident.id, "paged")
    assert "alice via Slack DM, Telegram DM, PagerDuty" in paged and "upstream_down" in paged
    [timer] = await world.store.pending_timers(incident.id)
    assert (timer.level, timer.due_at) == (1, T0 + timedelta(minutes=10))


async def test_the_page_post_shows_who_the_cause_its_evidence_and_what_comes_next() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    message = next(m for m in world.sent("") if "page" in m.payload)
    text = plain_text(render_message(message, incident, None))
    assert "📟 Paging alice" in text
    assert "Likely cause so far: Upstream is not running (upstream_down, 45% from the confirmation probe)" in text
    assert f"> {REFUSED}" in text
    assert "in 10m level 2 (carol) is paged" in text
    dm = world.sent(TELEGRAM_DM)[0]
    assert plain_text(render_message(dm, incident, None)) == text  # the direct message carries the same page


async def test_repeats_duplicates_and_reruns_never_page_again() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    await world.service.ingest([alert("a1"), alert("a1"), alert("a2")])  # repeats and a second alert joining
    await world.probe(incident)  # a re-run's probe
    await world.pager.diagnosed(incident.id, diagnosis())
    assert len(world.pages()) == 1 and len(world.sent(SLACK_DM)) == 1 and len(world.events("trigger")) == 1


# -- escalation ---------------------------------------------------------------------------------------


async def test_nobody_acknowledging_escalates_after_the_delay_with_what_the_diagnosis_found() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    await world.pager.diagnosed(incident.id, diagnosis())
    world.clock.advance(minutes=9, seconds=59)
    assert await world.run_due() == 0
    world.clock.advance(seconds=1)
    assert await world.run_due() == 1

    _, second = world.pages()
    assert second["reason"] == "timeout" and second["people"] == ["Carol C."] and second["level"] == 2
    assert second["found"]["source"] == "diagnosis" and second["found"]["evidence"] == [UPSTREAM]
    assert second["next"] is None
    assert [m.payload["dm"]["user"] for m in world.sent(TELEGRAM_DM)] == ["1001", "1003"]
    assert len(world.events("trigger")) == 1  # PagerDuty already has the alert: no second notification
    [escalated] = await world.timeline(incident.id, "escalated")
    assert escalated.startswith("escalated to level 2 of 2 (carol): Carol C.: not acknowledged after 10m")
    assert "upstream_down" in escalated
    text = plain_text(render_message(world.sent("")[-2], incident, None))
    assert "⏫ Escalated to Carol C. (level 2 of 2)" in text and "Last level of the escalation policy." in text
    assert await world.store.pending_timers() == []
    world.clock.advance(hours=2)
    assert await world.run_due() == 0


async def test_acknowledging_stops_the_escalation_and_acknowledges_then_resolves_on_pagerduty() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    world.clock.advance(minutes=3)
    await world.service.acknowledge(incident.id, "alice (slack)")
    assert await world.store.pending_timers() == []
    world.clock.advance(hours=1)
    assert await world.run_due() == 0
    assert len(world.pages()) == 1
    notes = await world.timeline(incident.id, "note")
    assert any("escalation stopped: acknowledged by alice (slack)" in t for t in notes)
    await world.service.ingest([alert("a1", state="resolved")])
    events = world.events()
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {incident.key}
    assert events[1] == {"event_action": "acknowledge", "dedup_key": incident.key}


async def test_an_acknowledgement_beats_a_timer_another_replica_already_claimed() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    world.clock.advance(minutes=10)
    claimed = await world.store.claim_timer("other-replica", timedelta(minutes=1), world.clock())
    assert claimed is not None and claimed.level == 1
    await world.service.acknowledge(incident.id, "alice (slack)")
    assert await world.pager.fire(claimed) == "lost"
    assert len(world.pages()) == 1 and await world.timeline(incident.id, "escalated") == []


async def test_a_timer_whose_worker_died_is_fired_once_by_another_after_the_lease() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    world.clock.advance(minutes=10)
    assert await world.store.claim_timer("crashed", timedelta(seconds=60), world.clock()) is not None
    assert await world.run_due() == 0  # still leased to the crashed worker
    world.clock.advance(seconds=60)
    assert await world.run_due() == 1
    assert len(await world.timeline(incident.id, "escalated")) == 1


async def test_the_escalate_button_pages_the_next_level_at_once() -> None:
    world = World()
    chatops = ChatOps(
        world.store, world.service, policies={"slack": Policy(ChatPermissions(), served=["C1"])},
        explain=lambda text: diagnosis(), diagnose=_no_diagnose, clock=world.clock,
        oncall=world.pager.oncall, escalate=world.pager.escalate,
    )  # fmt: skip
    incident = await world.open()
    await world.probe(incident)
    actor = Actor("slack", "U0BOB", "bob", "C1")
    reply = await chatops.act(actor, "escalate", incident.id)
    assert "paged level 2 of 2 (carol): Carol C." in plain_text(reply.blocks)
    assert world.pages()[-1]["reason"] == "manual" and world.pages()[-1]["by"] == "bob (slack)"
    assert await world.store.pending_timers() == []  # the last level: nothing left to escalate to
    again = await chatops.act(actor, "escalate", incident.id)
    assert "no further level" in plain_text(again.blocks)
    assert len(world.pages()) == 2
    assert [e.text for e in await world.store.timeline(incident.id) if e.kind == "escalated"] == [
        "escalated by bob (slack): paged level 2 of 2 (carol): Carol C.",
        "escalated by bob (slack): no further level: level 2 of 2 (carol) was the last",
    ]


async def _no_diagnose(target: str, status: int | None, runbooks: tuple[str, ...], trigger: str) -> Diagnosis:
    raise AssertionError("not used")


# -- when the first page happens -----------------------------------------------------------------------


async def test_a_blip_defers_the_page_which_comes_at_warning_severity_if_still_open() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident, answered())
    assert world.pages() == []
    assert any("Not paging yet" in text for text in world.posts(incident.id))
    assert len(await world.timeline(incident.id, "page_deferred")) == 1
    world.clock.advance(minutes=4, seconds=59)
    assert await world.run_due() == 0
    world.clock.advance(seconds=1)
    assert await world.run_due() == 1
    [page] = world.pages()
    assert page["reason"] == "blip"
    assert world.events("trigger")[0]["payload"]["severity"] == "warning"


async def test_a_blip_that_clears_within_the_grace_pages_nobody() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident, answered())
    world.clock.advance(minutes=2)
    await world.service.ingest([alert("a1", state="resolved")])
    world.clock.advance(hours=1)
    assert await world.run_due() == 0
    assert world.pages() == [] and world.events() == []


async def test_an_incident_whose_probe_never_reports_is_paged_after_the_probe_wait() -> None:
    world = World(probe_wait=timedelta(minutes=2))
    incident = await world.open()
    world.clock.advance(minutes=2)
    assert await world.run_due() == 1
    [page] = world.pages()
    assert page["reason"] == "fallback" and page["found"]["source"] == "none"
    assert world.events("trigger")[0]["payload"]["summary"].startswith("shop HTTP 502: cause not known yet")
    assert (await world.store.get_incident(incident.id) or incident).oncall == "alice"


async def test_a_service_with_no_probe_is_paged_when_its_diagnosis_is_done_with_the_cause() -> None:
    world = World()
    incident = await world.open()
    await world.pager.diagnosed(incident.id, diagnosis())
    [page] = world.pages()
    assert page["found"]["cause"]["id"] == "upstream_down" and page["found"]["source"] == "diagnosis"
    assert "Upstream is not running (upstream_down, 93%)" in world.events("trigger")[0]["payload"]["summary"]


async def test_a_failed_diagnosis_pages_with_what_the_probe_had_found() -> None:
    world = World()
    incident = await world.open()
    await world.pager.diagnosed(incident.id, None)
    [page] = world.pages()
    assert page["found"]["source"] == "none"


async def test_a_new_top_cause_after_the_page_updates_the_pagerduty_alert_without_paging_again() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    await world.pager.diagnosed(incident.id, diagnosis())  # the same cause as the probe's: nothing to tell
    assert len(world.events("trigger")) == 1
    await world.pager.diagnosed(incident.id, diagnosis("oom_kill", "The kernel OOM killer killed a process"))
    first, update = world.events("trigger")
    assert update["dedup_key"] == first["dedup_key"] and "oom_kill" in update["payload"]["summary"]
    assert len(world.pages()) == 1 and len(world.sent(SLACK_DM)) == 1


async def test_an_unrouted_incident_is_paged_at_once_by_the_default_policy() -> None:
    world = World()
    incident = await world.open(service=None)
    assert not incident.routed
    assert await world.run_due() == 1
    [page] = world.pages()
    assert page["people"] == ["bob"] and page["reason"] == "opened"
    assert [m.payload["dm"]["user"] for m in world.sent(SLACK_DM)] == ["U0BOB"]
    assert world.events() == []  # bob is not paged through PagerDuty


async def test_a_level_with_nobody_on_call_is_skipped_and_said() -> None:
    team = rota(shop=(Level(schedule="office", after=timedelta(minutes=5)), Level(people=("carol",))))
    world = World(team)
    incident = await world.open()
    await world.probe(incident)
    [page] = world.pages()
    assert page["people"] == ["Carol C."] and page["level"] == 2 and page["skipped"] == ["level 1 (schedule office)"]
    assert "Skipped, nobody on call: level 1 (schedule office)." in plain_text(
        render_message(next(m for m in world.sent("") if "page" in m.payload), incident, None)
    )


async def test_an_incident_with_no_one_to_page_says_so() -> None:
    team = rota(shop=(Level(schedule="office"),))
    world = World(team)
    incident = await world.open()
    await world.probe(incident)
    assert world.pages() == []
    assert any("Nobody to page" in text for text in world.posts(incident.id))
    paging = await world.store.get_paging(incident.id)
    assert paging is not None and paging.state == "unpaged"


async def test_the_hand_off_after_the_spring_forward_switch_decides_who_is_paged() -> None:
    world = World()
    world.clock.now = datetime(2026, 3, 30, 6, 59, tzinfo=UTC)  # 08:59 CEST: bob's week ends at 09:00 CEST
    first = await world.open("x1")
    await world.probe(first)
    world.clock.now = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST (a 168-hour count says 08:00 UTC)
    second = await world.open("x2", service="blog")
    world.pager.rota = rota(blog=(Level(schedule="primary"),))
    await world.probe(second)
    assert [p["people"] for p in world.pages()] == [["bob"], ["alice"]]


# -- quiet storms and reopening ------------------------------------------------------------------------


async def test_a_storm_of_incidents_for_one_service_pages_once_with_a_count() -> None:
    world = World(per_alert=True)
    first = await world.open("s1")
    await world.probe(first)
    world.clock.advance(minutes=1)
    second = await world.open("s2", status=504)
    await world.probe(second)
    third = await world.open("s3", status=503)
    await world.probe(third)

    assert len(world.pages()) == 1 and len(world.events("trigger")) == 1 and len(world.sent(SLACK_DM)) == 1
    assert any(f"#{first.id} already paged alice (3 incidents within 10m)" in t for t in world.posts(third.id))
    assert any(f"#{third.id} (HTTP 503) opened on shop too: 3 incidents" in t for t in world.posts(first.id))
    world.clock.advance(minutes=10)
    assert await world.run_due() == 1
    escalation = world.pages()[-1]
    assert escalation["count"] == 3 and escalation["incident"] == first.id
    assert "3 incidents on shop in this storm" in plain_text(
        render_message(next(m for m in reversed(world.sent("")) if "page" in m.payload), first, None)
    )


async def test_when_the_storms_paged_incident_resolves_the_open_ones_are_paged_again() -> None:
    world = World(per_alert=True)
    first = await world.open("s1")
    await world.probe(first)
    second = await world.open("s2", status=504)
    await world.probe(second)
    third = await world.open("s3", status=503)
    await world.probe(third)
    await world.service.resolve(first.id, "alice (slack)")
    assert await world.run_due() == 2
    pages = world.pages()
    assert [(p["incident"], p["reason"]) for p in pages] == [(first.id, "opened"), (second.id, "promoted")]
    assert pages[-1]["count"] == 2  # the third folded into the second's page
    paging = await world.store.get_paging(third.id)
    assert paging is not None and paging.state == "folded" and paging.storm_of == second.id


async def test_a_storm_is_over_after_its_window() -> None:
    world = World(per_alert=True, storm_window=timedelta(minutes=10))
    first = await world.open("s1")
    await world.probe(first)
    world.clock.advance(minutes=11)
    second = await world.open("s2", status=504)
    await world.probe(second)
    assert [p["incident"] for p in world.pages()] == [first.id, second.id]


async def test_a_reopened_incident_is_paged_again_in_a_new_round() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    await world.service.ingest([alert("a1", state="resolved")])
    world.clock.advance(minutes=2)
    await world.service.ingest([alert("a1")])  # within the flapping window: the same incident reopens
    reopened = await world.store.get_incident(incident.id)
    assert reopened is not None and reopened.state is IncidentState.TRIGGERED
    assert await world.run_due() == 1
    assert [p["reason"] for p in world.pages()] == ["opened", "reopened"]
    assert [e["event_action"] for e in world.events()] == ["trigger", "resolve", "trigger"]
    paging = await world.store.get_paging(incident.id)
    assert paging is not None and paging.round == 2


# -- refusals ------------------------------------------------------------------------------------------


async def test_a_page_refused_for_good_is_written_on_the_timeline_and_in_the_thread() -> None:
    world = World()
    incident = await world.open()
    await world.probe(incident)
    pagerduty = RecordingNotifier(world.clock, name=PAGERDUTY).fail(
        ChatRejected("trigger: HTTP 400 Event object is invalid: 'payload.summary' is missing", target=PAGERDUTY)
    )
    chat = RecordingNotifier(world.clock)
    outbox = OutboxWorker(
        world.store, render_message, {"": chat, PAGERDUTY: pagerduty, SLACK_DM: chat, TELEGRAM_DM: chat},
        world.clock, Pace(0.0), sleep=_no_sleep, on_rejected=world.pager.rejected,
    )  # fmt: skip
    for _ in range(5):
        await outbox.run_once()
    [failed] = await world.timeline(incident.id, "page_failed")
    assert failed.startswith("⚠️ PagerDuty refused the trigger event: ")
    assert "'payload.summary' is missing" in failed
    assert any(sent.text == failed for sent in chat.sent)  # and said in the thread
    assert await world.store.pending_messages() == []


async def _no_sleep(seconds: float) -> None:
    return None


# -- on call from chat ---------------------------------------------------------------------------------


def chatops(world: World) -> ChatOps:
    return ChatOps(
        world.store, world.service, policies={"slack": Policy(ChatPermissions(), served=["C1"])},
        explain=lambda text: diagnosis(), diagnose=_no_diagnose, clock=world.clock,
        oncall=world.pager.oncall, escalate=world.pager.escalate,
    )  # fmt: skip


async def test_oncall_in_chat_says_who_is_on_call_and_when_that_changes() -> None:
    world = World()
    reply = await chatops(world).run(Actor("slack", "U0XYZ", "someone", "C1"), parse("oncall"))
    text = plain_text(reply.blocks)
    assert "primary: alice until Mon 2026-03-23 09:00 CET, then bob" in text
    assert "office: nobody until Mon 2026-03-23 09:00 CET, then olga" in text


async def test_an_override_from_chat_changes_who_is_paged_for_its_duration() -> None:
    world = World()
    ops = chatops(world)
    reply = await ops.run(Actor("slack", "U0ALICE", "alice", "C1"), parse("oncall override @bob 2h"))
    assert "bob is on call for primary from Tue 2026-03-17 13:00 CET until Tue 2026-03-17 15:00 CET" in plain_text(
        reply.blocks
    )
    shown = plain_text((await ops.run(Actor("slack", "U0XYZ", "x", "C1"), parse("oncall"))).blocks)
    assert "primary: bob (override) until Tue 2026-03-17 15:00 CET, then alice" in shown
    incident = await world.open()
    await world.probe(incident)
    assert world.pages()[0]["people"] == ["bob"]
    world.clock.advance(hours=2)
    later = await world.store.overrides(world.clock())
    assert [p.name for p in world.rota.targets(world.rota.policy("shop")[0], world.clock(), later)] == ["alice"]


async def test_only_people_of_the_rotation_may_set_overrides_and_bad_ones_are_explained() -> None:
    ops = chatops(World())
    stranger = await ops.run(Actor("slack", "U0XYZ", "mallory", "C1"), parse("oncall override @bob 2h"))
    assert "only people of the on-call rotation" in plain_text(stranger.blocks)
    alice = Actor("slack", "U0ALICE", "alice", "C1")
    for command, says in [
        ("oncall override @nobody 2h", "'@nobody' is not a person of oncall.people"),
        ("oncall override @bob soon", "is not a duration"),
        ("oncall override @bob 40d", "at most 31 days"),
        ("oncall override @carol 1h", "say which schedule: one of office, primary"),
        ("oncall override @bob 1h nightly", "no schedule 'nightly'"),
        ("oncall override @bob", "usage: oncall override"),
        ("oncall later", "usage: oncall"),
    ]:
        reply = await ops.run(alice, parse(command))
        assert says in plain_text(reply.blocks), command
