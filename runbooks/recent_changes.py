"""Recent changes: what changed on the host just before the incident.

What it checks, and why: most outages follow a change. It lists, against the host's own clock
(``date``): when the systemd units of the ``units`` fact last started and how often systemd restarted
them (``systemctl show -p Id,ActiveEnterTimestamp,NRestarts -- UNITS``), when the web stack's
processes started (``ps -eo pid,lstart,args``), the files modified in the ``app_dir`` fact in the
window (``find DIR -xdev -maxdepth 3 -type f -mmin -N -printf …``, newest first, capped), and the
latest package changes (dpkg.log install/upgrade/remove lines, else apt's history.log). Findings are
information, or warnings for changes inside the window: they answer "what changed", not "why".

Needs: nothing; facts ``units`` and ``app_dir`` add unit restarts and deployed files. Sudo: none.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bot.evidence.readers.changes import PackageChanges, ProcessStarts, RecentFiles, UnitChanges
from bot.runbook.api import Command, Finding, Int, PathArg, Reader, Repeat, Runbook, Severity, Shape, Steps, Unit
from runbooks._facts import valid_path

_UNIT = re.compile(r"^[A-Za-z0-9@._:-]+$")
MAX_UNITS = 8
#: Newest files listed from the app directory.
MAX_FILES = 50
RECENT_FILES = (
    'find "$1" -xdev -maxdepth 3 -type f -mmin "-$2" -printf "%TY-%Tm-%Td %TH:%TM %p\\n" 2>/dev/null'
    ' | sort -r | head -n "$3"'
)
PACKAGES = (
    'if [ -r /var/log/dpkg.log ]; then grep -E "^[0-9-]+ [0-9:]+ (install|upgrade|remove|purge) " /var/log/dpkg.log'
    " | tail -n 50; elif [ -r /var/log/apt/history.log ]; then tail -n 50 /var/log/apt/history.log; fi; exit 0"
)


class RecentChangesParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: How far back a change counts as recent.
    since_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)


class RecentChanges(Runbook):
    name = "recent_changes"
    title = "Recent changes (restarts, process starts, deployed files, packages)"
    Params = RecentChangesParams
    readers: ClassVar[tuple[type[Reader], ...]] = (UnitChanges, ProcessStarts, RecentFiles, PackageChanges)
    shapes = (
        Shape("date", "+%Y-%m-%dT%H:%M:%S"),
        Shape("ps", "-eo", "pid,lstart,args"),
        Shape("sh", "-c", PACKAGES, "sh"),
        Shape("systemctl", "show", "-p", "Id,ActiveEnterTimestamp,NRestarts", "--", Repeat(Unit(), 1, MAX_UNITS)),
        Shape("sh", "-c", RECENT_FILES, "sh", PathArg("app"), Int(1, 7 * 24 * 60), str(MAX_FILES)),
    )

    def steps(self) -> Steps:
        params = self.params
        assert isinstance(params, RecentChangesParams)
        findings: list[Finding] = []
        units = [u.strip() for u in (self.facts.get("units") or "").split(",") if u.strip()]
        bad = [u for u in units if not _UNIT.match(u) or u.startswith("-")]
        units = [u for u in units if u not in bad][:MAX_UNITS]
        app_dir = (self.facts.get("app_dir") or "").strip()
        if app_dir and not valid_path(app_dir):
            bad.append(app_dir)
            app_dir = ""
        findings.extend(
            Finding(
                kind="runbook.bad_fact",
                severity=Severity.WARNING,
                summary=f"invalid fact value {value[:60]!r}; it was not used",
                runbook=self.name,
            )
            for value in bad
        )
        commands = [
            Command.of("date", "+%Y-%m-%dT%H:%M:%S", timeout=5),
            Command.of("ps", "-eo", "pid,lstart,args", timeout=10),
            Command.pipeline(PACKAGES, timeout=10, label="grep install|upgrade|remove /var/log/dpkg.log | tail -n 50"),
        ]
        if units:
            commands.append(
                Command.of("systemctl", "show", "-p", "Id,ActiveEnterTimestamp,NRestarts", "--", *units, timeout=10)
            )
        if app_dir:
            commands.append(
                Command.pipeline(
                    RECENT_FILES,
                    app_dir,
                    str(params.since_minutes),
                    str(MAX_FILES),
                    timeout=20,
                    label=f"find {app_dir} -xdev -maxdepth 3 -type f -mmin -{params.since_minutes}",
                )
            )
        replies = yield tuple(commands)
        assert isinstance(replies, tuple)
        date, *rest = replies
        now = (
            date.stdout.strip()
            if date.ok and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", date.stdout.strip())
            else None
        )
        clock = f" (now: {now}, window: {params.since_minutes} min)" if now else ""
        for result in rest:
            if result.error is not None or result.exit_status == 127:
                findings.append(self.failed(result))
            elif result.ok or result.stdout.strip():
                # systemctl show without systemd fails: nothing to say about units then.
                findings.extend(self.read(result, header=f"{result.command.display}{clock}"))
        return findings
