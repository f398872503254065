"""Audit logs of every remote command (DESIGN §7): a JSON-lines file, or the store's audit table.

:class:`JsonlAuditor` writes one line per command: when, what triggered it, host, argv, exit status,
duration, the SHA-256 of the output and our error code. The file is opened in append mode for each
entry and flushed, so a crash loses at most the entry being written; it is created with mode 0600.

:class:`StoreAuditor` keeps the entries of one diagnosis job for the store's ``audit`` table. The
executor's :meth:`Auditor.record` is synchronous and called from inside the runner, so entries are
buffered in order and written by :meth:`StoreAuditor.flush` once the job's commands are over (the
worker flushes whether the diagnosis succeeded or not). Buffering rather than scheduling a task per
entry keeps the order, leaves no write running behind the job, and lets a failing store fail the job
where it can be seen. A process killed mid-job loses that job's buffered entries; the job itself is run
again after its lease expires, and those commands are audited then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bot.core.ports import AuditEntry
from bot.core.store import Store


def default_audit_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "incident-bot" / "audit.jsonl"


class JsonlAuditor:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, entry: AuditEntry) -> None:
        line = json.dumps(entry.model_dump(mode="json"), ensure_ascii=False, sort_keys=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


class StoreAuditor:
    """An :class:`~bot.core.ports.Auditor` that buffers entries until :meth:`flush` writes them to a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.pending.append(entry)

    async def flush(self) -> int:
        """Write the buffered entries in the order recorded; how many were written."""
        written = 0
        while self.pending:
            await self.store.record_audit(self.pending[0])
            self.pending.pop(0)
            written += 1
        return written
