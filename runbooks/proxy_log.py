"""Proxy error logs (nginx, Apache, HAProxy) over the incident's time window.

Why: the proxy's error log names the failing hop in its own words (``connect() to unix:... failed (2:
No such file or directory)``, ``upstream timed out``, ``AH01114``, ``SC--``); it is the first thing to
read on a 5xx. What it runs, in one fixed pipeline (paths are positional arguments, never script text)::

    sh -c '<TAIL_SCRIPT>' sh LINES PATH...      # date '+%s %Y-%m-%d %H:%M:%S', then tail -n LINES of each readable file
    sudo -n tail -v -n LINES -- PATH...         # only the files the first one found unreadable

Files: the facts ``nginx_error_log``, ``apache_error_log``, ``haproxy_log`` (comma-separated lists are
accepted) plus ``Params.paths``; with none of those, the well-known defaults that exist on the host.
Lines older than ``since_minutes`` (by the host's own clock; nginx and Apache stamp local time, HAProxy's
syslog lines local time or RFC 3339) are dropped before the nginx/Apache/HAProxy readers see them.
A log the bot user may not read is tried again with ``sudo -n`` (``/var/log/nginx`` is root-only on some
distributions) as one plain ``tail`` (no shell, so the sudoers rule can carry NOEXEC; its lines are cut
to the window by the clock the first command printed); when sudo is not allowed that is reported as a
finding, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.evidence.readers.apache import ApacheErrorLog
from bot.evidence.readers.haproxy import HaproxyLog
from bot.evidence.readers.nginx import NginxErrorLog
from bot.runbook.api import ROOT, Command, CommandResult, Finding, Int, PathArg, Repeat, Runbook, Severity, Shape, Steps

#: Prints the host's clock, then each readable file under a ``### PATH`` line; unreadable files are named.
TAIL_SCRIPT = (
    "n=$1; shift; date '+%s %Y-%m-%d %H:%M:%S'; "
    'for f in "$@"; do '
    'if [ -f "$f" ] && [ -r "$f" ]; then printf "### %s\\n" "$f"; tail -n "$n" -- "$f"; '
    'elif [ -e "$f" ] || { [ -d "${f%/*}" ] && [ ! -x "${f%/*}" ]; }; then printf "#unreadable %s\\n" "$f"; fi; '
    "done"
)
MAX_FILES = 12
MAX_LINES = 100_000
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_MONTHS = {
    m: i
    for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)
}
_NGINX_TS = re.compile(r"(?<!\d)(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)")
_APACHE_TS = re.compile(r"\[[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.\d+)? (\d{4})\]")
_ACCESS_TS = re.compile(r"\[(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\]")
_ISO_TS = re.compile(r"(?<!\d)(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,]\d+)? ?(Z|[+-]\d\d:?\d\d)?")
_SYSLOG_TS = re.compile(r"^(?:<\d+>)?([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) ")
_CLOCK = re.compile(r"^(\d+) (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\s*$")


def clean_path(value: str) -> str:
    """An absolute path with no control characters (NUL, newline…) and no leading option dash."""
    if not value.startswith("/") or _CTRL.search(value) or len(value) > 4096:
        raise ValueError(f"{value!r} is not an absolute path without control characters")
    return value


def fact_paths(facts: Mapping[str, str], *names: str) -> tuple[list[str], list[str]]:
    """The valid paths listed (comma-separated) in ``facts[name]``, and the names of invalid facts."""
    paths: list[str] = []
    bad: list[str] = []
    for name in names:
        for raw in (facts.get(name) or "").split(","):
            item = raw.strip()
            if not item:
                continue
            try:
                path = clean_path(item)
            except ValueError:
                bad.append(name)
                continue
            if path not in paths:
                paths.append(path)
    return paths, bad


def bad_fact(name: str, runbook: str) -> Finding:
    return Finding(
        kind="runbook.bad_fact",
        severity=Severity.WARNING,
        summary=f"{runbook}: fact {name} ignored: not an absolute path without control characters",
        data={"fact": name},
        runbook=runbook,
    )


def _ints(values: Iterable[str | None]) -> list[int]:
    return [int(v or 0) for v in values]


def line_time(line: str, year: int) -> datetime | None:
    """A log line's timestamp: aware when the line carries its zone, else naive host-local time.

    nginx ``2026/11/30 05:28:39``, Apache ``[Sun Nov 30 05:28:39.123 2026]``, access logs ``[30/Nov/2026:
    05:28:39 +0000]``, RFC 3339 (rsyslog, journald exports), and syslog ``Nov 30 05:28:39`` (``year``).
    """
    if m := _NGINX_TS.search(line):
        y, mo, d, h, mi, s = _ints(m.groups())
        return datetime(y, mo, d, h, mi, s)
    if m := _ACCESS_TS.search(line):
        month = _MONTHS.get(m.group(2))
        if month is None:
            return None
        d, y, h, mi, s, oh, om = _ints(m.group(1, 3, 4, 5, 6, 8, 9))
        offset = timedelta(hours=oh, minutes=om) * (1 if m.group(7) == "+" else -1)
        return datetime(y, month, d, h, mi, s, tzinfo=UTC) - offset
    if m := _APACHE_TS.search(line):
        month = _MONTHS.get(m.group(1))
        if month is None:
            return None
        d, h, mi, s, y = _ints(m.groups()[1:])
        return datetime(y, month, d, h, mi, s)
    if m := _ISO_TS.search(line):
        y, mo, d, h, mi, s = _ints(m.groups()[:6])
        zone = m.group(7)
        if zone is None:
            return datetime(y, mo, d, h, mi, s)
        stamp = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
        if zone != "Z":
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            stamp = stamp - offset if zone[0] == "+" else stamp + offset
        return stamp
    if m := _SYSLOG_TS.search(line):
        month = _MONTHS.get(m.group(1))
        if month is None:
            return None
        d, h, mi, s = _ints(m.groups()[1:])
        return datetime(year, month, d, h, mi, s)
    return None


class Clock:
    """The host's clock as printed by ``date '+%s %Y-%m-%d %H:%M:%S'``: epoch and local wall time."""

    def __init__(self, epoch: float, local: datetime) -> None:
        self.epoch = epoch
        self.local = local

    @classmethod
    def parse(cls, line: str) -> Clock | None:
        m = _CLOCK.match(line.strip())
        if m is None:
            return None
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[1:])
        return cls(float(m.group(1)), datetime(y, mo, d, h, mi, s))

    def age(self, line: str) -> float | None:
        """Seconds since ``line`` was written, from its timestamp; None when it has none."""
        stamp = line_time(line, self.local.year)
        if stamp is None:
            return None
        if stamp.tzinfo is not None:
            return self.epoch - stamp.timestamp()
        if stamp - self.local > timedelta(days=1) and _SYSLOG_TS.search(line):
            stamp = stamp.replace(year=stamp.year - 1)  # a syslog line (no year) from last December
        return (self.local - stamp).total_seconds()


