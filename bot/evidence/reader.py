"""The evidence-reader contract: recognise text by its content and turn it into Findings.

A reader is fed only the lines its ``triggers`` select (the scanner runs one combined prefilter over
the whole input, so a 1 GB log costs one pass of a DFA, not one Python call per line). A reader that
needs the lines after a trigger (a ``df`` table, a traceback) returns ``True`` from :meth:`Reader.feed`
and receives each following line until it returns ``False``. A reader with a ``header`` pattern also
receives every line of a block that starts with a matching ``### <what it is>`` header; that is how
outputs with no recognisable content (``systemctl is-active`` printing ``failed``) are read.

Triggers are compiled twice, by RE2 over bytes and by Python's ``re`` over text, so they must use the
syntax both share: no back-references, no look-around, flags only as ``(?i:...)`` groups.

Readers are plain objects with no I/O; a fresh instance reads each input, and :meth:`Reader.findings`
is called once at the end.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact

#: Evidence lines kept per tally key: the first few and the most recent.
KEEP_FIRST = 3
#: Distinct keys a tally keeps per kind before folding the rest into one "other" entry.
MAX_KEYS = 32


class Reader(ABC):
    """Base of every evidence reader (built-in, or a runbook's parser)."""

    #: Stable dotted name, the prefix of the finding kinds this reader emits (``nginx.error``).
    name: ClassVar[str]
    #: What the reader understands, for ``explain --list-causes`` and ``runbooks list``.
    title: ClassVar[str]
    #: Regexes that select the lines this reader wants (see the module docstring for the syntax).
    triggers: ClassVar[tuple[str, ...]] = ()
    #: Regex matched (case-insensitively) against the text of a ``### ...`` header that names this input.
    header: ClassVar[str | None] = None
    #: What each finding kind this reader emits suggests.
    signals: ClassVar[Mapping[str, Signal]] = {}

    def start_block(self, header: str) -> None:  # noqa: B027 - optional hook
        """A ``### header`` naming this reader's input begins; every line until the next header follows."""

    def end_block(self) -> None:  # noqa: B027 - optional hook
        """The current block (or file) ended: flush any half-read structure."""

    @abstractmethod
    def feed(self, line: str) -> bool:
        """Read one line (without its line ending). Return True to receive the next line as well."""

    @abstractmethod
    def findings(self) -> list[Finding]:
        """Everything this reader established, called once after the last line."""


@dataclass
class _Entry:
    count: int = 0
    first: list[str] = field(default_factory=list)
    last: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Tally:
    """Counts occurrences per (kind, key) and keeps a few verbatim lines of each, in bounded memory."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._keys_per_kind: dict[str, int] = {}

    def add(self, kind: str, line: str, key: str = "", **data: Any) -> None:
        slot = (kind, key)
        entry = self._entries.get(slot)
        if entry is None:
            if self._keys_per_kind.get(kind, 0) >= MAX_KEYS:
                slot = (kind, "(other)")
                entry = self._entries.get(slot)
            if entry is None:
                entry = self._entries[slot] = _Entry(data=dict(data))
                self._keys_per_kind[kind] = self._keys_per_kind.get(kind, 0) + 1
        entry.count += 1
        if len(entry.first) < KEEP_FIRST:
            entry.first.append(quote_line(line))
        else:
            entry.last = line
        for name, value in data.items():
            entry.data.setdefault(name, value)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def items(self) -> list[TallyItem]:
        """(kind, key, count, evidence lines, data) per entry, most frequent first."""
        out = []
        for (kind, key), entry in self._entries.items():
            lines = list(entry.first)
            if entry.last is not None:
                lines.append(quote_line(entry.last))
            out.append((kind, key, entry.count, tuple(redact(x) for x in lines), entry.data))
        out.sort(key=lambda item: -item[2])
        return out


#: One tally entry: (kind, key, count, evidence lines, data), as :meth:`Tally.items` lists them.
TallyItem = tuple[str, str, int, tuple[str, ...], dict[str, Any]]
#: A tally entry's summary and severity from its kind, key, count and data; None leaves it out.
Describe = Callable[[str, str, int, dict[str, Any]], "tuple[str, Severity] | None"]


def tally_findings(reader: str, items: Iterable[TallyItem], describe: Describe) -> list[Finding]:
    """One finding per tally entry that ``describe`` keeps, with its evidence and ``count`` in its data."""
    out: list[Finding] = []
    for kind, key, count, evidence, data in items:
        described = describe(kind, key, count, data)
        if described is None:
            continue
        summary, severity = described
        out.append(
            Finding(
                kind=kind,
                severity=severity,
                summary=summary,
                evidence=evidence,
                data={**data, "count": count},
                reader=reader,
            )
        )
    return out


@dataclass(frozen=True)
class LinePattern:
    """One recognisable log message: the trigger that finds it and the finding it becomes.

    ``trigger`` is shared-syntax regex text (see the module docstring). ``detail`` is an optional
    Python regex run on the selected line whose named groups become ``data``; the group named in
    ``key`` (if any) separates tallies, e.g. one finding per upstream address. ``summary`` is a
    format string over ``count``, ``key`` and the captured groups.
    """

    kind: str
    trigger: str
    summary: str
    severity: Severity = Severity.CRITICAL
    detail: str | None = None
    key: str | None = None
    unless: str | None = None

    def compiled_trigger(self) -> re.Pattern[str]:
        return re.compile(self.trigger)

    def compiled_detail(self) -> re.Pattern[str] | None:
        return re.compile(self.detail) if self.detail else None

    def compiled_unless(self) -> re.Pattern[str] | None:
        return re.compile(self.unless) if self.unless else None


class PatternReader(Reader):
    """A reader defined by a table of :class:`LinePattern`: the usual shape of a log reader.

    The first pattern whose trigger matches a line wins; subclasses order ``patterns`` from the most
    specific message to the most general.
    """

    patterns: ClassVar[tuple[LinePattern, ...]] = ()
    _compiled: ClassVar[
        tuple[tuple[LinePattern, re.Pattern[str], re.Pattern[str] | None, re.Pattern[str] | None], ...]
    ] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.patterns:
            cls.triggers = tuple(p.trigger for p in cls.patterns)
            cls._compiled = tuple(
                (p, p.compiled_trigger(), p.compiled_detail(), p.compiled_unless()) for p in cls.patterns
            )

    def __init__(self) -> None:
        self.tally = Tally()

    def feed(self, line: str) -> bool:
        matched = self.tally_first(line, line)
        if matched is not None:
            self.on_match(matched[0], line, matched[1])
        return False

    def tally_first(self, text: str, evidence: str) -> tuple[LinePattern, dict[str, Any]] | None:
        """Tally the first pattern that ``text`` matches (and its ``unless`` does not), quoting ``evidence``.

        The pattern and the data it extracted, or None when no pattern matches. Readers that join a
        wrapped line with its continuation match the joined text and quote the line it began on.
        """
        for pattern, trigger, detail, unless in self._compiled:
            if not trigger.search(text) or (unless is not None and unless.search(text)):
                continue
            data = self.extract(pattern, detail, text)
            key = str(data.get(pattern.key, "")) if pattern.key else ""
            self.tally.add(pattern.kind, evidence, key, **data)
            return pattern, data
        return None

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        """The values a matching line carries: the named groups of the pattern's ``detail``.

        Readers whose lines share a layout (nginx's ``upstream: "..."`` tail) override this to parse
        the common fields once for every pattern.
        """
        if detail is None:
            return {}
        match = detail.search(line)
        return {k: v for k, v in match.groupdict().items() if v is not None} if match else {}

    def on_match(self, pattern: LinePattern, line: str, data: dict[str, Any]) -> None:
        """Hook for readers that keep extra state (timestamps, related lines)."""

    def findings(self) -> list[Finding]:
        by_kind = {p.kind: p for p in self.patterns}

        def describe(kind: str, key: str, count: int, data: dict[str, Any]) -> tuple[str, Severity] | None:
            pattern = by_kind.get(kind)
            if pattern is None:
                return None
            values = {**data, "count": count, "key": key or "?"}
            try:
                summary = pattern.summary.format_map(_Defaults(values))
            except (ValueError, IndexError):
                summary = pattern.summary
            return summary, pattern.severity

        return tally_findings(self.name, self.tally.items(), describe)


class _Defaults(dict[str, Any]):
    """format_map helper: a missing field renders as ``?`` instead of raising."""

    def __missing__(self, key: str) -> str:
        return "?"
