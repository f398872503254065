"""Audit logs of every remote command (DESIGN §7): a JSON-lines file, or the store's audit table.

Both are hash chains (:mod:`bot.core.audit_chain`): each entry carries ``prev``, the hash of the entry
before it, and its own ``hash``, so ``incident-bot audit verify`` finds an edited, deleted or moved entry.

:class:`JsonlAuditor` writes one line per entry: when, what triggered it, host, argv, exit status,
duration, the SHA-256 of the output, our error code, the kind, ``prev`` and ``hash``. Each append opens
the file (created with mode 0600), takes an exclusive ``flock`` on it, reads the last line for ``prev``
and writes the new line in one ``write`` before unlocking, so several processes appending to one file
keep one linear chain; a crash loses at most the entry being written. A last line cut short by a crash
is left as it is (verify reports it) and the new line starts on a line of its own.

:class:`StoreAuditor` keeps the entries of one diagnosis job for the store's ``audit`` table. The
executor's :meth:`Auditor.record` is synchronous and called from inside the runner, so entries are
buffered in order and written by :meth:`StoreAuditor.flush` once the job's commands are over (the
worker flushes whether the diagnosis succeeded or not). Buffering rather than scheduling a task per
entry keeps the order, leaves no write running behind the job, and lets a failing store fail the job
where it can be seen. A process killed mid-job loses that job's buffered entries; the job itself is run
again after its lease expires, and those commands are audited then.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.core.audit_chain import GENESIS, ChainedEntry, entry_hash
from bot.core.ports import AuditEntry
from bot.core.store import Store

_TAIL_CHUNK = 8192


def default_audit_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "incident-bot" / "audit.jsonl"


def _last_line(fd: int) -> tuple[bytes, bool]:
    """The file's last line without its newline, and whether the file ends with a newline (b"", True: empty)."""
    pos = os.fstat(fd).st_size
    if pos == 0:
        return b"", True
    data = b""
    while True:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
        ended = data.endswith(b"\n")
        body = data[:-1] if ended else data
        cut = body.rfind(b"\n")
        if cut >= 0 or pos == 0:
            return body[cut + 1 :], ended


def _prev_of(last: bytes) -> str:
    """The ``prev`` for a line after ``last``: its hash; GENESIS after a legacy or unreadable line."""
    try:
        found = json.loads(last)
    except ValueError:
        return GENESIS
    value = found.get("hash") if isinstance(found, dict) else None
    return value if isinstance(value, str) else GENESIS


def _line(entry: AuditEntry, prev: str) -> bytes:
    fields: dict[str, Any] = entry.model_dump(mode="json")
    fields["prev"] = prev
    fields["hash"] = entry_hash(entry, prev)
    return (json.dumps(fields, ensure_ascii=False, sort_keys=True) + "\n").encode()


class JsonlAuditor:
    """An :class:`~bot.core.ports.Auditor` appending chained entries to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, entry: AuditEntry) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
            last, ended = _last_line(fd)
            line = _line(entry, _prev_of(last) if last else GENESIS)
            os.write(fd, line if ended else b"\n" + line)
        finally:
            os.close(fd)


def _unreadable(ref: str, problem: str) -> ChainedEntry:
    return ChainedEntry(ref=ref, entry=None, prev=None, hash=None, problem=problem)


def read_jsonl_chain(path: Path) -> Iterator[ChainedEntry]:
    """The entries of a JSON-lines audit file in order, ``ref`` the line number (from 1).

    A line that is not a JSON audit entry, or the last line when it has no newline (a write cut
    short), comes back with ``entry`` None and the problem. Raises OSError when the file cannot be read.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            ref = str(number)
            if not raw.endswith(b"\n"):
                yield _unreadable(ref, "incomplete line (a write was cut short)")
                return
            try:
                fields = json.loads(raw)
                if not isinstance(fields, dict):
                    raise ValueError("not an object")
                prev, digest = fields.pop("prev", None), fields.pop("hash", None)
                if not (prev is None or isinstance(prev, str)) or not (digest is None or isinstance(digest, str)):
                    raise ValueError("prev and hash must be strings")
                entry = AuditEntry.model_validate(fields)
            except (ValueError, ValidationError):
                yield _unreadable(ref, "not a JSON audit entry")
                return
            yield ChainedEntry(ref=ref, entry=entry, prev=prev, hash=digest)


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
