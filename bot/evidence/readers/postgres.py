"""PostgreSQL: the server log, libpq/driver errors as apps print them, ``pg_isready`` and ``pg_stat_activity``.

Message texts, SQLSTATEs and versions: shared/reference/error-messages.md §5.1; every pattern was
checked against a real PostgreSQL 15 run (tests/fixtures/db/SOURCES.md) or a public bug report.

Readers:

* :class:`PostgresLog` recognises messages anywhere in a line, so it reads the server log (any
  ``log_line_prefix``, csvlog/jsonlog wrappers, Docker/journald prefixes) and the same texts as a
  client prints them: libpq ≤ 13 ``could not connect to server: Connection refused`` + ``Is the
  server running on host ...``, libpq 14+ ``connection to server at "h" (ip), port 5432 failed:``,
  unix-socket failures, psycopg2/psycopg ``OperationalError``, SQLAlchemy ``(psycopg2.OperationalError)``,
  Django ``django.db.utils.OperationalError``, PHP ``SQLSTATE[08006] [7]``, Rails ``PG::ConnectionBad``,
  Go ``pq:`` and node-postgres (``connect ECONNREFUSED ...:5432``). Slow-query log lines
  (``duration: N ms  statement: ...``) count only at :data:`SLOW_QUERY_MS` or more.
* :class:`DbPoolLog` reads connection-pool timeouts (SQLAlchemy ``QueuePool limit ... connection
  timed out``, HikariCP ``Connection is not available, request timed out after``): the app waited
  for a free pooled connection, whatever the database engine.
* :class:`PgIsReady` reads ``pg_isready`` output (``host:port - accepting connections`` and the
  three failure states) and, inside a ``### $ pg_isready`` block, an exit-status line
  (``exit=2``, ``exit code 2``, ``exit status: 2``). Exit 0 accepting, 1 rejecting, 2 no
  response, 3 no attempt. A full server still answers ``accepting connections``.
* :class:`PgStatActivity` reads psql output (aligned table, ``-A`` unaligned or ``-x`` expanded) of

  ``SELECT pid, state, now() - query_start AS runtime, wait_event_type, wait_event, query
  FROM pg_stat_activity WHERE backend_type = 'client backend' ORDER BY runtime DESC NULLS LAST``

  (the column order does not matter; ``runtime`` may also be called ``duration``, ``age`` or
  ``elapsed``; extra columns are ignored), of ``SHOW max_connections``, and of

  ``SELECT count(*) AS connections, current_setting('max_connections')::int AS max_connections
  FROM pg_stat_activity WHERE backend_type = 'client backend'``.

  An ``active`` row running :data:`LONG_QUERY_SECONDS` or more is a long query, a row waiting on a
  ``Lock`` for :data:`LOCK_WAIT_SECONDS` or more is a lock wait (both db_slow_query). Connections
  at :data:`NEAR_LIMIT` of ``max_connections`` or more point at db_connections_exhausted; the
  ``pg_stat_activity`` row count stands in for ``connections`` when a ``SHOW max_connections`` is
  in the same input.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally, tally_findings

#: A logged statement slower than this (``log_min_duration_statement``) counts as slow.
SLOW_QUERY_MS = 5000
#: An ``active`` pg_stat_activity row older than this is a long query.
LONG_QUERY_SECONDS = 30.0
#: A row waiting on a heavyweight lock for longer than this is a lock wait.
LOCK_WAIT_SECONDS = 10.0
#: Connections at or above this share of ``max_connections`` count as exhausted.
NEAR_LIMIT = 0.95

_CONNECT_PREFIX = (
    r"(?:could not connect to server|connection to server (?:at|on socket) [^\n]*failed"
    r"|\(psycopg[^)]*\) connection failed|connection failed: connection to server)"
)
_HOST = re.compile(
    r'(?:server at "(?P<host>[^"]+)"(?: \([^)]*\))?, port (?P<port>\d+)'
    r'|on socket "(?P<socket>[^"]+)"|running on host "(?P<host2>[^"]+)"'
    r'|host name "(?P<name>[^"]+)"|ECONNREFUSED (?P<addr>\S+))'
)
_DURATION = re.compile(r"duration: (?P<ms>[\d.]+) ms")


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"postgres.{kind}", trigger, summary, severity, **kw)


class PostgresLog(PatternReader):
    name = "postgres.log"
    title = "PostgreSQL server log and libpq/driver connection errors"
    patterns = (
        _p(
            "too_many_clients",
            r"sorry, too many clients already",
            "{count}× PostgreSQL refused a connection: too many clients (max_connections reached)",
        ),
        _p(
            "reserved_slots",
            r"remaining connection slots are reserved",
            "{count}× PostgreSQL: only reserved (superuser) connection slots left",
        ),
        _p(
            "starting_up",
            r"the database system is starting up",
            "{count}× PostgreSQL is starting up and refuses connections",
        ),
        _p(
            "shutting_down",
            r"the database system is shutting down",
            "{count}× PostgreSQL is shutting down and refuses connections",
        ),
        _p(
            "recovery",
            r"the database system is in recovery mode",
            "{count}× PostgreSQL is in crash recovery and refuses connections",
        ),
        _p(
            "server_stopped",
            r"database system is shut down",
            "{count}× PostgreSQL was shut down (pg_isready tells whether it is still down)",
            Severity.WARNING,
        ),
        _p(
            "not_accepting",
            r"the database system is not (?:yet )?accepting connections",
            "{count}× PostgreSQL is not (yet) accepting connections (standby/recovery not ready)",
        ),
        _p(
            "backend_killed",
            r"server process \(PID \d+\) was terminated by signal 9",
            "{count}× a PostgreSQL backend was SIGKILLed (usually the OOM killer); the server restarted",
        ),
        _p(
            "backend_crashed",
            r"server process \(PID \d+\) (?:was terminated by signal|exited with exit code [1-9])",
            "{count}× a PostgreSQL backend crashed; the server reset all connections",
        ),
        _p(
            "crash_restart",
            r"terminating connection because of crash of another server process",
            "{count}× connections terminated because another backend crashed",
            Severity.WARNING,
        ),
        _p(
            "admin_shutdown",
            r"terminating connection due to administrator command",
            "{count}× connections terminated by a shutdown/restart or pg_terminate_backend()",
            Severity.WARNING,
        ),
        _p(
            "statement_timeout",
            r"canceling statement due to statement timeout",
            "{count}× statements cancelled by statement_timeout",
        ),
        _p(
            "lock_timeout",
            r"canceling statement due to lock timeout",
            "{count}× statements cancelled by lock_timeout (waiting on a lock)",
        ),
        _p(
            "query_cancelled",
            r"canceling statement due to user request",
            "{count}× statements cancelled on request (often a client-side timeout)",
            Severity.WARNING,
        ),
        _p(
            "deadlock",
            r"ERROR: +deadlock detected|DeadlockDetected|\bdeadlock detected\b",
            "{count}× deadlock detected: a transaction was aborted",
            Severity.WARNING,
        ),
        _p(
            "disk_full",
            r"could not (?:extend|write|create|open|fsync)[^\n]*No space left on device"
            r"|Check free disk space|could not extend file",
            "{count}× PostgreSQL could not write its files: disk full",
        ),
        _p(
            "idle_tx_timeout",
            r"terminating connection due to idle-in-transaction timeout",
            "{count}× sessions killed by idle_in_transaction_session_timeout",
            Severity.WARNING,
        ),
        _p(
            "auth_failed",
            r"password authentication failed for user|no pg_hba\.conf entry for"
            r"|FATAL: +(?:role|database) \"[^\"]+\" does not exist",
            "{count}× PostgreSQL rejected the login (credentials, role, database or pg_hba.conf)",
        ),
        _p(
            "dns",
            r"could not translate host name",
            "{count}× the database host name {host} does not resolve",
            key="host",
        ),
        _p(
            "connect_refused",
            _CONNECT_PREFIX + r"[^\n]*(?:Connection refused|No such file or directory|10061)"
            r"|ECONNREFUSED [^\s]*:5432\b",
            "{count}× connection to PostgreSQL at {host} refused (server not running or not listening)",
            key="host",
        ),
        _p(
            "connection_lost",
            r"server closed the connection unexpectedly",
            "{count}× the PostgreSQL server closed the connection unexpectedly (backend died or restart)",
            Severity.WARNING,
        ),
        _p(
            "slow_query",
            r"duration: (?:[5-9]\d{3}|\d{5,})(?:\.\d+)? ms +(?:statement|execute|parse|bind)",
            f"{{count}}× statements of {SLOW_QUERY_MS // 1000} s or more in the slow-query log",
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "postgres.too_many_clients": Signal(cause="db_connections_exhausted", weight=0.9),
        "postgres.reserved_slots": Signal(cause="db_connections_exhausted", weight=0.88),
        "postgres.starting_up": Signal(cause="db_down", weight=0.85),
        "postgres.shutting_down": Signal(cause="db_down", weight=0.8),
        "postgres.recovery": Signal(cause="db_down", weight=0.85),
        "postgres.not_accepting": Signal(cause="db_down", weight=0.8),
        "postgres.server_stopped": Signal(cause="db_down", weight=0.6),
        "postgres.backend_killed": Signal(cause="oom_kill", weight=0.7),
        "postgres.backend_crashed": Signal(cause="db_down", weight=0.75),
        "postgres.crash_restart": Signal(cause="db_down", weight=0.7),
        "postgres.admin_shutdown": Signal(cause="db_down", weight=0.55),
        "postgres.statement_timeout": Signal(cause="db_slow_query", weight=0.85),
        "postgres.lock_timeout": Signal(cause="db_slow_query", weight=0.85),
        "postgres.query_cancelled": Signal(cause="db_slow_query", weight=0.5),
        "postgres.deadlock": Signal(cause="app_exception", weight=0.55),
        "postgres.disk_full": Signal(cause="disk_full", weight=0.92),
        "postgres.idle_tx_timeout": Signal(cause="app_exception", weight=0.4),
        "postgres.auth_failed": Signal(cause="config_error", weight=0.75),
        "postgres.dns": Signal(cause="dns_failure", weight=0.85),
        "postgres.connect_refused": Signal(cause="db_down", weight=0.85),
        "postgres.connection_lost": Signal(cause="db_down", weight=0.6),
        "postgres.slow_query": Signal(cause="db_slow_query", weight=0.6),
    }

    def __init__(self) -> None:
        super().__init__()
        self._max_ms = 0.0

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        found = _HOST.search(line)
        if found:
            host = next((v for v in found.groupdict().values() if v), None)
            if host:
                port = found.group("port")
                data["host"] = f"{host}:{port}" if port else host
        if pattern.kind == "postgres.slow_query":
            duration = _DURATION.search(line)
            if duration:
                self._max_ms = max(self._max_ms, float(duration.group("ms")))
        return data

    def findings(self) -> list[Finding]:
        out = []
        for finding in super().findings():
            if finding.kind != "postgres.slow_query":
                out.append(finding)
                continue
            summary = f"{finding.summary} (slowest {self._max_ms:.0f} ms)"
            data = {**finding.data, "max_ms": self._max_ms}
            out.append(finding.model_copy(update={"summary": summary, "data": data}))
        return out


class DbPoolLog(PatternReader):
    name = "db_pool.log"
    title = "Application database connection pool timeouts (SQLAlchemy, HikariCP)"
    patterns = (
        LinePattern(
            "db_pool.timeout",
            r"QueuePool limit of size -?\d+ overflow -?\d+ reached"
            r"|Connection is not available, request timed out after",
            "{count}× the app timed out waiting for a pooled database connection",
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "db_pool.timeout": Signal(cause="db_connections_exhausted", weight=0.75),
    }


_ISREADY = re.compile(
    r"(?P<target>\S+:\d+) - (?P<state>accepting connections|rejecting connections|no response|no attempt)"
)
_EXIT = re.compile(r"^\s*(?:\[?exit(?:[ _]?(?:code|status))?\]?\s*[=:]?\s*|\$\? *= *)(?P<code>\d+)\s*\]?\s*$", re.I)
_ISREADY_KIND = {
    "accepting connections": "postgres.ready",
    "rejecting connections": "postgres.rejecting",
    "no response": "postgres.no_response",
    "no attempt": "postgres.no_attempt",
}
_EXIT_STATE = {0: "accepting connections", 1: "rejecting connections", 2: "no response", 3: "no attempt"}
_ISREADY_SUMMARY = {
    "postgres.ready": "pg_isready: {target} accepting connections",
    "postgres.rejecting": "pg_isready: {target} rejecting connections (starting up, shutting down or in recovery)",
    "postgres.no_response": "pg_isready: no response from {target} (server down or unreachable)",
    "postgres.no_attempt": "pg_isready made no attempt (invalid parameters)",
}
_ISREADY_SEVERITY = {
    "postgres.ready": Severity.OK,
    "postgres.rejecting": Severity.CRITICAL,
    "postgres.no_response": Severity.CRITICAL,
    "postgres.no_attempt": Severity.INFO,
}


def _describe_isready(kind: str, _key: str, _count: int, data: dict[str, Any]) -> tuple[str, Severity]:
    return _ISREADY_SUMMARY[kind].format(target=data.get("target", "the server")), _ISREADY_SEVERITY[kind]


class PgIsReady(Reader):
    name = "postgres.isready"
    title = "pg_isready output and exit status"
    triggers = (r"\S:\d+ - (?:accepting connections|rejecting connections|no response|no attempt)",)
    header = r"pg_isready"
    signals: ClassVar[dict[str, Signal]] = {
        "postgres.rejecting": Signal(cause="db_down", weight=0.65),
        "postgres.no_response": Signal(cause="db_down", weight=0.75),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._in_block = False
        self._block_state: str | None = None

    def start_block(self, header: str) -> None:
        self._in_block = True
        self._block_state = None

    def end_block(self) -> None:
        self._in_block = False

    def feed(self, line: str) -> bool:
        found = _ISREADY.search(line)
        if found:
            state = found.group("state")
            self._block_state = state if self._in_block else None
            self.tally.add(_ISREADY_KIND[state], line, found.group("target"), target=found.group("target"))
            return False
        if self._in_block:
            code = _EXIT.match(line)
            if code and self._block_state is None:
                state = _EXIT_STATE.get(int(code.group("code")))
                if state is not None:
                    self.tally.add(_ISREADY_KIND[state], line, "exit", exit=int(code.group("code")))
            elif code:
                self._block_state = None
        return False

    def findings(self) -> list[Finding]:
        return tally_findings(self.name, self.tally.items(), _describe_isready)


_INTERVAL = re.compile(r"^(?:(?P<days>-?\d+) days? ?)?(?:(?P<h>-?\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?))?$")
_RUNTIME_NAMES = ("runtime", "duration", "age", "elapsed", "?column?", "query_time", "running")
_SEPARATOR = re.compile(r"^[\s\-+]+$")
_ROWS_FOOTER = re.compile(r"^\s*\((\d+) rows?\)\s*$")
_RECORD = re.compile(r"^-\[ RECORD \d+ \]")


def parse_interval(text: str) -> float | None:
    """Seconds in a PostgreSQL interval as psql prints it (``00:00:38.0095``, ``1 day 02:00:00``), or a number."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    found = _INTERVAL.match(text)
    if not found or not (found.group("days") or found.group("h")):
        return None
    days = int(found.group("days") or 0)
    hours = int(found.group("h") or 0)
    minutes = int(found.group("m") or 0)
    seconds = float(found.group("s") or 0)
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