_TAIL_HEADER = re.compile(r"^==> (/.*) <==$")


class Tail:
    """The output of :data:`TAIL_SCRIPT` (the host clock, each file's lines under ``### PATH``, the
    unreadable files), or of ``tail -v`` (each file under ``==> PATH <==``, no clock: ``clock`` is
    then the one given)."""

    def __init__(self, stdout: str, clock: Clock | None = None) -> None:
        self.clock: Clock | None = None
        self.files: dict[str, list[str]] = {}
        self.unreadable: list[str] = []
        current: list[str] | None = None
        for line in stdout.splitlines():
            if self.clock is None and current is None:
                parsed = Clock.parse(line)
                if parsed is not None:
                    self.clock = parsed
                    continue
            header = _TAIL_HEADER.match(line)
            if line.startswith("### /") or header:
                if header and current is not None and current and current[-1] == "":
                    current.pop()  # the blank line tail prints between files
                current = self.files.setdefault(header.group(1) if header else line[4:], [])
            elif line.startswith("#unreadable /"):
                self.unreadable.append(line[len("#unreadable ") :])
            elif current is not None:
                current.append(line)
        self.clock = self.clock or clock

    def window(self, seconds: float) -> dict[str, tuple[list[str], int]]:
        """Per file, the lines written in the last ``seconds`` (undated lines follow the line before
        them; a file with no recognisable timestamp is kept whole) and how many lines were read."""
        out: dict[str, tuple[list[str], int]] = {}
        for path, lines in self.files.items():
            if self.clock is None:
                out[path] = (lines, len(lines))
                continue
            kept: list[str] = []
            keep = False
            dated = False
            for line in lines:
                age = self.clock.age(line)
                if age is not None:
                    dated = True
                    keep = age <= seconds
                if keep:
                    kept.append(line)
            out[path] = (kept if dated else lines, len(lines))
        return out


def tail_command(lines: int, paths: Iterable[str], *, sudo: bool = False) -> Command:
    """The first tail (:data:`TAIL_SCRIPT`); with ``sudo``, one plain ``tail -v`` of ``paths``."""
    paths = list(paths)
    label = f"tail -n {lines} {' '.join(paths)}"
    if sudo:
        return Command.of("tail", "-v", "-n", str(lines), "--", *paths, timeout=20, sudo=True, label=label)
    return Command.pipeline(TAIL_SCRIPT, str(lines), *paths, timeout=20, label=label)


