"""The audit log's hash chain (issue #9): how an entry is hashed, and how a log is checked.

Encoding. An entry's hash is the lowercase hex SHA-256 of the UTF-8 bytes of one JSON object holding the
entry's fields and ``prev``, with keys sorted, no whitespace (separators ``,`` and ``:``) and non-ASCII
characters written as themselves::

    {"argv":["df","-h"],"at":"2026-11-30T03:25:00.000000Z","duration":0.25,"error":null,
     "exit_status":0,"host":"web-1","kind":"command","output_sha256":"…","prev":"…","trigger":"incident 1"}

``at`` is written in UTC with microseconds and a ``Z`` (a naive datetime is taken as UTC), ``argv`` as a
list of strings, ``duration`` as Python writes a float (the shortest text that reads back the same), the
other fields as JSON strings, integers or null. ``prev`` is the hash of the entry before it in the log,
or :data:`GENESIS` (64 zeros) for the first chained entry. A database row's id or a file's line number
is not hashed: the ``prev`` links alone fix the order.

Checking. :class:`ChainWalker` takes the entries in log order and stops at the first broken link: an
entry whose hash does not match its contents (edited), or whose ``prev`` is not the hash of the entry
before it (an entry deleted, inserted or moved). Entries written before the chain existed (no hash) are
accepted only at the start of the log, as "unchained legacy entries", and are not checked. Removing
entries from the end leaves a valid shorter chain: only a head hash recorded elsewhere
(``expect_head``) shows it, so every report gives the head hash and the count to record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from bot.core.ports import AuditEntry

#: The ``prev`` of the first chained entry.
GENESIS = "0" * 64


def canonical(entry: AuditEntry, prev: str) -> bytes:
    """The bytes hashed for ``entry`` chained after ``prev`` (the encoding in this module's docstring)."""
    at = entry.at if entry.at.tzinfo is not None else entry.at.replace(tzinfo=UTC)
    fields = {
        "argv": list(entry.argv),
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "duration": float(entry.duration),
        "error": entry.error,
        "exit_status": entry.exit_status,
        "host": entry.host,
        "kind": entry.kind,
        "output_sha256": entry.output_sha256,
        "prev": prev,
        "trigger": entry.trigger,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: AuditEntry, prev: str) -> str:
    """The hash of ``entry`` chained after ``prev``."""
    return hashlib.sha256(canonical(entry, prev)).hexdigest()


def is_hash(value: str) -> bool:
    """Whether ``value`` has the shape of a chain hash: 64 lowercase hex digits."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class ChainedEntry(BaseModel):
    """An entry as a log stores it: where it is (``ref``: a row id or a line number), its link and hash.

    ``prev`` and ``hash`` are None for an entry written before the chain existed. ``entry`` is None
    when the stored item could not be read as an entry at all; ``problem`` then says why.
    """

    model_config = ConfigDict(frozen=True)

    ref: str
    entry: AuditEntry | None
    prev: str | None
    hash: str | None
    problem: str | None = None


class AuditChainSource(Protocol):
    """A log whose chained entries can be read back in the order appended."""

    def audit_chain(self) -> AsyncIterator[ChainedEntry]: ...


@dataclass(frozen=True)
class Verdict:
    """What a check of a log found: intact or the first broken link, and the head to record."""

    intact: bool
    #: Chained entries checked (up to the break, when broken).
    chained: int
    #: Unchained legacy entries skipped at the start of the log.
    legacy: int
    #: The hash of the last good chained entry (:data:`GENESIS` when there is none).
    head: str
    #: Where the log breaks ("entry 7", "line 12"); None when intact or for a missing expected head.
    where: str | None = None
    problem: str | None = None
    #: With an expected head found in the log: how many entries were appended after it.
    since_expected: int | None = None

    def line(self, unit: str) -> str:
        """One line for a person: ``unit`` names the items ("entry", "line")."""
        legacy = f"; {self.legacy} unchained legacy entries skipped" if self.legacy else ""
        if not self.intact:
            at = f" at {unit} {self.where}" if self.where else ""
            return f"audit log broken{at}: {self.problem} ({self.chained} chained entries good before it{legacy})"
        anchored = ""
        if self.since_expected is not None:
            anchored = f"; expected head found, {self.since_expected} entries appended after it"
        return f"audit log intact: {self.chained} chained entries, head {self.head}{anchored}{legacy}"


class ChainWalker:
    """Checks entries fed in log order; :meth:`feed` returns False at the first broken link."""

    def __init__(self) -> None:
        self.head = GENESIS
        self.chained = 0
        self.legacy = 0
        self.where: str | None = None
        self.problem: str | None = None
        self._seen: dict[str, int] = {}

    def feed(self, item: ChainedEntry) -> bool:
        if self.problem is not None:
            return False
        problem = self._check(item)
        if problem is not None:
            self.where, self.problem = item.ref, problem
            return False
        return True

    def _check(self, item: ChainedEntry) -> str | None:
        if item.entry is None:
            return item.problem or "not an audit entry"
        if item.hash is None:
            if self.chained:
                return "entry has no hash after the chain began (a chained entry was replaced or inserted)"
            self.legacy += 1
            return None
        if item.prev is None or not is_hash(item.prev) or not is_hash(item.hash):
            return "prev or hash is not a 64-digit hex SHA-256"
        if entry_hash(item.entry, item.prev) != item.hash:
            return "hash mismatch: the entry was edited after it was written"
        if item.prev != self.head:
            return "prev mismatch: it does not follow the entry before it (an entry was deleted, inserted or moved)"
        self.chained += 1
        self.head = item.hash
        self._seen[item.hash] = self.chained
        return None

    def verdict(self, expect_head: str | None = None) -> Verdict:
        """The result once every entry was fed; ``expect_head`` is a head recorded earlier (truncation check)."""
        if self.problem is not None:
            return Verdict(False, self.chained, self.legacy, self.head, self.where, self.problem)
        if expect_head is None or expect_head == GENESIS:
            return Verdict(True, self.chained, self.legacy, self.head)
        position = self._seen.get(expect_head)
        if position is None:
            problem = (
                f"the expected head {expect_head} is not in the log: entries were removed from its end "
                "(truncated) or the log was replaced"
            )
            return Verdict(False, self.chained, self.legacy, self.head, None, problem)
        return Verdict(True, self.chained, self.legacy, self.head, since_expected=self.chained - position)


def verify(items: Iterable[ChainedEntry], expect_head: str | None = None) -> Verdict:
    """Check a log given in order (stops reading at the first broken link)."""
    walker = ChainWalker()
    for item in items:
        if not walker.feed(item):
            break
    return walker.verdict(expect_head)


async def verify_async(items: AsyncIterable[ChainedEntry], expect_head: str | None = None) -> Verdict:
    """:func:`verify` for a log read asynchronously (a store)."""
    walker = ChainWalker()
    async for item in items:
        if not walker.feed(item):
            break
    return walker.verdict(expect_head)
