"""Service status: is the app server (and the rest of the stack) running?

What it checks, and why: a 502 whose proxy log says "connection refused" is confirmed by the app
server being down; a unit that keeps restarting or was OOM-killed names the reason. It asks whichever
supervisor the host has:

* systemd (when ``/run/systemd/system`` exists): ``systemctl is-active -- UNITS`` for the units of the
  ``units`` fact (or the ``units`` parameter), then ``systemctl status --no-pager --full -n 20 -- UNIT``
  for each one that is not active (its state, result, main pid and last journal lines); with no units
  known, ``systemctl list-units --failed`` lists what failed;
* supervisord (``supervisorctl status``, retried with sudo when its socket is root-only) and pm2
  (``pm2 jlist``) when they are installed;
* the process table, where there is no init system (containers) or the ``app_pid_file`` fact names the
  app's pid file: ``ps -eo pid,ppid,stat,etimes,rss,args``, ``cat -- PIDFILE`` and
  ``ps -p PID -o pid,stat,args`` (a write-free liveness check: no ``kill -0``).

Needs: nothing; facts ``units``, ``app_pid_file`` make it precise. Sudo: only for supervisorctl when
its socket is not readable by the bot's user.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.evidence.readers.processes import Pm2List, ProcessTable, SupervisorStatus
from bot.evidence.readers.systemd import SystemctlIsActiveReader, SystemctlStatusReader, SystemdJournalReader
from bot.runbook.api import (
    ROOT,
    Command,
    CommandResult,
    Finding,
    Int,
    PathArg,
    Reader,
    Repeat,
    Runbook,
    Shape,
    Steps,
    Unit,
)
from runbooks._facts import invalid_fact, valid_path

_UNIT = re.compile(r"^[A-Za-z0-9@._:-]+$")
#: At most this many units are asked about (one ``systemctl status`` channel each).
MAX_UNITS = 8
PROBE = (
    'if [ -d /run/systemd/system ]; then echo "init=systemd"; fi; '
    'for p in supervisorctl pm2; do if command -v "$p" >/dev/null 2>&1; then echo "has=$p"; fi; done; exit 0'
)
PS_TABLE = ("ps", "-eo", "pid,ppid,stat,etimes,rss,args")


def valid_unit(name: str) -> bool:
    return bool(_UNIT.match(name)) and not name.startswith("-") and len(name) <= 256


class ServiceStatusParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: systemd units to check (overrides the ``units`` fact).
    units: tuple[str, ...] = Field(default=(), max_length=MAX_UNITS)
    #: journal lines ``systemctl status`` shows per unit.
    lines: int = Field(default=20, ge=0, le=200)

    @field_validator("units")
    @classmethod
    def _units(cls, units: tuple[str, ...]) -> tuple[str, ...]:
        for unit in units:
            if not valid_unit(unit):
                raise ValueError(f"invalid unit name {unit[:60]!r}: letters, digits and @._:- only")
        return units


def joined(first: CommandResult, *more: CommandResult) -> CommandResult:
    """One result whose output holds every command's output under its own ``### $`` header.

    Readers that relate several outputs (a pid file and the process table) see them in one scan, as
    they would see the same outputs pasted together.
    """
    parts = [first.stdout, first.stderr]
    for result in more:
        parts.append(f"### $ {result.command.display}\n{result.stdout}\n{result.stderr}")
    text = "\n".join(p.rstrip("\n") for p in parts if p)
    return first.model_copy(update={"stdout": text, "stderr": ""})


class ServiceStatus(Runbook):
    name = "service_status"
    title = "Service status (systemd, supervisor, pm2, process table)"
    Params = ServiceStatusParams
    readers: ClassVar[tuple[type[Reader], ...]] = (
        SystemctlIsActiveReader,
        SystemctlStatusReader,
        SystemdJournalReader,
        SupervisorStatus,
        Pm2List,
        ProcessTable,
    )
    shapes = (
        Shape("sh", "-c", PROBE, "sh"),
        Shape("systemctl", "is-active", "--", Repeat(Unit(), 1, MAX_UNITS)),
        Shape("systemctl", "list-units", "--failed", "--no-legend", "--plain", "--no-pager"),
        Shape("systemctl", "status", "--no-pager", "--full", "-n", Int(0, 200), "--", Unit()),
        Shape("supervisorctl", "status", sudo=ROOT),
        Shape("pm2", "jlist"),
        Shape(*PS_TABLE),
        Shape("cat", "--", PathArg("run")),
        Shape("ps", "-p", Int(1, 9_999_999_999), "-o", "pid,stat,args"),
    )

    def steps(self) -> Steps:
        params = self.params
        assert isinstance(params, ServiceStatusParams)
        findings: list[Finding] = []
        units = list(params.units)
        if not units:
            for item in (self.facts.get("units") or "").split(","):
                name = item.strip()
                if name and valid_unit(name) and name not in units:
                    units.append(name)
                elif name:
                    findings.append(invalid_fact(self.name, "units", name))
        units = units[:MAX_UNITS]
        pid_file = (self.facts.get("app_pid_file") or "").strip() or None
        if pid_file is not None and not valid_path(pid_file):
            findings.append(invalid_fact(self.name, "app_pid_file", pid_file))
            pid_file = None

        probe = yield Command.pipeline(PROBE, timeout=10, label="probe: init system, supervisorctl, pm2")
        assert isinstance(probe, CommandResult)
        found = set(probe.stdout.split()) if probe.ok else set()
        systemd = "init=systemd" in found

        batch: list[Command] = []
        if systemd and units:
            batch.append(Command.of("systemctl", "is-active", "--", *units, timeout=10))
        elif systemd:
            batch.append(
                Command.of("systemctl", "list-units", "--failed", "--no-legend", "--plain", "--no-pager", timeout=10)
            )
        if "has=supervisorctl" in found:
            batch.append(Command.of("supervisorctl", "status", timeout=10))
        if "has=pm2" in found:
            batch.append(Command.of("pm2", "jlist", timeout=15))
        if not systemd or pid_file is not None:
            batch.append(Command.of(*PS_TABLE, timeout=10))
            if pid_file is not None:
                batch.append(Command.of("cat", "--", pid_file, timeout=5))
        if not batch:
            return findings
        replies = yield tuple(batch)
        assert isinstance(replies, tuple)
        by_argv = {r.command.argv[:2]: r for r in replies}

        follow: list[Command] = []
        status_of: list[str] = []
        active = by_argv.get(("systemctl", "is-active"))
        if active is not None:
            findings.extend(self._read(active, header=active.command.display))
            states = active.stdout.split()
            for unit, state in zip(units, states, strict=False):
                if state != "active":
                    status_of.append(unit)
            follow.extend(
                Command.of(
                    "systemctl", "status", "--no-pager", "--full", "-n", str(params.lines), "--", unit, timeout=10
                )
                for unit in status_of
            )
        failed_units = by_argv.get(("systemctl", "list-units"))
        if failed_units is not None:
            findings.extend(self._read(failed_units))
        supervisor = by_argv.get(("supervisorctl", "status"))
        if supervisor is not None and _needs_sudo(supervisor):
            follow.append(Command.of("supervisorctl", "status", timeout=10, sudo=True))
        elif supervisor is not None:
            findings.extend(self._read(supervisor))
        pm2 = by_argv.get(("pm2", "jlist"))
        if pm2 is not None:
            findings.extend(self._read(pm2))
        table = by_argv.get(PS_TABLE[:2])
        cat = by_argv.get(("cat", "--"))
        pid = _pid(cat)
        if pid is not None:
            follow.append(Command.of("ps", "-p", str(pid), "-o", "pid,stat,args", timeout=5))
        elif cat is not None and not cat.ok and "No such file" not in cat.stderr:
            findings.append(self.failed(cat))

        later: tuple[CommandResult, ...] = ()
        if follow:
            got = yield tuple(follow)
            assert isinstance(got, tuple)
            later = got
        for result in later:
            if result.command.argv[:2] in (("systemctl", "status"), ("supervisorctl", "status")):
                # ``systemctl status`` exits 3 for an inactive unit: its output is what we want.
                findings.extend(self._read(result))
        alive = next((r for r in later if r.command.argv[:2] == ("ps", "-p")), None)
        if table is not None or cat is not None:
            pieces = [r for r in (cat, alive) if r is not None and r.error is None]
            first = table if table is not None and table.error is None else None
            if table is not None and table.error is not None:
                findings.append(self.failed(table))
            elif table is not None and table.exit_status == 127:
                findings.append(self.failed(table))
                first = None
            if first is None and pieces:
                first, pieces = pieces[0], pieces[1:]
            if first is not None:
                findings.extend(self.read(joined(first, *pieces), ProcessTable, header=first.command.display))
        return findings

    def _read(self, result: CommandResult, header: str | None = None) -> list[Finding]:
        if result.error is None and result.exit_status == 127:
            return [self.failed(result)]
        return self.read(result, header=header)


def _needs_sudo(result: CommandResult) -> bool:
    text = result.stdout + result.stderr
    return result.error is None and ("Permission denied" in text or "Error: .ini file does not include" in text)


def _pid(cat: CommandResult | None) -> int | None:
    if cat is None or not cat.ok:
        return None
    text = cat.stdout.strip()
    return int(text) if re.fullmatch(r"\d{1,10}", text) and int(text) > 0 else None
