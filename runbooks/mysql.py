"""MySQL/MariaDB: does the server answer, and how many of its connections are in use?

1. ``mysqladmin --connect-timeout=3 --host=<mysql_host> --port=<mysql_port> --protocol=tcp ping``
   (``mysqld is alive``; a refused or timed-out connection; ``Too many connections``; a login the
   server refused still proves it answers).
2. Only when it is alive: ``mysql … --table -e "SHOW GLOBAL STATUS …; SHOW GLOBAL VARIABLES …"`` for
   ``Threads_connected`` against ``max_connections`` (the ``mysql.status`` reader). If the server
   fills up in between, the client's ``ERROR 1040 … Too many connections`` is the evidence.

Needs the fact ``mysql_host`` and/or ``mysql_port`` (defaults 127.0.0.1 and 3306); a ``mysql_host``
that is an absolute path is the server's unix socket. Credentials come only from the bot user's
option files (``~/.my.cnf``, ``[client]``/``[mysqladmin]``), never from the command line. MariaDB 11
names the programs ``mariadb-admin``/``mariadb``; they are tried when the old names are missing.
No sudo. Read-only.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping

from bot.evidence.readers.mysql import MysqladminPing, MysqlLog
from bot.evidence.readers.mysql_status import MysqlStatus
from bot.runbook.api import Command, CommandResult, Finding, Reply, Runbook, Severity, Step, Steps

STATUS_SQL = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN "
    "('Threads_connected', 'Threads_running', 'Max_used_connections', 'Connection_errors_max_connections'); "
    "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections', 'max_user_connections')"
)
#: Each program under its classic name, then its MariaDB 11 name.
PROGRAMS = {"admin": ("mysqladmin", "mariadb-admin"), "client": ("mysql", "mariadb")}

_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|[0-9A-Fa-f:.]+|/[A-Za-z0-9_./-]*)$")
_PORT = re.compile(r"^[0-9]{1,5}$")
#: What the client's refusal may say about the server (a refused login is about the bot, not it).
_SERVER_STATE = {
    "mysql.too_many_connections",
    "mysql.user_connections",
    "mysql.cannot_connect",
    "mysql.unknown_host",
    "mysql.gone_away",
    "mysql.lost_connection",
}


def _check_facts(facts: Mapping[str, str]) -> tuple[dict[str, str], list[Finding]]:
    good: dict[str, str] = {}
    bad: list[Finding] = []
    for name, rule in (("mysql_host", _HOST), ("mysql_port", _PORT)):
        value = facts.get(name) or ""
        if not value:
            continue
        if rule.match(value) and (name != "mysql_port" or 1 <= int(value) <= 65535):
            good[name] = value
        else:
            bad.append(
                Finding(
                    kind="runbook.bad_fact",
                    severity=Severity.WARNING,
                    summary=f"fact {name}={value[:80]!r} is not valid here; not used",
                    data={"fact": name},
                )
            )
    return good, bad


def _one(reply: Reply) -> CommandResult:
    assert isinstance(reply, CommandResult), "one command was yielded"
    return reply


class Mysql(Runbook):
    name = "mysql"
    title = "MySQL/MariaDB: mysqladmin ping, Threads_connected vs max_connections"
    statuses = frozenset({500, 502, 503, 504})
    roles = frozenset({"db"})
    readers = (MysqladminPing, MysqlStatus, MysqlLog)

    def steps(self) -> Steps:
        facts, findings = _check_facts(self.facts)
        if not facts:
            return findings
        host = facts.get("mysql_host", "127.0.0.1")
        where = (
            (f"--socket={host}",)
            if host.startswith("/")
            else (f"--host={host}", f"--port={facts.get('mysql_port', '3306')}", "--protocol=tcp")
        )
        ping = yield from self._run("admin", "--connect-timeout=3", *where, "ping")
        if ping.error is not None or ping.exit_status == 127:
            return [*findings, self.failed(ping)]
        found = self.read(ping, MysqladminPing)
        findings += found
        if not any(f.kind == "mysql.alive" for f in found):
            return findings
        status = yield from self._run("client", "--connect-timeout=3", *where, "--table", "-e", STATUS_SQL)
        if status.error is not None or status.exit_status == 127:
            return [*findings, self.failed(status)]
        if status.exit_status == 0:
            return findings + self.read(status, MysqlStatus)
        refusal = [f for f in self.read(status, MysqlLog) if f.kind in _SERVER_STATE]
        return findings + (refusal or [self.failed(status)])

    def _run(self, program: str, *args: str) -> Generator[Step, Reply, CommandResult]:
        """Run under the first of the program's names that exists; a generator returning its result."""
        result: CommandResult | None = None
        for name in PROGRAMS[program]:
            result = _one((yield Command.of(name, *args, timeout=10)))
            if result.exit_status != 127:
                break
        assert result is not None
        return result
