"""Application log: what the app server and the app itself wrote during the incident.

What it checks, and why: a 500 is the application failing, and its own log says how: a Python
traceback, ``PHP Fatal error``, gunicorn ``WORKER TIMEOUT``, uWSGI's full listen queue, a refused
database connection, ``No space left on device``. It tails each log of the ``app_log`` fact
(comma-separated paths; at most four) with ``tail -n LINES -- PATH`` and keeps the lines of the last
``since_minutes`` minutes by their timestamps (against the host's own clock, ``date``); lines without
a timestamp (traceback frames) belong to the record before them. A log with no timestamps at all is
read whole. The lines are read by the application and database readers.

Needs: the ``app_log`` fact (config or discovery). Sudo: only when a log is not readable by the
bot's user (``tail`` is retried with sudo; without it the finding says so).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bot.evidence.readers.disk import EnospcReader
from bot.evidence.readers.gunicorn import GunicornLog
from bot.evidence.readers.mysql import MysqlLog
from bot.evidence.readers.node import NodeRuntime, Pm2Log
from bot.evidence.readers.outbound import OutboundCall
from bot.evidence.readers.php import PhpErrors, PhpFpmLog, PhpFpmSlowlog
from bot.evidence.readers.postgres import DbPoolLog, PostgresLog
from bot.evidence.readers.redis import RedisLog
from bot.evidence.readers.traceback import AppTraceback
from bot.evidence.readers.uwsgi import UwsgiLog
from bot.runbook.api import ROOT, Command, CommandResult, Finding, Int, PathArg, Reader, Runbook, Severity, Shape, Steps
from runbooks._facts import invalid_fact, valid_path

MAX_LOGS = 4
_MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
_ISO = re.compile(
    r"(?P<y>\d{4})[-/](?P<mo>\d\d)[-/](?P<d>\d\d)[ T](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[.,]\d+)?"
    r"\s*(?P<tz>Z|[+-]\d\d:?\d\d|UTC|GMT)?"
)
_DMY = re.compile(r"(?P<d>\d\d)-(?P<mon>[A-Za-z]{3})-(?P<y>\d{4}) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)")
_CTIME = re.compile(
    r"[A-Z][a-z]{2} (?P<mon>[A-Z][a-z]{2}) +(?P<d>\d{1,2}) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
    r"(?: (?P<y>\d{4}))?"
)
_SYSLOG = re.compile(
    r"^\W{0,2}(?P<mon>[A-Z][a-z]{2}) +(?P<d>\d{1,2}) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
    r"(?P<y>)"
)
#: Only the start of a line is searched for its timestamp (a prefix such as ``[`` or a container name).
_STAMP_SPAN = 64


class AppLogParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Lines read from the end of each log.
    lines: int = Field(default=2000, ge=10, le=50000)
    #: The incident's time window: lines older than this are left out.
    since_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)


def host_now(text: str) -> datetime | None:
    """``date '+%Y-%m-%dT%H:%M:%S%z'`` output as an aware datetime."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


def stamp(line: str, now: datetime) -> datetime | None:
    """The timestamp at the start of a log line (naive ones in the host's zone), or None."""
    head = line[:_STAMP_SPAN]
    local = now.tzinfo or UTC
    found = _ISO.search(head)
    try:
        if found:
            tz = found.group("tz")
            zone = local
            if tz in ("Z", "UTC", "GMT"):
                zone = UTC
            elif tz:
                sign = 1 if tz[0] == "+" else -1
                digits = tz[1:].replace(":", "")
                zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
            return datetime(
                int(found["y"]),
                int(found["mo"]),
                int(found["d"]),
                int(found["h"]),
                int(found["mi"]),
                int(found["s"]),
                tzinfo=zone,
            )
        for rx in (_DMY, _CTIME, _SYSLOG):
            found = rx.search(head)
            if found and found["mon"].lower() in _MONTHS:
                year = int(found["y"]) if found["y"] else now.year
                when = datetime(
                    year,
                    _MONTHS[found["mon"].lower()],
                    int(found["d"]),
                    int(found["h"]),
                    int(found["mi"]),
                    int(found["s"]),
                    tzinfo=local,
                )
                if not found["y"] and when > now + timedelta(days=1):
                    when = when.replace(year=year - 1)  # syslog has no year: December's lines in January
                return when
    except ValueError:
        return None
    return None