class PgStatActivity(Reader):
    name = "postgres.activity"
    title = "pg_stat_activity rows, SHOW max_connections and the connection count query"
    triggers = (
        r"(?m:^\s*pid\s*\|[^\n]*\bstate\b)",
        r"(?m:^\s*[a-z_]+\s*\|[^\n]*\bpid\b[^\n]*\|[^\n]*\bstate\b)",
        r"(?m:^\s*connections\s*\|\s*max_connections\s*$)",
        r"(?m:^\s*max_connections\s*$)",
        r"(?m:^-\[ RECORD 1 \]-)",
    )
    header = r"pg_stat_activity|max_connections"
    #: An ``active`` row running this long or longer is a long query; a runbook may use a subclass
    #: with its own threshold (the proxy's timeout).
    long_query_seconds: ClassVar[float] = LONG_QUERY_SECONDS
    signals: ClassVar[dict[str, Signal]] = {
        "postgres.long_query": Signal(cause="db_slow_query", weight=0.65),
        "postgres.lock_wait": Signal(cause="db_slow_query", weight=0.7),
        "postgres.connections_near_limit": Signal(cause="db_connections_exhausted", weight=0.7),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._columns: list[str] | None = None
        self._sep = "|"
        self._record: dict[str, str] = {}
        self._record_lines: list[str] = []
        self._expanded = False
        self._rows = 0
        self._rows_seen = False
        self._connections: int | None = None
        self._max_connections: int | None = None
        self._count_line = ""
        self._expect_max = False
        self._max_line = ""

    # -- block and line handling ------------------------------------------------------------------
    def start_block(self, header: str) -> None:
        self._reset_table()

    def end_block(self) -> None:
        self._flush_record()
        self._reset_table()

    def _reset_table(self) -> None:
        self._columns = None
        self._expanded = False
        self._expect_max = False

    def feed(self, line: str) -> bool:
        stripped = line.strip()
        if self._expect_max:
            if _SEPARATOR.match(stripped) and stripped:
                return True
            self._expect_max = False
            if stripped.isdigit():
                self._max_connections = int(stripped)
                self._max_line = line
                return False
        if _RECORD.match(stripped):
            self._flush_record()
            self._expanded = True
            return True
        if self._expanded:
            if "|" in line and not _ROWS_FOOTER.match(line):
                name, _, value = line.partition("|")
                self._record[name.strip().lower()] = value.strip()
                self._record_lines.append(line)
                return True
            self._flush_record()
            self._expanded = False
            return False
        if stripped == "max_connections":
            self._expect_max = True
            return True
        if self._columns is None:
            if "|" in line:
                columns = [c.strip().lower() for c in line.split("|")]
                if "pid" in columns or "max_connections" in columns or "connections" in columns:
                    self._columns = columns
                    return True
            return False
        # inside a table
        if _SEPARATOR.match(stripped) and stripped:
            return True
        footer = _ROWS_FOOTER.match(line)
        if footer or not stripped or "|" not in line:
            self._columns = None
            return False
        values = [v.strip() for v in line.split("|")]
        if len(values) < len(self._columns):
            values += [""] * (len(self._columns) - len(values))
        self._row(dict(zip(self._columns, values, strict=False)), line, [line])
        return True

    def _flush_record(self) -> None:
        if self._record:
            self._row(self._record, self._record_lines[0] if self._record_lines else "", self._record_lines)
        self._record = {}
        self._record_lines = []

    # -- interpretation ---------------------------------------------------------------------------
    def _row(self, row: dict[str, str], line: str, lines: list[str]) -> None:
        if "connections" in row and "max_connections" in row:
            try:
                self._connections = int(row["connections"])
                self._max_connections = int(row["max_connections"])
                self._count_line = line
            except ValueError:
                pass
            return
        if "max_connections" in row and len(row) == 1:
            value = row["max_connections"]
            if value.isdigit():
                self._max_connections = int(value)
                self._max_line = line
            return
        if "pid" not in row:
            return
        self._rows += 1
        self._rows_seen = True
        query = row.get("query", "")
        if "pg_stat_activity" in query:
            return
        runtime = None
        for name in _RUNTIME_NAMES:
            if name in row:
                runtime = parse_interval(row[name])
                if runtime is not None:
                    break
        if runtime is None:
            return
        state = row.get("state", "active").lower()
        evidence = " ".join(x.strip() for x in lines) if len(lines) > 1 else line
        data = {"pid": row.get("pid", "?"), "runtime_s": round(runtime, 1), "query": query[:200]}
        if row.get("wait_event_type", "").lower() == "lock" and runtime >= LOCK_WAIT_SECONDS:
            self.tally.add(
                "postgres.lock_wait", evidence, row.get("pid", ""), **data, wait_event=row.get("wait_event", "")
            )
        elif state == "active" and runtime >= self.long_query_seconds:
            self.tally.add("postgres.long_query", evidence, row.get("pid", ""), **data)

    def findings(self) -> list[Finding]:
        self._flush_record()
        out: list[Finding] = []
        items = self.tally.items()
        for kind in ("postgres.long_query", "postgres.lock_wait"):
            rows = [item for item in items if item[0] == kind]
            if not rows:
                continue
            evidence = tuple(line for item in rows for line in item[3])[:5]
            longest = max(float(item[4]["runtime_s"]) for item in rows)
            what = "active queries running" if kind == "postgres.long_query" else "sessions waiting on a lock for"
            out.append(
                Finding(
                    kind=kind,
                    severity=Severity.CRITICAL,
                    summary=f"{len(rows)} {what} up to {longest:.0f} s (pid {rows[0][4]['pid']})",
                    evidence=evidence,
                    data={"count": len(rows), "longest_s": longest, "pids": [item[4]["pid"] for item in rows]},
                    reader=self.name,
                )
            )
        connections = self._connections
        if connections is None and self._rows_seen and self._max_connections is not None:
            connections = self._rows
        if connections is not None and self._max_connections:
            ratio = connections / self._max_connections
            near = ratio >= NEAR_LIMIT
            evidence = tuple(quote_line(x) for x in (self._count_line, self._max_line) if x)
            out.append(
                Finding(
                    kind="postgres.connections_near_limit" if near else "postgres.connections",
                    severity=Severity.CRITICAL if near else Severity.INFO,
                    summary=f"{connections} of max_connections={self._max_connections} in use ({ratio:.0%})",
                    evidence=evidence,
                    data={
                        "connections": connections,
                        "max_connections": self._max_connections,
                        "ratio": round(ratio, 3),
                    },
                    reader=self.name,
                )
            )
        return out


READERS = (PostgresLog, DbPoolLog, PgIsReady, PgStatActivity)
