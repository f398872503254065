"""Restart a systemd unit: the first runbook that changes a host (``mutating``: it runs only after a
second authorised person approves it in the incident's thread).

What it does, in order, and nothing else:

1. refuses, running nothing, a unit that is not in the host's ``units`` fact (the comma-separated list
   ``service_status`` reads: ``units: "nginx.service,gunicorn.service"``). That fact is the operator's
   list of what the bot may touch; a name without a unit type means ``.service``, as for systemctl;
2. ``test -d /run/systemd/system`` (a constant command: systemd's own test for "booted with systemd");
   on a host without it, says so and runs nothing else;
3. ``systemctl restart -- UNIT`` through ``sudo -n`` (a restart is a privileged systemd job). When the
   host's configuration does not allow sudo the command is never sent (``sudo_not_allowed``) and it is
   tried once as the login user, which works for root logins and for users polkit lets restart units;
   a refusal by sudo itself (``sudo: a password is required``: the sudoers rule is missing) is reported,
   not retried. systemctl waits for the restart job, so a unit that fails to start says so here;
4. ``systemctl is-active -- UNIT`` and, when the unit is not active, ``systemctl status --no-pager --full
   -n 20 -- UNIT``, read by the same systemd readers as ``service_status`` (its state, result, main pid
   and last journal lines become ``systemd.*`` findings beside the outcome).

Findings: ``action.refused`` (not in the fact: names the fact to edit), ``action.unsupported`` (no
systemd: nothing was restarted), ``action.unit_restarted`` (ok: "restarted gunicorn.service on app-1:
active again"), ``action.unit_restart_failed`` (critical, quoting systemctl's error or the state the unit
is in after the restart), ``runbook.command_failed`` (a command that could not run at all).

Sudo: ``deploy/sudoers/incident-bot`` allows ``systemctl restart -- UNIT`` (any unit name; narrow it to
your units there) and nothing else of systemctl.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from bot.evidence.readers.systemd import SystemctlIsActiveReader, SystemctlStatusReader, SystemdJournalReader
from bot.runbook.api import ROOT, Command, CommandResult, Finding, Reader, Runbook, Severity, Shape, Steps, Unit
from runbooks.service_status import valid_unit

#: The file systemd's ``sd_booted()`` tests: present exactly when systemd is the init system.
SYSTEMD_DIR = "/run/systemd/system"
PROBE = ("test", "-d", SYSTEMD_DIR)
#: systemctl waits for the restart job: a stop and a start, each up to systemd's default 90 s in the worst case.
RESTART_SECONDS = 200.0
STATUS_LINES = "20"
#: Unit types systemctl knows; a name without one of them is a ``.service`` (``gunicorn`` → ``gunicorn.service``).
UNIT_TYPES = frozenset(
    {"service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope"}
)
#: systemctl's words when systemd is installed but is not the init system (a container).
_NOT_BOOTED = re.compile(r"System has not been booted with systemd|Failed to connect to bus")
_SHOWN = 3


def unit_name(name: str) -> str:
    """The unit systemctl means by ``name``: ``name`` itself when it ends in a unit type, else ``name.service``."""
    stem, dot, kind = name.rpartition(".")
    return name if dot and stem and kind in UNIT_TYPES else f"{name}.service"


def allowed_units(facts: Mapping[str, str]) -> list[str]:
    """The units of the ``units`` fact, parsed as ``service_status`` does (comma-separated, invalid names
    left out), each spelled as systemctl means it (:func:`unit_name`)."""
    names: list[str] = []
    for item in (facts.get("units") or "").split(","):
        name = item.strip()
        if name and valid_unit(name) and unit_name(name) not in names:
            names.append(unit_name(name))
    return names


class RestartUnitParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The unit to restart (``gunicorn`` or ``gunicorn.service``); it must be in the host's ``units`` fact.
    unit: str

    @field_validator("unit")
    @classmethod
    def _unit(cls, unit: str) -> str:
        if not valid_unit(unit):
            raise ValueError(f"invalid unit name {unit[:60]!r}: letters, digits and @._:- only, not starting with -")
        return unit


class RestartUnit(Runbook):
    name = "restart_unit"
    title = "Restart a systemd unit"
    mutating = True
    Params = RestartUnitParams
    readers: ClassVar[tuple[type[Reader], ...]] = (
        SystemctlIsActiveReader,
        SystemctlStatusReader,
        SystemdJournalReader,
    )
    shapes = (
        Shape(*PROBE),
        Shape("systemctl", "restart", "--", Unit(), sudo=ROOT),
        Shape("systemctl", "is-active", "--", Unit()),
        Shape("systemctl", "status", "--no-pager", "--full", "-n", STATUS_LINES, "--", Unit()),
    )

    def steps(self) -> Steps:
        params = self.params
        assert isinstance(params, RestartUnitParams)
        unit = unit_name(params.unit)
        allowed = allowed_units(self.facts)
        if unit not in allowed:
            return [self._refused(unit, allowed)]

        probe = yield Command.of(*PROBE, timeout=10, label=f"is systemd the init system (test -d {SYSTEMD_DIR})")
        assert isinstance(probe, CommandResult)
        if probe.error is not None or probe.exit_status not in (0, 1):
            return [self.failed(probe)]
        if probe.exit_status == 1:
            return [self._unsupported(unit, probe.host, f"{SYSTEMD_DIR} is absent")]

        restart = yield self._restart(unit, sudo=True)
        assert isinstance(restart, CommandResult)
        if restart.error == "sudo_not_allowed":
            restart = yield self._restart(unit, sudo=False)
            assert isinstance(restart, CommandResult)
        said = (restart.stderr + restart.stdout).strip()
        if restart.error is not None and restart.error != "command_timeout":
            return [self._failed(unit, restart, self.failed(restart).summary, said)]
        if _NOT_BOOTED.search(said):
            return [self._unsupported(unit, restart.host, said.splitlines()[0])]
        if restart.command.sudo and restart.exit_status == 1 and said.startswith("sudo:"):
            why = f"sudo refused it ({said.splitlines()[0]}): install deploy/sudoers/incident-bot on the host"
            return [self._failed(unit, restart, why, said)]

        active = yield Command.of("systemctl", "is-active", "--", unit, timeout=10)
        assert isinstance(active, CommandResult)
        state = active.stdout.strip() if active.error is None else ""
        if restart.ok and state == "active":
            return [
                Finding(
                    kind="action.unit_restarted",
                    severity=Severity.OK,
                    summary=f"restarted {unit} on {restart.host}: active again",
                    evidence=(f"systemctl is-active -- {unit}: {state}",),
                    data={"unit": unit, "state": state, "sudo": restart.command.sudo},
                    host=restart.host,
                    runbook=self.name,
                )
            ]
        status = yield Command.of(
            "systemctl", "status", "--no-pager", "--full", "-n", STATUS_LINES, "--", unit, timeout=10
        )
        assert isinstance(status, CommandResult)
        if restart.error == "command_timeout":
            why = f"systemctl did not finish within {RESTART_SECONDS:g} s; the unit is {state or 'in an unknown state'}"
        elif not restart.ok:
            why = said.splitlines()[0] if said else f"systemctl exited {restart.exit_status}"
        else:
            why = f"it is {state or 'in an unknown state'} right after the restart"
        # ``systemctl status`` exits 3 for a unit that is not running: its output is what is read.
        return [
            self._failed(unit, restart, why, said, state=state),
            *self.read(active, SystemctlIsActiveReader, header=active.command.display),
            *self.read(status),
        ]

    def _restart(self, unit: str, *, sudo: bool) -> Command:
        return Command.of("systemctl", "restart", "--", unit, timeout=RESTART_SECONDS, sudo=sudo)

    def _refused(self, unit: str, allowed: list[str]) -> Finding:
        listed = ", ".join(allowed) if allowed else "the host has none"
        return Finding(
            kind="action.refused",
            severity=Severity.WARNING,
            summary=(
                f"did not restart {unit}: it is not in this host's `units` fact ({listed}); "
                "add it there to allow restarting it"
            ),
            data={"unit": unit, "fact": "units", "allowed": allowed},
            runbook=self.name,
        )

    def _unsupported(self, unit: str, host: str, why: str) -> Finding:
        return Finding(
            kind="action.unsupported",
            severity=Severity.WARNING,
            summary=f"did not restart {unit} on {host}: systemd is not the init system there ({why})",
            data={"unit": unit, "why": why},
            host=host,
            runbook=self.name,
        )

    def _failed(self, unit: str, restart: CommandResult, why: str, said: str, *, state: str = "") -> Finding:
        return Finding(
            kind="action.unit_restart_failed",
            severity=Severity.CRITICAL,
            summary=f"restart of {unit} on {restart.host} failed: {why}",
            evidence=tuple(line for line in said.splitlines()[:_SHOWN] if line.strip()),
            data={
                "unit": unit,
                "state": state,
                "exit_status": restart.exit_status,
                "error": restart.error,
                "sudo": restart.command.sudo,
            },
            host=restart.host,
            runbook=self.name,
        )
