"""Listening sockets: ``ss -ltnp`` (TCP) and ``ss -lxnp`` (unix) tables, iproute2.

Layout (``misc/ss.c``)::

    State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess
    LISTEN 0      511        127.0.0.1:36825      0.0.0.0:*    users:(("nginx",pid=20175,fd=6),...)

and with ``-x`` a leading ``Netid`` column (``u_str LISTEN 0 4 /run/gunicorn.sock 321077 * 0 users:...``).
For a LISTEN socket ``Recv-Q`` is the number of connections waiting in the accept queue and ``Send-Q``
the queue's size (the backlog): a queue at its size means the program behind it accepts nothing more
(every worker busy or stopped), and the kernel drops or refuses new connections (nginx ``(11: Resource
temporarily unavailable)`` on a unix socket, SYN drops on TCP). That is worker_saturation.

The reader reports the listeners (address and owning program) as information, and each full accept
queue as a warning. Fixtures: real runs against the fault lab (tests/fixtures/runbooks/sockets).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader

_HEADER = re.compile(r"^\s*(?:Netid\s+)?State\s+Recv-Q\s+Send-Q\s+Local Address:Port")
_ROW = re.compile(
    r"^\s*(?:(?P<netid>u_str|u_seq|u_dgr|tcp|udp|tcp6|udp6)\s+)?(?P<state>LISTEN|UNCONN)\s+(?P<recvq>\d+)\s+"
    r"(?P<sendq>\d+)\s+(?P<local>\S+)\s+(?P<rest>.*)$"
)
_USERS = re.compile(r'\(\("(?P<name>[^"]+)",pid=(?P<pid>\d+)')
#: Listeners listed in the summary and kept in data.
_MAX_LISTED = 24


class SsListeners(Reader):
    """``ss -ltnp`` / ``ss -lxnp``: what listens where, and accept queues that are full."""

    name = "sockets.listeners"
    title = "listening sockets (ss -ltnp, ss -lxnp)"
    triggers = (r"(?m:^[ \t]*(?:Netid[ \t]+)?State[ \t]+Recv-Q[ \t]+Send-Q[ \t]+Local Address:Port)",)
    signals: ClassVar[dict[str, Signal]] = {
        "sockets.listen_queue_full": Signal(cause="worker_saturation", weight=0.6),
    }

    def __init__(self) -> None:
        self._listeners: dict[str, dict[str, Any]] = {}
        self._full: list[tuple[dict[str, Any], tuple[str, ...]]] = []
        self._header = ""
        self._tables = 0

    def feed(self, line: str) -> bool:
        if _HEADER.match(line):
            self._header = line
            self._tables += 1
            return True
        row = _ROW.match(line)
        if row is None:
            return False
        if row.group("state") != "LISTEN":
            return True
        local = row.group("local")
        users = _USERS.search(row.group("rest"))
        program = users.group("name") if users else None
        entry: dict[str, Any] = {
            "address": local,
            "program": program,
            "pid": int(users.group("pid")) if users else None,
            "recv_q": int(row.group("recvq")),
            "backlog": int(row.group("sendq")),
            "unix": (row.group("netid") or "").startswith("u_") or local.startswith("/"),
        }
        if local not in self._listeners and len(self._listeners) < 1024:
            self._listeners[local] = entry
        if entry["backlog"] > 0 and entry["recv_q"] >= entry["backlog"] and len(self._full) < 16:
            self._full.append((entry, (redact(quote_line(self._header)), redact(quote_line(line)))))
        return True

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for entry, evidence in self._full:
            who = f" ({entry['program']})" if entry["program"] else ""
            out.append(
                Finding(
                    kind="sockets.listen_queue_full",
                    severity=Severity.WARNING,
                    summary=f"the accept queue of {entry['address']}{who} is full ({entry['recv_q']} waiting, "
                    f"backlog {entry['backlog']}): the program accepts no new connections",
                    evidence=evidence,
                    data=entry,
                    reader=self.name,
                )
            )
        if self._tables:
            listed = list(self._listeners.values())
            names = ", ".join(
                f"{e['address']}" + (f" ({e['program']})" if e["program"] else "") for e in listed[:_MAX_LISTED]
            )
            more = f" and {len(listed) - _MAX_LISTED} more" if len(listed) > _MAX_LISTED else ""
            out.append(
                Finding(
                    kind="sockets.listening",
                    severity=Severity.INFO,
                    summary=f"{len(listed)} listening sockets: {names}{more}" if listed else "nothing listens",
                    evidence=(redact(quote_line(self._header)),),
                    data={"listeners": listed[:_MAX_LISTED], "count": len(listed)},
                    reader=self.name,
                )
            )
        return out


READERS = (SsListeners,)
