"""The approvals part of the Store port on every backend (memory, SQLite, PostgreSQL): a request is kept
with its parameters, every change of state is conditional (of two approvers racing, one wins; nothing
moves once it expired), due requests are listed for the expiry sweep, and a failed transaction keeps
none."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.approvals import Approval, ApprovalState
from bot.core.incidents import Incident
from bot.core.store import Store

T0 = datetime(2026, 11, 30, 3, 25, 0, 250000, tzinfo=UTC)
PENDING, RUNNING, DONE = ApprovalState.PENDING, ApprovalState.RUNNING, ApprovalState.DONE


def approval(aid: str, number: int = 1, expires: float = 900) -> Approval:
    return Approval(
        id=aid, incident_id=str(number), runbook="restart_unit", host="app-1", params={"unit": "gunicorn.service"},
        asked_by="@alice (slack)", asker="slack:U0ALICE", channel="C0INCIDENTS", created_at=T0,
        expires_at=T0 + timedelta(seconds=expires),
    )  # fmt: skip


async def seed(store: Store, *approvals: Approval) -> None:
    async with store.transaction() as tx:
        for number in {a.incident_id for a in approvals}:
            incident = Incident(id=number, key=f"shop{number}:5xx", service="shop", routed=True, status=502,
                                opened_at=T0)  # fmt: skip
            await tx.save_incident(incident)
        for item in approvals:
            await tx.add_approval(item)


async def test_a_request_is_kept_with_its_parameters_and_listed_per_incident(store: Store) -> None:
    await seed(store, approval("a000000001"), approval("a000000002", number=2))
    found = await store.get_approval("a000000001")
    assert found == approval("a000000001")
    assert [a.id for a in await store.approvals("1")] == ["a000000001"]
    assert await store.get_approval("ffffffffff") is None


async def test_of_two_approvers_racing_exactly_one_wins(store: Store) -> None:
    await seed(store, approval("a000000001"))
    at = T0 + timedelta(minutes=1)
    results = await asyncio.gather(
        *(
            store.transition_approval(
                "a000000001", (PENDING,), RUNNING, at, decided_by=f"@p{n}", decider=f"slack:P{n}", unexpired=True
            )
            for n in range(4)
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].state is RUNNING and winners[0].decided_at == at
    stored = await store.get_approval("a000000001")
    assert stored is not None and stored.decided_by == winners[0].decided_by
    done = await store.transition_approval("a000000001", (RUNNING,), DONE, at, outcome="restarted: active")
    assert done is not None and done.outcome == "restarted: active" and done.decided_by == winners[0].decided_by


async def test_nothing_is_approved_once_it_expired_and_due_ones_are_listed(store: Store) -> None:
    await seed(store, approval("a000000001", expires=60), approval("a000000002", expires=600))
    late = T0 + timedelta(seconds=60)
    assert await store.transition_approval("a000000001", (PENDING,), RUNNING, late, unexpired=True) is None
    assert [a.id for a in await store.due_approvals(late)] == ["a000000001"]
    expired = await store.transition_approval("a000000001", (PENDING,), ApprovalState.EXPIRED, late)
    assert expired is not None and expired.state is ApprovalState.EXPIRED and expired.decided_by is None
    assert await store.due_approvals(late) == []
    assert [a.id for a in await store.due_approvals(T0 + timedelta(hours=1))] == ["a000000002"]


async def test_a_failed_transaction_keeps_no_request(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.save_incident(
                Incident(id="1", key="shop1:5xx", service="shop", routed=True, status=502, opened_at=T0)
            )
            await tx.add_approval(approval("a000000001"))
            raise RuntimeError("boom")
    assert await store.get_approval("a000000001") is None


async def test_runs_still_marked_running_after_a_time_are_listed_as_stuck(store: Store) -> None:
    await seed(store, approval("a000000001"), approval("a000000002"))
    for aid, minute in (("a000000001", 1), ("a000000002", 3)):
        at = T0 + timedelta(minutes=minute)
        assert await store.transition_approval(aid, (PENDING,), RUNNING, at, decided_by="@bob", decider="s:B")
    assert [a.id for a in await store.stuck_approvals(T0 + timedelta(minutes=2))] == ["a000000001"]
    assert [a.id for a in await store.stuck_approvals(T0 + timedelta(minutes=4))] == ["a000000001", "a000000002"]
    await store.transition_approval("a000000001", (RUNNING,), DONE, T0 + timedelta(minutes=5), outcome="ok")
    assert [a.id for a in await store.stuck_approvals(T0 + timedelta(minutes=9))] == ["a000000002"]
