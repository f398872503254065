"""Every Store and Transaction method on every backend (memory, SQLite, PostgreSQL): reads and writes,
atomic transactions, UTC round trips, leased jobs and the outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from bot.adapters.db import SqlStore
from bot.core.incidents import ChatThread, Incident, IncidentState, Job, OutboxMessage, StoredAlert, TimelineEvent
from bot.core.ports import AuditEntry
from bot.core.store import Store, Transaction
from tests.adapters.db.conftest import SQL, EngineFactory

T0 = datetime(2026, 11, 30, 3, 25, 0, 123456, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def incident(number: int, key: str = "shop:5xx", **changes: object) -> Incident:
    base = Incident(id=str(number), key=key, service="shop", routed=True, status=502, title="Site502", opened_at=T0)
    return base.model_copy(update=changes)


def job(job_id: str, incident_id: str = "1", at: datetime = T0) -> Job:
    return Job(id=job_id, incident_id=incident_id, created_at=at)


def message(
    message_id: str, incident_id: str = "1", kind: str = "post", at: datetime = T0, target: str = ""
) -> OutboxMessage:
    return OutboxMessage.model_validate(
        {
            "id": message_id,
            "incident_id": incident_id,
            "kind": kind,
            "created_at": at,
            "payload": {"n": message_id},
            "target": target,
        }
    )


async def seed(store: Store, *incidents: Incident) -> None:
    async with store.transaction() as tx:
        for item in incidents:
            await tx.save_incident(item)


# -- transactions ----------------------------------------------------------------------------------


async def test_alerts_are_saved_read_back_and_updated(store: Store) -> None:
    await seed(store, incident(1))
    stored = StoredAlert(
        fingerprint="a1", source="alertmanager", state="firing", incident_id="1", status=502,
        first_seen=T0, last_seen=T0,
    )
    async with store.transaction() as tx:
        assert await tx.get_alert("a1") is None
        await tx.save_alert(stored)
        assert await tx.get_alert("a1") == stored  # a transaction sees its own writes
    later = stored.model_copy(update={"last_seen": T0 + timedelta(minutes=1), "repeats": 3})
    async with store.transaction() as tx:
        await tx.save_alert(later)
    async with store.transaction() as tx:
        assert await tx.get_alert("a1") == later


async def test_firing_alerts_lists_only_the_firing_alerts_of_the_incident(store: Store) -> None:
    await seed(store, incident(1), incident(2, key="blog:5xx"))

    def stored(fp: str, state: str, incident_id: str) -> StoredAlert:
        return StoredAlert.model_validate(
            {"fingerprint": fp, "source": "generic", "state": state, "incident_id": incident_id, "status": 502,
             "first_seen": T0, "last_seen": T0}
        )

    async with store.transaction() as tx:
        for item in (stored("a", "firing", "1"), stored("b", "resolved", "1"), stored("c", "firing", "2")):
            await tx.save_alert(item)
        assert [a.fingerprint for a in await tx.firing_alerts("1")] == ["a"]
    async with store.transaction() as tx:
        assert [a.fingerprint for a in await tx.firing_alerts("2")] == ["c"]
        assert list(await tx.firing_alerts("3")) == []


async def test_incidents_are_saved_updated_and_found_by_group(store: Store) -> None:
    first = incident(1, url="https://shop.example.com/", alert_count=1)
    async with store.transaction() as tx:
        assert await tx.open_incident("shop:5xx") is None
        await tx.save_incident(first)
        assert await tx.get_incident("1") == first
        assert await tx.open_incident("shop:5xx") == first
    acked = first.model_copy(
        update={
            "state": IncidentState.ACKNOWLEDGED,
            "acknowledged_at": T0 + timedelta(minutes=3),
            "acknowledged_by": "ana",
        }
    )
    async with store.transaction() as tx:
        await tx.save_incident(acked)
    assert await store.get_incident("1") == acked
    assert await store.get_incident("2") is None
    async with store.transaction() as tx:
        assert await tx.open_incident("shop:5xx") == acked  # acknowledged is still open
        assert await tx.open_incident("blog:5xx") is None


async def test_last_resolved_finds_the_latest_resolution_inside_the_window(store: Store) -> None:
    resolved = IncidentState.RESOLVED
    await seed(
        store,
        incident(1, state=resolved, resolved_at=T0 + timedelta(minutes=1)),
        incident(2, state=resolved, resolved_at=T0 + timedelta(minutes=4)),
        incident(3, key="blog:5xx", state=resolved, resolved_at=T0 + timedelta(minutes=5)),
    )
    async with store.transaction() as tx:
        assert await tx.open_incident("shop:5xx") is None
        latest = await tx.last_resolved("shop:5xx", T0)
        assert latest is not None and latest.id == "2"
        edge = await tx.last_resolved("shop:5xx", T0 + timedelta(minutes=4))  # "at or after"
        assert edge is not None and edge.id == "2"
        assert await tx.last_resolved("shop:5xx", T0 + timedelta(minutes=4, microseconds=1)) is None


async def test_incident_numbers_count_up_from_one(store: Store) -> None:
    async with store.transaction() as tx:
        assert [await tx.next_incident_number() for _ in range(3)] == [1, 2, 3]
    async with store.transaction() as tx:
        assert await tx.next_incident_number() == 4


async def test_events_form_the_timeline_in_insertion_order_with_their_data(store: Store) -> None:
    await seed(store, incident(1), incident(2, key="other"))
    events = [
        TimelineEvent(incident_id="1", at=T0 + timedelta(seconds=5), kind="opened", text="opened"),
        TimelineEvent(incident_id="2", at=T0, kind="opened", text="other"),
        TimelineEvent(
            incident_id="1", at=T0, kind="note", text="ünïcode ✓", actor="ana",
            data={"lines": ["x"], "n": 2, "ok": True},
        ),
    ]
    async with store.transaction() as tx:
        for event in events:
            await tx.add_event(event)
    assert await store.timeline("1") == [events[0], events[2]]
    assert await store.timeline("2") == [events[1]]
    assert await store.timeline("3") == []


async def test_an_event_may_come_before_its_incident_in_one_transaction(store: Store) -> None:
    """The service writes the "opened" event and the job before the incident row; checked at commit."""
    async with store.transaction() as tx:
        await tx.add_event(TimelineEvent(incident_id="1", at=T0, kind="opened", text="opened"))
        await tx.enqueue_job(job("j1"))
        await tx.enqueue_message(message("m1"))
        await tx.save_incident(incident(1))
    assert [e.kind for e in await store.timeline("1")] == ["opened"]


async def test_jobs_and_messages_are_queued(store: Store) -> None:
    await seed(store, incident(1))
    async with store.transaction() as tx:
        await tx.enqueue_job(job("j1"))
        await tx.enqueue_job(job("j2"))
        await tx.enqueue_message(message("m1", kind="opened"))
        await tx.enqueue_message(message("m2"))
    assert await store.pending_jobs() == [job("j1"), job("j2")]
    assert await store.pending_messages() == [message("m1", kind="opened"), message("m2")]


async def test_lock_group_can_be_taken_again_and_by_later_transactions(store: Store) -> None:
    for _ in range(2):
        async with store.transaction() as tx:
            await tx.lock_group("shop:5xx")
            await tx.lock_group("shop:5xx")
            await tx.lock_group("blog:5xx")


async def test_a_transaction_that_raises_leaves_nothing_behind(store: Store) -> None:
    async def write_everything(tx: Transaction) -> None:
        await tx.lock_group("shop:5xx")
        number = await tx.next_incident_number()
        await tx.save_incident(incident(number))
        await tx.save_alert(
            StoredAlert(fingerprint="a1", source="generic", state="firing", incident_id=str(number), status=502,
                        first_seen=T0, last_seen=T0)
        )
        await tx.add_event(TimelineEvent(incident_id=str(number), at=T0, kind="opened", text="opened"))
        await tx.enqueue_job(job("j1", str(number)))
        await tx.enqueue_message(message("m1", str(number)))

    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction() as tx:
            await write_everything(tx)
            raise RuntimeError("boom")
    assert await store.list_incidents() == []
    assert await store.timeline("1") == []
    assert await store.pending_jobs() == [] and await store.pending_messages() == []
    async with store.transaction() as tx:
        assert await tx.get_alert("a1") is None
        assert await tx.next_incident_number() == 1  # the counter rolled back too


async def test_list_incidents_is_newest_first_and_limited(store: Store) -> None:
    await seed(store, *(incident(n, key=f"k{n}", opened_at=T0 + timedelta(minutes=n)) for n in range(1, 6)))
    assert [i.id for i in await store.list_incidents()] == ["5", "4", "3", "2", "1"]
    assert [i.id for i in await store.list_incidents(limit=2)] == ["5", "4"]


async def test_datetimes_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    """SQLite keeps no zone: the store converts to UTC on the way in and re-attaches it on the way out."""
    ist = timezone(timedelta(hours=5, minutes=30))
    opened = datetime(2026, 11, 30, 8, 55, 0, 654321, tzinfo=ist)
    await seed(store, incident(1, opened_at=opened, acknowledged_at=opened + timedelta(seconds=1)))
    got = await store.get_incident("1")
    assert got is not None
    assert got.opened_at == opened
    if isinstance(store, SqlStore):  # the SQL store hands back UTC whatever went in
        assert got.opened_at.utcoffset() == timedelta(0)
    assert got.opened_at == datetime(2026, 11, 30, 3, 25, 0, 654321, tzinfo=UTC)
    assert got.acknowledged_at == opened + timedelta(seconds=1)
    # comparisons in queries use the instant, whatever offset the caller used
    await seed(store, got.model_copy(update={"state": IncidentState.RESOLVED, "resolved_at": opened}))
    async with store.transaction() as tx:
        assert await tx.last_resolved("shop:5xx", datetime(2026, 11, 30, 3, 25, tzinfo=UTC)) is not None
        assert await tx.last_resolved("shop:5xx", datetime(2026, 11, 30, 3, 26, tzinfo=UTC)) is None


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_a_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await seed(store, incident(1, opened_at=datetime(2026, 11, 30, 3, 25)))
    assert await store.list_incidents() == []


# -- jobs ------------------------------------------------------------------------------------------


async def test_jobs_are_claimed_oldest_first_under_a_lease(store: Store) -> None:
    await seed(store, incident(1))
    async with store.transaction() as tx:
        await tx.enqueue_job(job("new", at=T0 + timedelta(seconds=2)))
        await tx.enqueue_job(job("old", at=T0))
    first = await store.claim_job("w1", LEASE, T0 + timedelta(seconds=5))
    assert first is not None and first.id == "old" and first.attempts == 1
    assert first.worker == "w1" and first.lease_until == T0 + timedelta(seconds=35)
    second = await store.claim_job("w2", LEASE, T0 + timedelta(seconds=5))
    assert second is not None and second.id == "new"
    assert await store.claim_job("w3", LEASE, T0 + timedelta(seconds=6)) is None
    assert [j.id for j in await store.pending_jobs()] == ["new", "old"]  # running still counts as pending


async def test_a_job_whose_lease_expired_is_claimed_again(store: Store) -> None:
    """A worker that crashed holds its job only until the lease runs out; then another picks it up."""
    await seed(store, incident(1))
    async with store.transaction() as tx:
        await tx.enqueue_job(job("j1"))
    crashed = await store.claim_job("w1", LEASE, T0)
    assert crashed is not None
    assert await store.claim_job("w2", LEASE, T0 + LEASE - timedelta(microseconds=1)) is None
    again = await store.claim_job("w2", LEASE, T0 + LEASE)
    assert again is not None and again.id == "j1" and again.attempts == 2 and again.worker == "w2"
    assert await store.finish_job("j1", True, T0 + LEASE, worker="w1") is False  # not w1's any more
    assert await store.finish_job("j1", True, T0 + LEASE, worker="w2") is True
    assert await store.finish_job("j1", True, T0 + LEASE) is False  # already finished
    assert await store.pending_jobs() == []
    assert await store.claim_job("w3", LEASE, T0 + timedelta(hours=1)) is None  # done is never reclaimed


async def test_a_failed_job_is_finished_too(store: Store) -> None:
    await seed(store, incident(1))
    async with store.transaction() as tx:
        await tx.enqueue_job(job("j1"))
    assert await store.claim_job("w1", LEASE, T0) is not None
    assert await store.finish_job("j1", False, T0 + timedelta(seconds=1)) is True
    assert await store.pending_jobs() == []
    assert await store.claim_job("w1", LEASE, T0 + timedelta(hours=1)) is None
    assert await store.finish_job("missing", True, T0) is False


async def test_a_job_ends_with_its_result_in_one_transaction_or_not_at_all(store: Store) -> None:
    """The diagnosis, its event and messages commit with the job's end: a transaction that fails after
    finishing the job leaves it running with no result; one for a job another worker took writes nothing."""
    await seed(store, incident(1))
    async with store.transaction() as tx:
        await tx.enqueue_job(job("j1"))
    assert await store.claim_job("w1", LEASE, T0) is not None
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            assert await tx.finish_job("j1", True, T0, worker="w1") is True
            await tx.save_diagnosis("1", {"top": "upstream_down"}, T0)
            raise RuntimeError("killed before the commit")
    assert [j.id for j in await store.pending_jobs()] == ["j1"] and await store.get_diagnosis("1") is None
    assert await store.claim_job("w2", LEASE, T0 + LEASE) is not None  # w1's lease ran out
    async with store.transaction() as tx:
        assert await tx.finish_job("j1", True, T0 + LEASE, worker="w1") is False  # w1 must write nothing
    async with store.transaction() as tx:
        assert await tx.finish_job("j1", True, T0 + LEASE, worker="w2") is True
        await tx.save_diagnosis("1", {"top": "upstream_down"}, T0 + LEASE)
        await tx.enqueue_message(message("m1"))
    assert await store.pending_jobs() == [] and await store.get_diagnosis("1") == {"top": "upstream_down"}
    assert [m.id for m in await store.pending_messages()] == ["m1"]


async def test_concurrent_workers_never_get_the_same_job(store: Store) -> None:
    await seed(store, incident(1))
    async with store.transaction() as tx:
        for n in range(8):
            await tx.enqueue_job(job(f"j{n}", at=T0 + timedelta(milliseconds=n)))

    async def worker(name: str) -> list[str]:
        got = []
        while (claimed := await store.claim_job(name, LEASE, T0 + timedelta(seconds=1))) is not None:
            got.append(claimed.id)
        return got

    results = await asyncio.gather(*(worker(f"w{n}") for n in range(4)))
    everything = [j for got in results for j in got]
    assert sorted(everything) == sorted(f"j{n}" for n in range(8))


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_workers_on_separate_engines_never_get_the_same_job(engines: EngineFactory) -> None:
    """Replicas claim from one table at once (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE)."""
    stores = [SqlStore(await engines()) for _ in range(3)]
    await seed(stores[0], incident(1))
    async with stores[0].transaction() as tx:
        for n in range(12):
            await tx.enqueue_job(job(f"j{n}", at=T0 + timedelta(milliseconds=n)))

    async def worker(store: SqlStore, name: str) -> list[str]:
        got = []
        while (claimed := await store.claim_job(name, LEASE, T0 + timedelta(seconds=1))) is not None:
            got.append(claimed.id)
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(worker(s, f"w{n}") for n, s in enumerate(stores)))
    everything = [j for got in results for j in got]
    assert sorted(everything) == sorted(f"j{n}" for n in range(12))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_job_row_locked_by_another_claimer_is_skipped_not_waited_for(engines: EngineFactory) -> None:
    """PostgreSQL claims with FOR UPDATE SKIP LOCKED: a busy row never stalls the other workers."""
    engine = await engines()
    store = SqlStore(engine)
    await seed(store, incident(1))
    async with store.transaction() as tx:
        await tx.enqueue_job(job("j1", at=T0))
        await tx.enqueue_job(job("j2", at=T0 + timedelta(seconds=1)))
    async with engine.connect() as other:
        await other.begin()
        await other.execute(text("SELECT id FROM jobs WHERE id = 'j1' FOR UPDATE"))
        claimed = await asyncio.wait_for(store.claim_job("w1", LEASE, T0 + timedelta(seconds=2)), timeout=3)
        assert claimed is not None and claimed.id == "j2"
        await other.rollback()
    claimed = await store.claim_job("w2", LEASE, T0 + timedelta(seconds=2))
    assert claimed is not None and claimed.id == "j1"


# -- outbox ----------------------------------------------------------------------------------------


async def test_messages_are_claimed_in_order_delivered_and_not_offered_twice(store: Store) -> None:
    await seed(store, incident(1), incident(2, key="blog:5xx"))
    async with store.transaction() as tx:
        for mid, iid in (("m1", "1"), ("m2", "2"), ("m3", "1"), ("m4", "2")):
            await tx.enqueue_message(message(mid, iid))
    now = T0 + timedelta(seconds=1)
    claimed = await store.claim_messages(3, now)
    assert [(m.id, m.attempts) for m in claimed] == [("m1", 1), ("m2", 1), ("m3", 1)]
    assert claimed[0].payload == {"n": "m1"}
    assert [m.id for m in await store.claim_messages(10, now)] == []  # m4 waits behind leased m2
    for m in claimed:
        await store.mark_delivered(m.id, now)
    assert [m.id for m in await store.pending_messages()] == ["m4"]
    assert [m.id for m in await store.claim_messages(10, now)] == ["m4"]
    assert await store.claim_messages(10, now + timedelta(seconds=59)) == []  # m4 is leased for a minute
    # the lease of m4 ran out without a delivery: offered again, second attempt
    again = await store.claim_messages(10, now + timedelta(minutes=1))
    assert [(m.id, m.attempts) for m in again] == [("m4", 2)]


async def test_a_message_set_to_retry_holds_back_the_rest_of_its_incident_only(store: Store) -> None:
    await seed(store, incident(1), incident(2, key="blog:5xx"))
    async with store.transaction() as tx:
        for mid, iid in (("m1", "1"), ("m2", "1"), ("m3", "2")):
            await tx.enqueue_message(message(mid, iid))
    [first] = await store.claim_messages(1, T0)
    assert first.id == "m1"
    await store.retry_message("m1", T0 + timedelta(seconds=30))  # e.g. a 429 with Retry-After: 30
    assert [m.id for m in await store.claim_messages(10, T0 + timedelta(seconds=1))] == ["m3"]
    later = await store.claim_messages(10, T0 + timedelta(seconds=30))
    assert [(m.id, m.attempts) for m in later] == [("m1", 2), ("m2", 1)]
    await store.mark_delivered("m1", T0 + timedelta(seconds=31))
    await store.retry_message("m1", T0)  # delivered stays delivered
    assert [m.id for m in await store.pending_messages()] == ["m2", "m3"]


async def test_a_message_waiting_on_one_chat_target_does_not_hold_back_another_target(store: Store) -> None:
    await seed(store, incident(1))
    async with store.transaction() as tx:
        for mid, target in (("s1", "slack"), ("t1", "telegram"), ("s2", "slack"), ("t2", "telegram")):
            await tx.enqueue_message(message(mid, target=target))
    claimed = await store.claim_messages(1, T0)
    assert [(m.id, m.target) for m in claimed] == [("s1", "slack")]
    await store.retry_message("s1", T0 + timedelta(seconds=30))  # Slack answered 429
    assert [m.id for m in await store.claim_messages(10, T0 + timedelta(seconds=1))] == ["t1", "t2"]
    assert [m.id for m in await store.claim_messages(10, T0 + timedelta(seconds=30))] == ["s1", "s2"]


async def test_messages_not_yet_due_are_not_claimed(store: Store) -> None:
    await seed(store, incident(1))
    async with store.transaction() as tx:
        await tx.enqueue_message(message("m1", at=T0 + timedelta(seconds=10)))
    assert await store.claim_messages(10, T0) == []
    assert await store.claim_messages(0, T0 + timedelta(seconds=10)) == []
    assert [m.id for m in await store.claim_messages(10, T0 + timedelta(seconds=10))] == ["m1"]


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_senders_on_separate_engines_never_get_the_same_message(engines: EngineFactory) -> None:
    stores = [SqlStore(await engines()) for _ in range(3)]
    await seed(stores[0], *(incident(n, key=f"k{n}") for n in range(1, 7)))
    async with stores[0].transaction() as tx:
        for n in range(18):
            await tx.enqueue_message(message(f"m{n}", str(n % 6 + 1)))

    log: list[int] = []

    async def sender(store: SqlStore) -> list[str]:
        got: list[str] = []
        while claimed := await store.claim_messages(2, T0):
            for m in claimed:
                got.append(m.id)
                log.append(int(m.id[1:]))
                await store.mark_delivered(m.id, T0)
        return got

    results = await asyncio.gather(*(sender(s) for s in stores))
    everything = [m for got in results for m in got]
    assert sorted(everything) == sorted(f"m{n}" for n in range(18))
    for iid in range(6):  # each incident's messages went out in queue order, whoever sent them
        mine = [n for n in log if n % 6 == iid]
        assert mine == sorted(mine)


# -- audit -----------------------------------------------------------------------------------------


async def test_audit_entries_are_kept_newest_first(store: Store) -> None:
    entries = [
        AuditEntry(at=T0, trigger="incident 1", host="web-1", argv=("df", "-h"), exit_status=0, duration=0.25,
                   output_sha256="a" * 64),
        AuditEntry(at=T0 + timedelta(seconds=1), trigger="cli", host="app-1", argv=("systemctl", "is-active", "x y"),
                   exit_status=None, duration=15.0, output_sha256="b" * 64, error="command_timeout"),
    ]
    for entry in entries:
        await store.record_audit(entry)
    assert await store.audit_log() == list(reversed(entries))
    assert await store.audit_log(limit=1) == [entries[1]]


# -- diagnoses -------------------------------------------------------------------------------------


async def test_the_latest_diagnosis_of_an_incident_is_read_back_as_saved(store: Store) -> None:
    await seed(store, incident(1), incident(2, key="other:5xx"))
    assert await store.get_diagnosis("1") is None
    first = {"status": 502, "causes": [{"id": "upstream_down", "evidence": ["connect() failed (111)"]}], "notes": []}
    second = {"status": 502, "causes": [{"id": "upstream_timeout", "confidence": 0.5}], "findings": [{"n": [1, 2]}]}
    await store.save_diagnosis("1", first, T0)
    assert await store.get_diagnosis("1") == first
    await store.save_diagnosis("1", second, T0 + timedelta(minutes=1))
    await store.save_diagnosis("1", first, T0 - timedelta(minutes=1))  # older, saved late: not the latest
    assert await store.get_diagnosis("1") == second
    assert await store.get_diagnosis("2") is None
    await store.save_diagnosis("2", first, T0)
    await store.save_diagnosis("2", second, T0)  # same time: the one saved last wins
    assert await store.get_diagnosis("2") == second


async def test_a_diagnosis_needs_its_incident(store: Store) -> None:
    with pytest.raises(Exception):  # noqa: B017 - KeyError in memory, IntegrityError in SQL
        await store.save_diagnosis("404", {"causes": []}, T0)
    assert await store.get_diagnosis("404") is None


async def test_chat_threads_are_saved_replaced_and_found_by_their_root_message(store: Store) -> None:
    await seed(store, incident(1), incident(2, key="blog:5xx"))
    assert await store.get_thread("1", "slack") is None
    slack = ChatThread(incident_id="1", target="slack", channel="C0123", root="1764473113.000200", created_at=T0)
    telegram = ChatThread(
        incident_id="1", target="telegram", channel="-1001234567890", root="42", topic="7", created_at=T0
    )
    await store.save_thread(slack)
    await store.save_thread(telegram)
    assert await store.get_thread("1", "slack") == slack
    assert await store.get_thread("1", "telegram") == telegram
    assert await store.get_thread("2", "slack") is None
    moved = slack.model_copy(update={"root": "1764473200.000100"})
    await store.save_thread(moved)  # a card posted again replaces the old root
    assert await store.get_thread("1", "slack") == moved
    assert await store.find_thread("slack", "C0123", "1764473200.000100") == moved
    assert await store.find_thread("slack", "C0123", "1764473113.000200") is None
    assert await store.find_thread("telegram", "-1001234567890", "42") == telegram


async def test_a_chat_thread_needs_its_incident(store: Store) -> None:
    with pytest.raises(Exception):  # noqa: B017 - KeyError in memory, IntegrityError in SQL
        await store.save_thread(ChatThread(incident_id="404", target="slack", channel="C1", root="1.2", created_at=T0))
