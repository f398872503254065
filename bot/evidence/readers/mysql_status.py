"""MySQL/MariaDB connection use: ``Threads_connected`` against ``max_connections``.

Reads the tables of ``SHOW GLOBAL STATUS`` / ``SHOW GLOBAL VARIABLES`` (``| Threads_connected | 9 |``,
what ``mysql --table`` and ``mysqladmin extended-status``/``variables`` print) and their ``--batch``
form (``Threads_connected<TAB>9``). Captured from MariaDB 10.11 (tests/fixtures/runbooks/mysql/).

A server at :data:`NEAR_LIMIT` of ``max_connections`` or more is about to refuse clients with
``Too many connections`` (1040): db_connections_exhausted. ``Threads_connected`` may exceed
``max_connections`` by one: MySQL keeps an extra connection for an account with SUPER
(``CONNECTION ADMIN``), which is how an administrator still gets in when the server is full.
"""

from __future__ import annotations

import re
from typing import ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.evidence.reader import Reader

#: Connections at or above this share of ``max_connections`` count as exhausted.
NEAR_LIMIT = 0.95

_NAMES = ("Threads_connected", "Threads_running", "Max_used_connections", "max_connections")
_ROW = re.compile(r"^\s*\|?\s*(?P<name>" + "|".join(_NAMES) + r")\s*(?:\||\t)\s*(?P<value>\d+)\s*\|?\s*$")


class MysqlStatus(Reader):
    name = "mysql.status"
    title = "MySQL/MariaDB SHOW GLOBAL STATUS/VARIABLES: Threads_connected vs max_connections"
    triggers = (
        r"\|\s*(?:Threads_connected|Threads_running|Max_used_connections|max_connections)\s*\|\s*\d",
        r"(?m:^(?:Threads_connected|Threads_running|Max_used_connections|max_connections)\t\d)",
    )
    signals: ClassVar[dict[str, Signal]] = {
        "mysql.connections_near_limit": Signal(cause="db_connections_exhausted", weight=0.7),
    }

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lines: dict[str, str] = {}

    def feed(self, line: str) -> bool:
        found = _ROW.match(line)
        if found:
            self._values[found.group("name")] = int(found.group("value"))
            self._lines[found.group("name")] = quote_line(line)
        return False

    def findings(self) -> list[Finding]:
        connected = self._values.get("Threads_connected")
        limit = self._values.get("max_connections")
        if connected is None or not limit:
            return []
        ratio = connected / limit
        near = ratio >= NEAR_LIMIT
        summary = f"{connected} of max_connections={limit} connections in use ({ratio:.0%})"
        peak = self._values.get("Max_used_connections")
        running = self._values.get("Threads_running")
        if peak is not None:
            summary += f"; peak since start {peak}"
        return [
            Finding(
                kind="mysql.connections_near_limit" if near else "mysql.connections",
                severity=Severity.CRITICAL if near else Severity.INFO,
                summary=summary,
                evidence=tuple(self._lines[n] for n in ("Threads_connected", "max_connections")),
                data={
                    "connections": connected,
                    "max_connections": limit,
                    "ratio": round(ratio, 3),
                    **({"max_used_connections": peak} if peak is not None else {}),
                    **({"threads_running": running} if running is not None else {}),
                },
                reader=self.name,
            )
        ]


READERS = (MysqlStatus,)
