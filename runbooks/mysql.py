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

from collections.abc import Generator

from bot.evidence.readers.mysql import MysqladminPing, MysqlLog
from bot.evidence.readers.mysql_status import MysqlStatus
from bot.runbook.api import (
    Alt,
    Command,
    CommandResult,
    Host,
    PathArg,
    Port,
    Prefixed,
    Reply,
    Runbook,
    Shape,
    Step,
    Steps,
)
from runbooks._datastore import one, server_facts, session_findings

STATUS_SQL = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN "
    "('Threads_connected', 'Threads_running', 'Max_used_connections', 'Connection_errors_max_connections'); "
    "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections', 'max_user_connections')"
)
#: Each program under its classic name, then its MariaDB 11 name.
PROGRAMS = {"admin": ("mysqladmin", "mariadb-admin"), "client": ("mysql", "mariadb")}

#: Where the server is: its unix socket, or host and port over TCP.
_WHERE = Alt(
    Prefixed("--socket=", PathArg("socket")),
    (Prefixed("--host=", Host()), Prefixed("--port=", Port()), "--protocol=tcp"),
)

#: What the client's refusal may say about the server (a refused login is about the bot, not it).
_SERVER_STATE = {
    "mysql.too_many_connections",
    "mysql.user_connections",
    "mysql.cannot_connect",
    "mysql.unknown_host",
    "mysql.gone_away",
    "mysql.lost_connection",
}


class Mysql(Runbook):
    name = "mysql"
    title = "MySQL/MariaDB: mysqladmin ping, Threads_connected vs max_connections"
    statuses = frozenset({500, 502, 503, 504})
    roles = frozenset({"db"})
    readers = (MysqladminPing, MysqlStatus, MysqlLog)
    shapes = tuple(
        Shape(name, "--connect-timeout=3", _WHERE, *tail)
        for program, tail in (("admin", ("ping",)), ("client", ("--table", "-e", STATUS_SQL)))
        for name in PROGRAMS[program]
    )

    def steps(self) -> Steps:
        server, findings = server_facts(self.facts, "mysql", "3306")
        if server is None:
            return findings
        where = (
            (f"--socket={server.host}",)
            if server.socket
            else (f"--host={server.host}", f"--port={server.port}", "--protocol=tcp")
        )
        ping = yield from self._run("admin", "--connect-timeout=3", *where, "ping")
        if ping.error is not None or ping.exit_status == 127:
            return [*findings, self.failed(ping)]
        found = self.read(ping, MysqladminPing)
        findings += found
        if not any(f.kind == "mysql.alive" for f in found):
            return findings
        status = yield from self._run("client", "--connect-timeout=3", *where, "--table", "-e", STATUS_SQL)
        return findings + session_findings(self, status, MysqlStatus, MysqlLog, _SERVER_STATE)

    def _run(self, program: str, *args: str) -> Generator[Step, Reply, CommandResult]:
        """Run under the first of the program's names that exists; a generator returning its result."""
        result: CommandResult | None = None
        for name in PROGRAMS[program]:
            result = one((yield Command.of(name, *args, timeout=10)))
            if result.exit_status != 127:
                break
        assert result is not None
        return result
