"""Socket summary: ``ss -s`` (iproute2), the current layout and the one before v4.17.

Current::

    Total: 101
    TCP:   148 (estab 25, closed 92, orphaned 0, timewait 90)

Before iproute2 4.17 (e.g. CentOS 7, Ubuntu 16.04)::

    Total: 3130 (kernel 3431)
    TCP:   51582 (estab 2866, closed 48611, orphaned 92, synrecv 0, timewait 48611/0), ports 35279

Layouts: shared/reference/error-messages.md §7.2 (``misc/ss.c``, ``print_summary``). The finding is a
measurement, ``host.sockets``; the ``timewait_pileup`` rule turns a TIME-WAIT pile-up into
port_exhaustion, so the reader declares no signal of its own.
"""

from __future__ import annotations

import re
from typing import Any

from bot.core.models import Finding, Severity, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader

#: TIME-WAIT count from which a host is worth a warning (the rule decides what it means).
TIMEWAIT_WARNING = 20000

_TOTAL = re.compile(r"\bTotal:\s+(\d+)(?:\s+\(kernel\s+(\d+)\))?")
_TCP = re.compile(
    r"TCP:\s+(?P<total>\d+)\s+\(estab\s+(?P<estab>\d+),\s+closed\s+(?P<closed>\d+),\s+"
    r"orphaned\s+(?P<orphaned>\d+),\s+(?:synrecv\s+(?P<synrecv>\d+),\s+)?"
    r"timewait\s+(?P<timewait>\d+)(?:/\d+)?\)(?:,\s+ports\s+(?P<ports>\d+))?"
)


class SsSummaryReader(Reader):
    """``ss -s``: TCP sockets by state; the snapshot with the most TIME-WAIT sockets is reported."""

    name = "sockets.ss_summary"
    title = "ss -s (socket summary)"
    triggers = (r"TCP:\s+\d+\s+\(estab\s+\d+", r"(?m:^[ \t]*Total:[ \t]+\d+(?:[ \t]+\(kernel[ \t]+\d+\))?[ \t\r]*$)")

    def __init__(self) -> None:
        self._total_line: str | None = None
        self._all_sockets: int | None = None
        self._best: dict[str, Any] | None = None
        self._best_lines: tuple[str, ...] = ()
        self._snapshots = 0

    def end_block(self) -> None:
        self._total_line = None
        self._all_sockets = None

    def feed(self, line: str) -> bool:
        tcp = _TCP.search(line)
        if tcp is None:
            total = _TOTAL.search(line)
            if total:
                self._total_line = line
                self._all_sockets = int(total.group(1))
                return True
            return False
        data: dict[str, Any] = {k: int(v) for k, v in tcp.groupdict().items() if v is not None}
        if self._all_sockets is not None:
            data["all_sockets"] = self._all_sockets
        lines = tuple(quote_line(x) for x in (self._total_line, line) if x is not None)
        self._total_line = None
        self._all_sockets = None
        self._snapshots += 1
        if self._best is None or data["timewait"] >= self._best["timewait"]:
            self._best = data
            self._best_lines = lines
        return False

    def findings(self) -> list[Finding]:
        if self._best is None:
            return []
        data = {**self._best, "snapshots": self._snapshots}
        timewait = data["timewait"]
        severity = Severity.WARNING if timewait >= TIMEWAIT_WARNING else Severity.OK
        summary = (
            f"{data['total']} TCP sockets: {data['estab']} established, {timewait} in TIME-WAIT, "
            f"{data['orphaned']} orphaned"
        )
        if severity is Severity.WARNING:
            summary += " — TIME-WAIT pile-up: the ephemeral port range (~28,000 by default) may run out"
        return [
            Finding(
                kind="host.sockets",
                severity=severity,
                summary=summary,
                evidence=tuple(redact(x) for x in self._best_lines),
                data=data,
                reader=self.name,
            )
        ]


READERS = (SsSummaryReader,)