#: The command lines of :func:`tail_command` (proxy_log and access_log).
TAIL_SHAPES = (
    Shape("sh", "-c", TAIL_SCRIPT, "sh", Int(1, MAX_LINES), Repeat(PathArg("log"), 1, MAX_FILES)),
    Shape("tail", "-v", "-n", Int(1, MAX_LINES), "--", Repeat(PathArg("log"), 1, MAX_FILES), sudo=ROOT),
)


def _only_missing(stderr: str) -> bool:
    """``tail``'s complaints are all about files that do not exist (and there is at least one)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all(line.startswith("tail: ") and "No such file or directory" in line for line in lines)


def read_window(
    runbook: Runbook, results: list[CommandResult], since_minutes: int, clock: Clock | None = None
) -> tuple[list[Finding], list[str]]:
    """Read the tails' in-window lines with the runbook's readers; one note per file read. ``clock``
    serves the outputs that print none (``tail -v``)."""
    findings: list[Finding] = []
    read_files: list[str] = []
    for result in results:
        printed = "### /" in result.stdout or "==> /" in result.stdout
        if result.error is None and not printed and _only_missing(result.stderr):
            continue  # sudo's tail found none of them: a file that is not there (as the script says nothing)
        if result.error is not None or (result.exit_status not in (0, None) and not printed):
            findings.append(runbook.failed(result))
            continue
        tail = Tail(result.stdout, clock)
        window = tail.window(since_minutes * 60.0)
        if not window:
            continue
        text = "".join(f"### {path}\n" + "\n".join(lines) + "\n" for path, (lines, _) in window.items())
        findings.extend(runbook.read(result.model_copy(update={"stdout": text, "stderr": ""})))
        for path, (lines, total) in window.items():
            read_files.append(path)
            findings.append(
                Finding(
                    kind=f"{runbook.name}.read",
                    severity=Severity.INFO,
                    summary=f"{path}: {len(lines)} of the last {total} lines are from the last {since_minutes} min",
                    data={"path": path, "lines_in_window": len(lines), "lines_read": total},
                    host=result.host,
                    runbook=runbook.name,
                )
            )
    return findings, read_files


class LogParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lines: int = Field(default=2000, ge=1, le=MAX_LINES)
    since_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    paths: tuple[str, ...] = Field(default=(), max_length=MAX_FILES)

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(clean_path(p) for p in paths)


def tail_steps(runbook: Runbook, params: LogParams, fact_names: tuple[str, ...], defaults: tuple[str, ...]) -> Steps:
    """Tail the logs named by facts/params (else the defaults), retry unreadable ones with sudo, read."""
    paths, bad = fact_paths(runbook.facts, *fact_names)
    paths = list(dict.fromkeys([*params.paths, *paths]))[:MAX_FILES]
    findings = [bad_fact(name, runbook.name) for name in bad]
    first = yield tail_command(params.lines, paths or defaults)
    assert isinstance(first, CommandResult)
    results = [first]
    head = Tail(first.stdout) if first.error is None else None
    unreadable = head.unreadable if head is not None else []
    if unreadable:
        second = yield tail_command(params.lines, unreadable, sudo=True)
        assert isinstance(second, CommandResult)
        results.append(second)
    read, files = read_window(runbook, results, params.since_minutes, head.clock if head is not None else None)
    findings.extend(read)
    if not files and first.error is None:
        looked = ", ".join(paths or defaults)
        findings.append(
            Finding(
                kind=f"{runbook.name}.none",
                severity=Severity.INFO,
                summary=f"no log to read: none of {looked} exists or is readable",
                data={"paths": list(paths or defaults)},
                host=first.host,
                runbook=runbook.name,
            )
        )
    return findings


class ProxyLog(Runbook):
    """nginx/Apache/HAProxy error log lines of the last ``since_minutes`` minutes."""

    name = "proxy_log"
    title = "Proxy error log (nginx, Apache, HAProxy) over the incident window"
    roles = frozenset({"proxy"})
    Params = LogParams
    readers = (NginxErrorLog, ApacheErrorLog, HaproxyLog)
    shapes = TAIL_SHAPES
    DEFAULTS = (
        "/var/log/nginx/error.log",
        "/var/log/apache2/error.log",
        "/var/log/httpd/error_log",
        "/var/log/haproxy.log",
    )

    def steps(self) -> Steps:
        assert isinstance(self.params, LogParams)
        return (
            yield from tail_steps(
                self, self.params, ("nginx_error_log", "apache_error_log", "haproxy_log"), self.DEFAULTS
            )
        )
