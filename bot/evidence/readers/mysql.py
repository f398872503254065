"""MySQL and MariaDB: server and client errors as apps and the server log print them, and ``mysqladmin ping``.

Message texts and codes: shared/reference/error-messages.md §5.2; each pattern was checked against a
real MariaDB 10.11 run (tests/fixtures/db/SOURCES.md) or a public bug report. Client error texts
differ between libmysql (``Can't connect to MySQL server on 'h' (111)``), MariaDB Connector/C
(``Can't connect to server on 'h' (115)``) and PHP mysqlnd (``SQLSTATE[HY000] [2002] Connection
refused``), so patterns match the stable part and the error number rather than the whole text.

Readers:

* :class:`MysqlLog` recognises server errors (1040 too many connections, 1203/1226 per-user
  limit, 1205 lock wait timeout, 1213 deadlock, 1045 access denied), client errors (2002/2003
  cannot connect, 2005 unknown host, 2006 gone away, 2013/2055 lost connection) and server-log
  lines (InnoDB out of disk space / errno 28, ``mysqld got signal``, ``Out of memory``).
* :class:`MysqladminPing` reads ``mysqladmin ping``: ``mysqld is alive`` is a healthy finding; a
  ``connect to server at '...' failed`` followed by ``error: '...'`` is down only when the error is
  a connection failure. ``Access denied`` there means the server answered (mysqladmin even exits 0).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally, tally_findings

_ERRNO = re.compile(r"\((?P<errno>-?\d+)\)|system error: (?P<errno2>\d+)")
_TARGET = re.compile(r"(?:server on|server host|through socket|server at) '(?P<target>[^']+)'")


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"mysql.{kind}", trigger, summary, severity, **kw)


class MysqlLog(PatternReader):
    name = "mysql.log"
    title = "MySQL/MariaDB server log and client errors"
    patterns = (
        _p(
            "too_many_connections",
            r"\[1040\]|\b1040\b[^\n]*[Tt]oo many connections|Too many connections",
            "{count}× MySQL refused a connection: Too many connections (max_connections reached)",
        ),
        _p(
            "user_connections",
            r"max_user_connections|\[1203\]|\[1226\]",
            "{count}× MySQL per-user connection limit reached (max_user_connections)",
        ),
        _p(
            "lock_wait_timeout",
            r"Lock wait timeout exceeded",
            "{count}× MySQL lock wait timeout (1205): a transaction waited too long for a row lock",
        ),
        _p(
            "deadlock",
            r"Deadlock found when trying to get lock",
            "{count}× MySQL deadlock (1213): a transaction was rolled back",
            Severity.WARNING,
        ),
        _p(
            "disk_full",
            r"\[ERROR\][^\n]*(?:No space left on device|failed with error 28\b|Out of disk space)"
            r"|Errcode: 28\b|Disk is full writing|OS error: 28\b",
            "{count}× MySQL/InnoDB could not write: disk full",
        ),
        _p("server_crash", r"(?:mysqld|mariadbd) got signal \d+", "{count}× mysqld crashed (got a fatal signal)"),
        _p(
            "access_denied",
            r"Access denied for user",
            "{count}× MySQL rejected the login (1045 Access denied)",
            unless=r"^\s*error: '",
        ),
        _p(
            "unknown_host",
            r"Unknown (?:MySQL )?server host|\[2005\]|\[2002\] php_network_getaddresses",
            "{count}× the MySQL host name {target} does not resolve",
            key="target",
        ),
        _p(
            "cannot_connect",
            r"Can't connect to (?:local )?(?:MySQL )?server|\[2002\]|\[2003\]|HY000/200[23]\)",
            "{count}× cannot connect to MySQL {target} (server not running or not listening)",
            key="target",
        ),
        _p(
            "gone_away",
            r"(?:MySQL )?[Ss]erver has gone away",
            "{count}× MySQL server has gone away (2006): connection dropped (restart, wait_timeout)",
            Severity.WARNING,
        ),
        _p(
            "lost_connection",
            r"Lost connection to (?:MySQL )?server",
            "{count}× lost connection to MySQL during a query (2013)",
            Severity.WARNING,
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "mysql.too_many_connections": Signal(cause="db_connections_exhausted", weight=0.9),
        "mysql.user_connections": Signal(cause="db_connections_exhausted", weight=0.8),
        "mysql.lock_wait_timeout": Signal(cause="db_slow_query", weight=0.8),
        "mysql.deadlock": Signal(cause="app_exception", weight=0.55),
        "mysql.disk_full": Signal(cause="disk_full", weight=0.9),
        "mysql.server_crash": Signal(cause="db_down", weight=0.75),
        "mysql.access_denied": Signal(cause="config_error", weight=0.7),
        "mysql.unknown_host": Signal(cause="dns_failure", weight=0.85),
        "mysql.cannot_connect": Signal(cause="db_down", weight=0.85),
        "mysql.gone_away": Signal(cause="db_down", weight=0.55),
        "mysql.lost_connection": Signal(cause="db_down", weight=0.55),
    }

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        target = _TARGET.search(line)
        if target:
            data["target"] = target.group("target")
        if pattern.kind in ("mysql.cannot_connect", "mysql.lost_connection", "mysql.unknown_host"):
            errno = _ERRNO.search(line)
            if errno:
                data["errno"] = int(errno.group("errno") or errno.group("errno2"))
        return data


_CONNECT_FAILED = re.compile(r"connect to server at '(?P<target>[^']*)' failed")
_ERROR_LINE = re.compile(r"^\s*error: '(?P<error>.*)'?\s*$")
_DOWN_ERRORS = re.compile(r"Can't connect|Lost connection|gone away|Unknown (?:MySQL )?server host", re.I)


class MysqladminPing(Reader):
    name = "mysql.ping"
    title = "mysqladmin ping"
    triggers = (
        r"mysqld is (?:now )?alive",
        r"connect to server at '[^']*' failed",
        r"mysqld doesn't answer to ping",
    )
    header = r"mysqladmin"
    signals: ClassVar[dict[str, Signal]] = {
        "mysql.ping_failed": Signal(cause="db_down", weight=0.7),
        "mysql.ping_too_many": Signal(cause="db_connections_exhausted", weight=0.6),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._pending: tuple[str, str] | None = None

    def end_block(self) -> None:
        self._pending = None

    def feed(self, line: str) -> bool:
        if "is alive" in line and "mysqld" in line:
            self.tally.add("mysql.alive", line)
            return False
        if "doesn't answer to ping" in line:
            self.tally.add("mysql.ping_failed", line)
            return False
        failed = _CONNECT_FAILED.search(line)
        if failed:
            self._pending = (failed.group("target"), line)
            return True
        if self._pending is not None:
            target, first = self._pending
            self._pending = None
            error = _ERROR_LINE.match(line)
            message = error.group("error") if error else ""
            if "Too many connections" in message:
                kind = "mysql.ping_too_many"
            elif _DOWN_ERRORS.search(message) or not error:
                kind = "mysql.ping_failed"
            else:
                kind = "mysql.ping_answered"
            self.tally.add(kind, first, target, target=target, error=message[:200])
            if error:
                self.tally.add(kind, line, target)
        return False

    def findings(self) -> list[Finding]:
        summaries = {
            "mysql.alive": ("mysqladmin ping: mysqld is alive", Severity.OK),
            "mysql.ping_failed": ("mysqladmin ping failed: cannot reach mysqld at {target}", Severity.CRITICAL),
            "mysql.ping_too_many": ("mysqladmin ping: mysqld at {target} has no free connection", Severity.CRITICAL),
            "mysql.ping_answered": ("mysqladmin ping: mysqld at {target} answered ({error})", Severity.INFO),
        }

        def describe(kind: str, _key: str, _count: int, data: dict[str, Any]) -> tuple[str, Severity]:
            text, severity = summaries[kind]
            return text.format(target=data.get("target", "?"), error=data.get("error", "")), severity

        return tally_findings(self.name, self.tally.items(), describe)


READERS = (MysqlLog, MysqladminPing)
