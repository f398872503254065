"""The audit hash chain in the store (memory, SQLite, PostgreSQL): appends link up, concurrent appenders on
several PostgreSQL engines (replicas) leave one linear chain, a fork is refused, rows from before migration
0005 are skipped as legacy, and verification finds an edited, deleted or moved row and truncation against
a recorded head; ``incident-bot audit verify --config`` exits 0 then 1 on a real SQLite store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import IntegrityError

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.adapters.db.tables import audit
from bot.core.audit_chain import GENESIS, ChainedEntry, Verdict, entry_hash, verify_async
from bot.core.ports import AuditEntry
from bot.core.store import Store
from bot.testing import MemoryStore
from tests.adapters.db.conftest import SQL, EngineFactory

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(seconds=n), trigger=f"incident {n}", host="web-1", argv=("df", "-h", f"/srv/{n}"),
        exit_status=n % 3 or None, duration=0.1 * n, output_sha256=f"{n:064x}",
        error="command_timeout" if n == 2 else None,
    )  # fmt: skip


async def chain(store: Store) -> list[ChainedEntry]:
    assert isinstance(store, MemoryStore | SqlStore)
    return [item async for item in store.audit_chain()]


async def check(store: Store, expect_head: str | None = None) -> Verdict:
    assert isinstance(store, MemoryStore | SqlStore)
    return await verify_async(store.audit_chain(), expect_head)


async def filled(store: Store, count: int = 4) -> list[ChainedEntry]:
    for n in range(count):
        await store.record_audit(entry(n))
    return await chain(store)


async def edit_exit_status(store: Store, item: ChainedEntry) -> None:
    if isinstance(store, MemoryStore):
        index = store.audit_records.index(item)
        assert item.entry is not None
        changed = item.entry.model_copy(update={"exit_status": 0})
        store.audit_records[index] = item.model_copy(update={"entry": changed})
        return
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:
        await conn.execute(update(audit).where(audit.c.id == int(item.ref)).values(exit_status=0))


async def remove(store: Store, item: ChainedEntry) -> None:
    if isinstance(store, MemoryStore):
        store.audit_records.remove(item)
        return
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:
        await conn.execute(delete(audit).where(audit.c.id == int(item.ref)))


async def swap(store: Store, first: ChainedEntry, second: ChainedEntry) -> None:
    if isinstance(store, MemoryStore):
        records = store.audit_records
        i, j = records.index(first), records.index(second)
        records[i], records[j] = records[j].model_copy(update={"ref": first.ref}), first.model_copy(
            update={"ref": second.ref}
        )
        return
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:  # rows swap places in id order (the order verify reads)
        await conn.execute(update(audit).where(audit.c.id == int(first.ref)).values(id=-1))
        await conn.execute(update(audit).where(audit.c.id == int(second.ref)).values(id=int(first.ref)))
        await conn.execute(update(audit).where(audit.c.id == -1).values(id=int(second.ref)))


async def test_every_append_links_to_the_entry_before_it(store: Store) -> None:
    items = await filled(store)
    assert [i.entry for i in items] == [entry(n) for n in range(4)]
    assert [i.prev for i in items] == [GENESIS, *(i.hash for i in items[:-1])]
    assert all(i.entry is not None and i.prev is not None and i.hash == entry_hash(i.entry, i.prev) for i in items)
    assert [int(i.ref) for i in items] == sorted(int(i.ref) for i in items)
    verdict = await check(store)
    assert (verdict.intact, verdict.chained, verdict.legacy, verdict.head) == (True, 4, 0, items[-1].hash)
    assert await store.audit_log(limit=2) == [entry(3), entry(2)]


async def test_an_edited_entry_is_reported_by_its_id(store: Store) -> None:
    items = await filled(store)
    await edit_exit_status(store, items[1])
    verdict = await check(store)
    assert (verdict.intact, verdict.where, verdict.chained) == (False, items[1].ref, 1)
    assert verdict.problem is not None and verdict.problem.startswith("hash mismatch")


async def test_a_deleted_entry_is_reported_on_the_entry_after_it(store: Store) -> None:
    items = await filled(store)
    await remove(store, items[1])
    verdict = await check(store)
    assert (verdict.intact, verdict.where) == (False, items[2].ref)
    assert verdict.problem is not None and verdict.problem.startswith("prev mismatch")


async def test_moved_entries_are_reported_where_the_order_breaks(store: Store) -> None:
    items = await filled(store)
    await swap(store, items[1], items[2])
    verdict = await check(store)
    assert (verdict.intact, verdict.where) == (False, items[1].ref)
    assert verdict.problem is not None and verdict.problem.startswith("prev mismatch")


async def test_a_truncated_tail_is_caught_only_against_the_recorded_head(store: Store) -> None:
    items = await filled(store)
    head = (await check(store)).head
    await remove(store, items[-1])
    assert (await check(store)).intact
    anchored = await check(store, head)
    assert not anchored.intact and anchored.problem is not None and "truncated" in anchored.problem
    await store.record_audit(entry(9))  # the chain goes on from the new tail
    assert (await check(store)).chained == 4


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_replicas_appending_at_once_leave_one_linear_chain(engines: EngineFactory) -> None:
    replicas = [SqlStore(await engines()) for _ in range(3)]

    async def append(replica: SqlStore, worker: int) -> None:
        for n in range(15):
            await replica.record_audit(entry(worker * 100 + n))

    await asyncio.gather(*(append(replica, w) for w, replica in enumerate(replicas)))
    verdict = await check(replicas[0])
    assert (verdict.intact, verdict.chained) == (True, 45)
    assert sorted(i.entry.trigger for i in await chain(replicas[1]) if i.entry) == sorted(
        f"incident {w * 100 + n}" for w in range(3) for n in range(15)
    )


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_a_second_row_after_the_same_entry_is_refused(engines: EngineFactory) -> None:
    store = SqlStore(await engines())
    items = await filled(store, 2)
    values = entry(7).model_dump() | {"argv": list(entry(7).argv), "prev": items[0].hash, "hash": "f" * 64}
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(insert(audit).values(**values))


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_rows_from_before_the_migration_are_skipped_as_legacy(db_url: str) -> None:
    await upgrade(db_url, "0004")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            for _ in range(2):
                await conn.execute(
                    text("INSERT INTO audit (at, trigger, host, argv, duration, output_sha256) "
                         "VALUES (:at, 'cli', 'web-1', '[\"uptime\"]', 0.5, :digest)"),
                    {"at": T0.replace(tzinfo=None) if "sqlite" in db_url else T0, "digest": "c" * 64},
                )  # fmt: skip
        await upgrade(engine)
        store = SqlStore(engine)
        await store.record_audit(entry(0))
        items = await chain(store)
        assert [(i.hash is None, i.entry.kind if i.entry else None) for i in items] == [
            (True, "command"), (True, "command"), (False, "command")
        ]  # fmt: skip
        verdict = await check(store)
        assert (verdict.intact, verdict.legacy, verdict.chained) == (True, 2, 1)
        assert items[2].prev == GENESIS
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_cli_verify_on_the_configured_store_exits_0_then_1_after_an_edit(
    engines: EngineFactory, db_url: str, tmp_path: Path
) -> None:
    store = SqlStore(await engines())
    items = await filled(store, 3)
    config = tmp_path / "incident-bot.yaml"
    config.write_text(f"database_url: {db_url}\n")

    def cli() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "bot", "audit", "verify", "--config", str(config)]
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)

    intact = cli()
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout == f"audit log intact: 3 chained entries, head {items[-1].hash}\n"
    await edit_exit_status(store, items[2])
    broken = cli()
    assert broken.returncode == 1
    assert broken.stdout.startswith(f"audit log broken at entry {items[2].ref}: hash mismatch")
