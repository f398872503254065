"""PostgreSQL: is it up, is it full, is something holding requests past the proxy's timeout?

Checks, over one SSH connection:

1. ``pg_isready -h <pg_host> -p <pg_port> -U <user> -d <database> -t 3`` (accepting / rejecting /
   no response) and, at the same time, the last ``log_lines`` of the server log (fact
   ``postgresql_log``) within the last ``window_minutes`` and since the last shutdown request, if
   any (a shutdown ends every session, so older complaints no longer apply): too many clients,
   shutdowns, crash recovery, OOM-killed backends… (read by the ``postgres.log`` reader).
2. Only when the server answers: one ``psql`` session running two queries, connections against
   ``max_connections`` and the client backends that are not idle (runtime, wait event and
   ``pg_blocking_pids``): queries active for ``slow_after_seconds`` or more (set it to the proxy's
   timeout) and lock waits. When every slot is taken psql itself fails with ``too many clients``;
   that refusal is evidence too.

Needs the facts ``pg_host`` and/or ``pg_port`` (otherwise only the log is read), optionally
``pg_user`` and ``pg_database`` (default ``postgres``/``postgres``) and ``postgresql_log``. A
``pg_host`` that is an absolute path is a unix-socket directory, as in libpq. No password ever goes
on a command line: the bot relies on ``~/.pgpass`` or trust/peer authentication. With no
``pg_user``, psql first runs as the ``postgres`` operating-system user (``sudo -n -u postgres``,
which needs the host's ``allow_sudo``), then, if sudo is not allowed, as the SSH user with
``-U postgres``. Reading the log may need sudo too (``/var/log/postgresql`` is ``postgres:adm``
0640 on Debian): the retry is a plain ``sudo -n tail -n LINES -- LOG`` (no shell, so its sudoers rule
can carry NOEXEC), cut to the window by the clock the first attempt printed; without sudo the log is
reported as unreadable. psql's connection timeout goes in the connection string (``-d "dbname=D
connect_timeout=3"``), not the environment, so the same argv runs under ``sudo -u postgres``. Read-only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from bot.evidence.readers.postgres import PgIsReady, PgStatActivity, PostgresLog
from bot.runbook.api import (
    ROOT,
    Command,
    CommandResult,
    Either,
    Finding,
    Host,
    Int,
    Name,
    PathArg,
    Port,
    Prefixed,
    Reply,
    Runbook,
    Shape,
    Steps,
)
from runbooks._datastore import Server, one, server_facts, session_findings
from runbooks._facts import check_facts

#: Connections against the limit (the ``postgres.activity`` reader's count query, verbatim).
COUNT_SQL = (
    "SELECT count(*) AS connections, current_setting('max_connections')::int AS max_connections "
    "FROM pg_stat_activity WHERE backend_type = 'client backend'"
)
#: Every client backend that is not idle, longest first, with what it waits on and who blocks it.
ACTIVITY_SQL = (
    "SELECT pid, state, now() - query_start AS runtime, wait_event_type, wait_event, "
    "pg_blocking_pids(pid) AS blocked_by, left(regexp_replace(query, '\\s+', ' ', 'g'), 200) AS query "
    "FROM pg_stat_activity WHERE backend_type = 'client backend' AND state <> 'idle' "
    "ORDER BY runtime DESC NULLS LAST LIMIT 50"
)
#: The host's clock and zone, then the log's tail: the window is cut against the host's own time.
TAIL_SCRIPT = 'date "+%s %Z %z" && exec tail -n "$2" -- "$1"'
DEFAULT_ROLE = "postgres"
#: psql's options before the connection; then -h, -p, -U, -d, then the two queries.
PSQL = ("psql", "-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", "-w")
MAX_LOG_LINES = 5000
_SERVER = Either(Host(), PathArg("socket"))

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}$")
_PATH = re.compile(r"^/[^\x00-\x1f\x7f]*$")
#: What psql's refusal may say about the server (anything else, a failed login, is about the bot).
_SERVER_STATE = {
    "postgres.too_many_clients",
    "postgres.reserved_slots",
    "postgres.starting_up",
    "postgres.shutting_down",
    "postgres.recovery",
    "postgres.not_accepting",
    "postgres.connect_refused",
    "postgres.connection_lost",
    "postgres.backend_crashed",
    "postgres.crash_restart",
    "postgres.admin_shutdown",
    "postgres.disk_full",
    "postgres.dns",
}


class PostgresParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Queries active this long are reported: set it to the proxy's timeout (nginx proxy_read_timeout).
    slow_after_seconds: float = Field(default=30.0, gt=0, le=86400)
    #: How much of the server log to read, and how far back (against the host's clock).
    log_lines: int = Field(default=300, ge=1, le=MAX_LOG_LINES)
    window_minutes: int = Field(default=60, ge=1, le=10080)


_STAMP = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.\d+)? (?P<zone>[A-Za-z]{1,6}|[+-]\d{2}(?::?\d{2})?)\b"
)
_CLOCK = re.compile(r"^(?P<epoch>\d+) (?P<zone>\S+) (?P<offset>[+-]\d{4})$")


def _offset(text: str) -> timedelta:
    sign = -1 if text.startswith("-") else 1
    digits = text[1:].replace(":", "").ljust(4, "0")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))


def within_window(stdout: str, minutes: int) -> str:
    """The log lines of the last ``minutes``, from ``date "+%s %Z %z"`` followed by the log's tail.

    A line stamped ``YYYY-MM-DD HH:MM:SS[.ms] ZONE`` (``log_line_prefix`` ``%m``/``%t``, csvlog) is
    kept when it is recent; lines without a stamp (DETAIL, STATEMENT, syslog) follow the line before.
    A zone that is neither UTC, numeric nor the host's own cannot be placed in time and is kept.
    """
    first, _, rest = stdout.partition("\n")
    clock = _CLOCK.match(first.strip())
    if clock is None:
        return stdout
    since = datetime.fromtimestamp(int(clock.group("epoch")), UTC) - timedelta(minutes=minutes)
    zones = {
        "UTC": timedelta(0),
        "GMT": timedelta(0),
        "Z": timedelta(0),
        clock.group("zone"): _offset(clock.group("offset")),
    }
    kept: list[str] = []
    keep = True
    for line in rest.splitlines():
        stamp = _STAMP.match(line)
        if stamp:
            zone = stamp.group("zone")
            offset = _offset(zone) if zone[0] in "+-" else zones.get(zone)
            if offset is not None:
                when = datetime.strptime(stamp.group("ts"), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - offset
                keep = when >= since
            else:
                keep = True
        if keep:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


_SHUTDOWN_REQUEST = re.compile(r"received (?:smart|fast|immediate) shutdown request")


def since_last_shutdown(log: str) -> str:
    """The log from the last shutdown request on (all of it when there is none).

    An orderly shutdown ends every session, so what the log said before it (too many clients, long
    queries) no longer describes the server; a crash has no shutdown request and is kept whole.
    """
    lines = log.splitlines(keepends=True)
    for i in range(len(lines) - 1, -1, -1):
        if _SHUTDOWN_REQUEST.search(lines[i]):
            return "".join(lines[i:])
    return log


def _activity_reader(seconds: float) -> type[PgStatActivity]:
    """The ``postgres.activity`` reader with this runbook's long-query threshold."""
    if seconds == PgStatActivity.long_query_seconds:
        return PgStatActivity

    class Activity(PgStatActivity):
        long_query_seconds = seconds

    return Activity


