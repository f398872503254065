"""What changed on a host just before an incident: restarts, process starts, new files, packages.

None of this is a cause by itself; it answers "what changed?", the first question after "what is
broken?". The readers recognise:

* ``ps -eo pid,lstart,args`` (header ``PID STARTED COMMAND``): when each web-stack program
  (gunicorn, php-fpm, nginx, PostgreSQL… the programs of :mod:`bot.evidence.readers.processes`)
  started. ``lstart`` is the host's local time, e.g. ``Mon Nov 30 05:25:48 2026``.
* ``systemctl show -p Id,ActiveEnterTimestamp,NRestarts -- UNIT…``: ``Id=gunicorn.service``,
  ``ActiveEnterTimestamp=Mon 2026-11-30 05:25:48 UTC``, ``NRestarts=3`` (systemd ≥ 235), one blank-line
  separated block per unit. Restarts made by systemd (``Restart=``) mean the service died.
* ``find DIR … -printf '%TY-%Tm-%Td %TH:%TM %p\\n'`` under a ``### $ find …`` header: files modified
  recently (code and configuration files point at a deploy).
* ``/var/log/dpkg.log`` action lines (``2026-11-30 05:20:20 install sudo:amd64 <none> 1.9.13p3-1``)
  and apt's ``/var/log/apt/history.log`` (``Start-Date:`` / ``Commandline:`` / ``Install:`` …).

A ``now: 2026-11-30T05:40:00+0000`` in a block's header (the host's ``date``, which the
recent_changes runbook adds) lets a reader say how long ago a change was and mark the ones inside the
window (``window: 120 min``) as warnings; without it they are listed as information. Fixtures: real
runs on this machine and against the fault lab (tests/fixtures/runbooks/recent_changes).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader
from bot.evidence.readers.processes import program_of

DEFAULT_WINDOW_MINUTES = 120
_NOW = re.compile(r"now:\s*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")
_WINDOW = re.compile(r"window:\s*(\d+)\s*min")
_LSTART_ROW = re.compile(
    r"^\s*(?P<pid>\d+)\s+(?P<when>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\s+(?P<args>.*)$"
)
_FILE_ROW = re.compile(r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d)(?::\d\d(?:\.\d+)?)? (?P<path>/.*)$")
_DPKG = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<action>install|upgrade|remove|purge) (?P<pkg>\S+) "
    r"(?P<old>\S+) (?P<new>\S+)"
)
_APT_START = re.compile(r"^Start-Date: (?P<when>\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d)")
_APT_ACTION = re.compile(r"^(?P<action>Install|Upgrade|Remove|Purge|Downgrade|Reinstall): (?P<pkgs>.*)$")
_DEPLOY_FILE = re.compile(
    r"\.(?:py|php|js|mjs|cjs|ts|rb|go|jar|war|so|conf|cfg|ini|ya?ml|toml|json|env|lock|service)$|/\.env$"
)
_MAX_ITEMS = 8


class _Clock:
    """The host's 'now' and the window, from a block header; None when the header has no ``now:``."""

    def __init__(self) -> None:
        self.now: datetime | None = None
        self.window = DEFAULT_WINDOW_MINUTES

    def read_header(self, header: str) -> None:
        found = _NOW.search(header)
        if found:
            self.now = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S")
        window = _WINDOW.search(header)
        if window:
            self.window = int(window.group(1))

    def ago(self, when: datetime) -> str:
        if self.now is None:
            return f"at {when:%Y-%m-%d %H:%M}"
        minutes = int((self.now - when).total_seconds() // 60)
        if minutes < 0:
            return f"at {when:%Y-%m-%d %H:%M}"
        if minutes < 120:
            return f"{minutes} min ago ({when:%H:%M})"
        return f"{minutes // 60} h ago ({when:%Y-%m-%d %H:%M})"

    def recent(self, when: datetime) -> bool:
        return self.now is not None and self.now - when <= timedelta(minutes=self.window)


class ProcessStarts(Reader):
    """``ps -eo pid,lstart,args``: when the web stack's programs started (a restart is a change)."""

    name = "changes.process_starts"
    title = "process start times (ps -eo pid,lstart,args)"
    triggers = (r"(?m:^[ \t]*PID[ \t]+STARTED[ \t]+(?:COMMAND|CMD|ARGS)[ \t\r]*$)",)
    header = r"\bps\b.*\blstart\b"

    def __init__(self) -> None:
        self.clock = _Clock()
        self._in_table = False
        #: program → (newest start, line, pid, processes seen)
        self._programs: dict[str, tuple[datetime, str, int, int]] = {}

    def start_block(self, header: str) -> None:
        self.clock.read_header(header)

    def feed(self, line: str) -> bool:
        if re.match(r"^\s*PID\s+STARTED\s+", line):
            self._in_table = True
            return True
        row = _LSTART_ROW.match(line)
        if row is None:
            self._in_table = False
            return False
        program = program_of(row.group("args"))
        if program is not None:
            when = datetime.strptime(re.sub(r"\s+", " ", row.group("when")), "%a %b %d %H:%M:%S %Y")
            old = self._programs.get(program)
            count = (old[3] if old else 0) + 1
            if old is None or when > old[0]:
                self._programs[program] = (when, line, int(row.group("pid")), count)
            else:
                self._programs[program] = (*old[:3], count)
        return True

    def findings(self) -> list[Finding]:
        out = []
        for program, (when, line, pid, count) in self._programs.items():
            recent = self.clock.recent(when)
            out.append(
                Finding(
                    kind="changes.process_started",
                    severity=Severity.WARNING if recent else Severity.INFO,
                    summary=f"{program} (pid {pid}) started {self.clock.ago(when)}"
                    + (f"; {count} {program} processes" if count > 1 else ""),
                    evidence=(redact(quote_line(line)),),
                    data={"program": program, "pid": pid, "started": when.isoformat(), "recent": recent},
                    reader=self.name,
                )
            )
        return out


_SHOW_LINE = re.compile(r"^(?P<key>Id|ActiveEnterTimestamp|NRestarts)=(?P<value>.*)$")


class UnitChanges(Reader):
    """``systemctl show -p Id,ActiveEnterTimestamp,NRestarts``: when each unit started, how often it restarted."""

    name = "changes.units"
    title = "systemd unit start times and restart counts (systemctl show)"
    triggers = (r"(?m:^ActiveEnterTimestamp=)", r"(?m:^NRestarts=\d+)")
    header = r"systemctl\s+show\b"
    signals: ClassVar[dict[str, Signal]] = {"changes.unit_restarted": Signal(cause="upstream_crashed", weight=0.25)}

    def __init__(self) -> None:
        self.clock = _Clock()
        self._unit: dict[str, str] = {}
        self._lines: list[str] = []
        self._units: list[tuple[dict[str, str], tuple[str, ...]]] = []

    def start_block(self, header: str) -> None:
        self.clock.read_header(header)

    def end_block(self) -> None:
        self._close()

    def feed(self, line: str) -> bool:
        found = _SHOW_LINE.match(line.strip())
        if found is None:
            self._close()
            return False
        if found.group("key") in self._unit:
            self._close()
        self._unit[found.group("key")] = found.group("value").strip()
        self._lines.append(quote_line(line))
        return True

    def _close(self) -> None:
        if self._unit and len(self._units) < 64:
            self._units.append((self._unit, tuple(self._lines)))
        self._unit, self._lines = {}, []

    def findings(self) -> list[Finding]:
        self._close()
        out = []
        for unit, lines in self._units:
            name = unit.get("Id", "?")
            restarts = int(unit["NRestarts"]) if unit.get("NRestarts", "").isdigit() else 0
            started = _systemd_time(unit.get("ActiveEnterTimestamp", ""))
            since = f"active since {self.clock.ago(started)}" if started else "not active (no start time)"
            recent = started is not None and self.clock.recent(started)
            data: dict[str, Any] = {"unit": name, "restarts": restarts, "recent": recent}
            if started:
                data["started"] = started.isoformat()
            kind = "changes.unit_restarted" if restarts else "changes.unit_started"
            text = f"unit {name} was restarted {restarts}× by systemd; {since}" if restarts else f"unit {name} {since}"
            out.append(
                Finding(
                    kind=kind,
                    severity=Severity.WARNING if restarts or recent else Severity.INFO,
                    summary=text,
                    evidence=lines,
                    data=data,
                    reader=self.name,
                )
            )
        return out


def _systemd_time(value: str) -> datetime | None:
    found = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", value)
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S") if found else None


class RecentFiles(Reader):
    """``find … -printf '%TY-%Tm-%Td %TH:%TM %p\\n'`` under its header: files changed recently."""

    name = "changes.files"
    title = "recently modified files (find -newermt / -mmin)"
    header = r"\bfind\b.*(?:-newer|-mmin|-mtime)"

    def __init__(self) -> None:
        self.clock = _Clock()
        self._where = ""
        self._files: list[tuple[datetime, str, str]] = []
        self._count = 0
        self._deploy = 0

    def start_block(self, header: str) -> None:
        self.clock.read_header(header)
        found = re.search(r"\bfind\s+(?:--\s+)?(/\S*)", header)
        self._where = found.group(1) if found else ""

    def feed(self, line: str) -> bool:
        row = _FILE_ROW.match(line.strip())
        if row is None:
            return True
        self._count += 1
        path = row.group("path")
        if _DEPLOY_FILE.search(path):
            self._deploy += 1
        if len(self._files) < 200:
            self._files.append((datetime.strptime(row.group("when"), "%Y-%m-%d %H:%M"), path, line))
        return True

    def findings(self) -> list[Finding]:
        if not self._files:
            return []
        files = sorted(self._files, key=lambda item: item[0], reverse=True)
        newest = files[0]
        where = f" in {self._where}" if self._where else ""
        deploy = f", {self._deploy} of them code or configuration" if self._deploy else ""
        return [
            Finding(
                kind="changes.files_modified",
                severity=Severity.WARNING if self._deploy else Severity.INFO,
                summary=f"{self._count} files{where} modified recently{deploy}; newest {newest[1]} "
                f"{self.clock.ago(newest[0])}",
                evidence=tuple(redact(quote_line(f[2])) for f in files[:_MAX_ITEMS]),
                data={
                    "count": self._count,
                    "code_or_config": self._deploy,
                    "newest": newest[1],
                    "files": [f[1] for f in files[:_MAX_ITEMS]],
                },
                reader=self.name,
            )
        ]


class PackageChanges(Reader):
    """dpkg.log action lines and apt history.log entries: packages installed, upgraded or removed."""

    name = "changes.packages"
    title = "package changes (dpkg.log, apt history.log)"
    triggers = (
        r"(?m:^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:install|upgrade|remove|purge) \S+ )",
        r"(?m:^Start-Date: \d{4}-\d\d-\d\d)",
    )
    header = r"dpkg\.log|apt/history\.log"

    def __init__(self) -> None:
        self.clock = _Clock()
        self._changes: list[tuple[datetime, str, str]] = []
        self._apt_when: datetime | None = None

    def start_block(self, header: str) -> None:
        self.clock.read_header(header)

    def feed(self, line: str) -> bool:
        dpkg = _DPKG.match(line)
        if dpkg:
            when = datetime.strptime(dpkg.group("when"), "%Y-%m-%d %H:%M:%S")
            new = dpkg.group("new")
            text = f"{dpkg.group('action')} {dpkg.group('pkg')}" + (f" {new}" if new != "<none>" else "")
            self._add(when, text, line)
            return False
        start = _APT_START.match(line)
        if start:
            self._apt_when = datetime.strptime(re.sub(r"\s+", " ", start.group("when")), "%Y-%m-%d %H:%M:%S")
            return True
        if self._apt_when is not None:
            action = _APT_ACTION.match(line)
            if action:
                pkgs = re.findall(r"([\w.+-]+)(?::\w+)? \(", action.group("pkgs"))
                shown = ", ".join(pkgs[:4]) + (f" +{len(pkgs) - 4}" if len(pkgs) > 4 else "")
                self._add(self._apt_when, f"{action.group('action').lower()} {shown}", line)
            if line.startswith("End-Date:") or not line.strip():
                self._apt_when = None
                return False
            return True
        return False

    def _add(self, when: datetime, text: str, line: str) -> None:
        self._changes.append((when, text, quote_line(line)))
        if len(self._changes) > 400:
            self._changes = sorted(self._changes, key=lambda c: c[0])[-200:]

    def findings(self) -> list[Finding]:
        if not self._changes:
            return []
        changes = sorted(self._changes, key=lambda c: c[0], reverse=True)
        recent = [c for c in changes if self.clock.recent(c[0])]
        shown = recent or changes[:1]
        newest = changes[0]
        if recent:
            summary = (
                f"{len(recent)} package changes in the last {self.clock.window} min; newest: {newest[1]} "
                f"{self.clock.ago(newest[0])}"
            )
        else:
            summary = f"last package change: {newest[1]} {self.clock.ago(newest[0])}"
        return [
            Finding(
                kind="changes.packages",
                severity=Severity.WARNING if recent else Severity.INFO,
                summary=summary,
                evidence=tuple(redact(c[2]) for c in shown[:_MAX_ITEMS]),
                data={
                    "recent": len(recent),
                    "newest": newest[1],
                    "when": newest[0].isoformat(),
                    "changes": [c[1] for c in shown[:_MAX_ITEMS]],
                },
                reader=self.name,
            )
        ]


READERS = (ProcessStarts, UnitChanges, RecentFiles, PackageChanges)