def within(text: str, now: datetime | None, minutes: int) -> tuple[str, bool]:
    """The lines of ``text`` from the last ``minutes`` minutes, and whether any timestamp was found.

    A line without a timestamp goes with the record before it; the lines before the first timestamp
    go with that first record.
    """
    lines = text.splitlines()
    if now is None:
        return text, False
    stamps = [stamp(line, now) for line in lines]
    first = next((s for s in stamps if s is not None), None)
    if first is None:
        return text, False
    cutoff = now - timedelta(minutes=minutes)
    keep = first >= cutoff
    kept: list[str] = []
    for line, when in zip(lines, stamps, strict=True):
        if when is not None:
            keep = when >= cutoff
        if keep:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else ""), True


class AppLog(Runbook):
    name = "app_log"
    title = "Application log (tracebacks, app server and database client errors)"
    Params = AppLogParams
    readers: ClassVar[tuple[type[Reader], ...]] = (
        GunicornLog,
        UwsgiLog,
        AppTraceback,
        PhpFpmLog,
        PhpErrors,
        PhpFpmSlowlog,
        NodeRuntime,
        Pm2Log,
        PostgresLog,
        DbPoolLog,
        MysqlLog,
        RedisLog,
        OutboundCall,
        EnospcReader,
    )
    shapes = (
        Shape("date", "+%Y-%m-%dT%H:%M:%S%z"),
        Shape("tail", "-n", Int(10, 50000), "--", PathArg("log"), sudo=ROOT),
    )

    def steps(self) -> Steps:
        params = self.params
        assert isinstance(params, AppLogParams)
        findings: list[Finding] = []
        logs: list[str] = []
        for item in (self.facts.get("app_log") or "").split(","):
            path = item.strip()
            if not path or path in logs:
                continue
            if valid_path(path):
                logs.append(path)
            else:
                findings.append(invalid_fact(self.name, "app_log", path, what="path", unused="read"))
        if not logs:
            findings.append(
                Finding(
                    kind="runbook.skipped",
                    severity=Severity.INFO,
                    summary="no application log known (set the app_log fact)",
                    runbook=self.name,
                )
            )
            return findings
        logs = logs[:MAX_LOGS]
        replies = yield (
            Command.of("date", "+%Y-%m-%dT%H:%M:%S%z", timeout=5),
            *(Command.of("tail", "-n", str(params.lines), "--", path, timeout=15) for path in logs),
        )
        assert isinstance(replies, tuple)
        date, *tails = replies
        now = host_now(date.stdout) if date.ok else None
        retry = [t for t in tails if t.error is None and not t.ok and "Permission denied" in t.stderr]
        if retry:
            again = yield tuple(r.command.model_copy(update={"sudo": True}) for r in retry)
            assert isinstance(again, tuple)
            swapped = {r.command.argv: a for r, a in zip(retry, again, strict=True)}
            tails = [swapped.get(t.command.argv, t) for t in tails]
        for path, tail in zip(logs, tails, strict=True):
            if not tail.ok:
                findings.append(self.failed(tail))
                continue
            text, dated = within(tail.stdout, now, params.since_minutes)
            found = self.read(_with(tail, text))
            findings.extend(found)
            if not found:
                span = f"in the last {params.since_minutes} min" if dated else f"in its last {params.lines} lines"
                findings.append(
                    Finding(
                        kind="app_log.nothing_found",
                        severity=Severity.OK,
                        summary=f"{path}: no errors {span}",
                        data={"log": path, "lines": text.count("\n"), "dated": dated},
                        runbook=self.name,
                    )
                )
        return findings


def _with(result: CommandResult, stdout: str) -> CommandResult:
    return result.model_copy(update={"stdout": stdout, "stderr": ""})