def _all(reply: Reply) -> tuple[CommandResult, ...]:
    return reply if isinstance(reply, tuple) else (reply,)


def _after_clock(first: CommandResult, tail: CommandResult) -> CommandResult:
    """``tail``'s result with the clock line ``first`` printed before its own tail failed put in front."""
    clock = first.stdout.partition("\n")[0]
    if tail.error is not None or not _CLOCK.match(clock.strip()):
        return tail
    return tail.model_copy(update={"stdout": f"{clock}\n{tail.stdout}"})


def _sudo_refused(result: CommandResult) -> bool:
    """sudo itself said no (not allowed by the config, or a password/user problem), not psql."""
    return result.error == "sudo_not_allowed" or (result.exit_status == 1 and result.stderr.startswith("sudo:"))


class Postgres(Runbook):
    name = "postgres"
    title = "PostgreSQL: pg_isready, connections vs max_connections, long queries, lock waits, server log"
    statuses = frozenset({500, 502, 503, 504})
    roles = frozenset({"db"})
    Params = PostgresParams
    readers = (PgIsReady, PgStatActivity, PostgresLog)
    shapes = (
        Shape("pg_isready", "-h", _SERVER, "-p", Port(), "-U", Name(), "-d", Name(), "-t", "3"),
        Shape("sh", "-c", TAIL_SCRIPT, "sh", PathArg("log"), Int(1, MAX_LOG_LINES)),
        Shape("tail", "-n", Int(1, MAX_LOG_LINES), "--", PathArg("log"), sudo=ROOT),
        Shape(
            *PSQL,
            "-h",
            _SERVER,
            "-p",
            Port(),
            "-U",
            Name(),
            "-d",
            Prefixed("dbname=", Name(), " connect_timeout=3"),
            "-c",
            COUNT_SQL,
            "-c",
            ACTIVITY_SQL,
            sudo=("postgres",),
        ),
    )

    def steps(self) -> Steps:
        server, findings = server_facts(self.facts, "pg", "5432")
        facts, more = check_facts(self.facts, {"pg_user": _NAME, "pg_database": _NAME, "postgresql_log": _PATH})
        findings += more
        role, database = facts.get("pg_user", DEFAULT_ROLE), facts.get("pg_database", DEFAULT_ROLE)
        first: list[Command] = []
        if server is not None:
            where = ("-h", server.host, "-p", server.port)
            first.append(Command.of("pg_isready", *where, "-U", role, "-d", database, "-t", "3", timeout=10))
        log_path = facts.get("postgresql_log")
        if log_path:
            first.append(self._tail(log_path, sudo=False))
        if not first:
            return findings
        results = _all((yield tuple(first)))
        answers = True
        for result in results:
            if result.command.argv[0] == "pg_isready":
                answers = result.exit_status in (0, 127)  # accepting, or no pg_isready: let psql tell
                findings += [self.failed(result)] if result.exit_status == 127 else self.read(result, PgIsReady)
            elif log_path:
                log = result
                if result.exit_status == 1 and "Permission denied" in result.stderr:
                    log = _after_clock(result, one((yield self._tail(log_path, sudo=True))))
                findings += self._read_log(log, log_path)
        if server is not None and answers:
            findings += yield from self._activity(server, role, database, sudo_first="pg_user" not in facts)
        return findings

    # -- the pieces -------------------------------------------------------------------------------
    def _tail(self, path: str, *, sudo: bool) -> Command:
        """The clock and the log's tail (:data:`TAIL_SCRIPT`); with ``sudo``, the plain ``tail`` alone."""
        lines = str(self._params().log_lines)
        label = f"tail -n {lines} {path}"
        if sudo:
            return Command.of("tail", "-n", lines, "--", path, timeout=10, sudo=True, label=label)
        return Command.pipeline(TAIL_SCRIPT, path, lines, timeout=10, label=label)

    def _params(self) -> PostgresParams:
        assert isinstance(self.params, PostgresParams)
        return self.params

    def _read_log(self, result: CommandResult, path: str) -> list[Finding]:
        if not result.ok:
            return [self.failed(result)]
        lines = since_last_shutdown(within_window(result.stdout, self._params().window_minutes))
        recent = result.model_copy(update={"stdout": lines})
        return self.read(recent, PostgresLog, header=f"PostgreSQL log {path}")

    def _psql(self, host: str, port: str, role: str, database: str, *, sudo: bool) -> Command:
        conninfo = f"dbname={database} connect_timeout=3"  # names are checked: no space, quote or backslash
        psql = (*PSQL, "-h", host, "-p", port, "-U", role, "-d", conninfo, "-c", COUNT_SQL, "-c", ACTIVITY_SQL)
        prefix = ("sudo", "-n", "-u", "postgres") if sudo else ()
        label = f"{'sudo -u postgres ' if sudo else ''}psql -h {host} -p {port} -U {role} -d {database}: "
        return Command(argv=(*prefix, *psql), timeout=15, sudo=sudo, label=label + "max_connections, pg_stat_activity")

    def _activity(self, server: Server, role: str, database: str, *, sudo_first: bool) -> Steps:
        host, port = server.host, server.port
        result = one((yield self._psql(host, port, role, database, sudo=sudo_first)))
        if sudo_first and _sudo_refused(result):
            result = one((yield self._psql(host, port, role, database, sudo=False)))
        reader = _activity_reader(self._params().slow_after_seconds)
        return session_findings(self, result, reader, PostgresLog, _SERVER_STATE)
