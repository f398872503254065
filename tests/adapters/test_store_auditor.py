"""StoreAuditor: the executor's synchronous ``record`` buffers entries; ``flush`` writes them to the
store's audit table in the order recorded, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.adapters.audit import StoreAuditor
from bot.core.ports import AuditEntry
from bot.testing import MemoryStore

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(seconds=n), trigger="incident:1", host="lab", argv=("tail", "-n", str(n)),
        exit_status=0, duration=0.1, output_sha256="0" * 64,
    )  # fmt: skip


async def test_entries_are_buffered_until_flushed_then_written_in_order_once() -> None:
    store = MemoryStore()
    auditor = StoreAuditor(store)
    for n in range(3):
        auditor.record(entry(n))
    assert store.audit == []
    assert await auditor.flush() == 3
    assert store.audit == [entry(0), entry(1), entry(2)]
    assert await auditor.flush() == 0
    assert len(store.audit) == 3
