"""systemd: ``systemctl status`` blocks, ``is-active``/``is-failed``/``--failed`` output, unit journal lines.

Layouts (shared/reference/error-messages.md §6.2–6.3; ``src/systemctl/systemctl-show.c``,
``src/core/service.c``); every fixture comes from a public bug report or Q&A thread
(tests/fixtures/systemd/SOURCES.md):

- ``● php7.4-fpm.service - The PHP 7.4 FastCGI Process Manager`` (``×`` for failed units since
  systemd 248, ``*`` without UTF-8), then ``Loaded: not-found (Reason: …)``,
  ``Active: failed (Result: oom-kill) since …``, ``Active: activating (auto-restart) (Result:
  exit-code)``, ``Main PID: 1234 (code=killed, signal=KILL)`` / ``(code=exited, status=1/FAILURE)``.
- ``systemctl is-active a b`` prints one state per unit, in the order of the header's units; it is
  read only under a header naming the command (``### $ systemctl is-active gunicorn``).
- ``systemctl --failed``: ``● x.service loaded failed failed Description``.
- Journal lines: ``x.service: Main process exited, code=killed, status=9/KILL``, ``x.service: Failed
  with result 'oom-kill'.``, ``x.service: A process of this unit has been killed by the OOM killer.``,
  ``x.service: Start request repeated too quickly.``, ``x.service: Scheduled restart job, restart
  counter is at 5.``, ``Failed to start The PHP 7.4 FastCGI Process Manager.``,
  ``Job for x.service failed because …``, ``Unit x.service could not be found.``

A unit that is down confirms a proxy's refused connections (upstream_down); an OOM-killed unit is
oom_kill; a unit systemd keeps restarting (or gave up on) is upstream_crashed; a main process killed
by SIGKILL with no OOM line is only an oom_kill candidate (it may have been a manual ``kill -9``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally

_UNIT = r"[\w@.:\\-]+\.(?:service|socket|scope|mount|timer|target|path|slice|swap|device|automount)"
_UNIT_RX = re.compile(rf"({_UNIT})")
_STATUS_HEAD = re.compile(rf"^\s*(?:[●×○↻*]\s+)?(?P<unit>{_UNIT})(?:\s+-\s+(?P<desc>.*))?$")
_LOADED = re.compile(r"^\s*Loaded:\s+(?P<state>[\w-]+)")
_ACTIVE = re.compile(
    r"^\s*Active:\s+(?P<state>[\w-]+)(?:\s+\((?P<sub>[\w-]+)\))?(?:\s+\(Result:\s+(?P<result>[\w-]+)\))?"
)
_MAIN_PID = re.compile(
    r"^\s*Main PID:\s+(?P<pid>\d+)(?:\s+\((?:code=(?P<code>\w+),\s+(?:status=(?P<status>[\w/]+)"
    r"|signal=(?P<signal>\w+))|(?P<comm>[^)]*))\))?"
)

SIGNALS: dict[str, Signal] = {
    "systemd.unit_failed": Signal(cause="upstream_down", weight=0.6),
    "systemd.unit_inactive": Signal(cause="upstream_down", weight=0.6),
    "systemd.unit_not_found": Signal(cause="upstream_down", weight=0.35),
    "systemd.unit_starting": Signal(cause="upstream_down", weight=0.3),
    "systemd.unit_oom": Signal(cause="oom_kill", weight=0.85),
    "systemd.unit_crashloop": Signal(cause="upstream_crashed", weight=0.6),
    "systemd.unit_killed": Signal(cause="oom_kill", weight=0.35),
}

_SUMMARIES = {
    "systemd.unit_failed": "unit {unit} failed{why}",
    "systemd.unit_inactive": "unit {unit} is not running (inactive){why}",
    "systemd.unit_not_found": "unit {unit} does not exist (not installed, or a different name)",
    "systemd.unit_starting": "unit {unit} is still starting (activating){why}",
    "systemd.unit_oom": "unit {unit} was killed by the OOM killer{why}",
    "systemd.unit_crashloop": "unit {unit} keeps crashing: systemd restarts it{why}",
    "systemd.unit_killed": "main process of {unit} was killed by SIGKILL (OOM killer or kill -9){why}",
    "systemd.unit_active": "unit {unit} is active{why}",
}
_SEVERITY = {
    "systemd.unit_active": Severity.OK,
    "systemd.unit_starting": Severity.WARNING,
    "systemd.unit_not_found": Severity.WARNING,
    "systemd.unit_killed": Severity.WARNING,
}


def _finding(
    kind: str, unit: str, count: int, evidence: tuple[str, ...], data: dict[str, Any], *, reader: str
) -> Finding:
    why = f" ({data['why']})" if data.get("why") else ""
    return Finding(
        kind=kind,
        severity=_SEVERITY.get(kind, Severity.CRITICAL),
        summary=_SUMMARIES[kind].format(unit=unit, why=why),
        evidence=evidence,
        data={**data, "unit": unit, "count": count},
        reader=reader,
    )


@dataclass
class _Unit:
    name: str
    lines: list[str] = field(default_factory=list)
    loaded: str | None = None
    state: str | None = None
    sub: str | None = None
    result: str | None = None
    main: dict[str, str] = field(default_factory=dict)

    def classify(self) -> tuple[str, dict[str, Any]] | None:
        data: dict[str, Any] = {
            k: v
            for k, v in (
                ("state", self.state),
                ("substate", self.sub),
                ("result", self.result),
                ("loaded", self.loaded),
            )
            if v
        }
        data.update({f"main_{k}": v for k, v in self.main.items()})
        killed = self.main.get("signal") == "KILL" or self.main.get("status", "").startswith("9/")
        if self.loaded == "not-found":
            return "systemd.unit_not_found", data
        if self.result == "oom-kill":
            return "systemd.unit_oom", {**data, "why": "Result: oom-kill"}
        if self.result == "start-limit-hit" or self.sub == "auto-restart":
            why = "start limit hit, systemd gave up" if self.result == "start-limit-hit" else "auto-restart"
            return "systemd.unit_crashloop", {**data, "why": why}
        if self.state == "failed":
            why = f"Result: {self.result}" if self.result else ""
            if killed:
                why += ", main process killed by SIGKILL"
            return "systemd.unit_failed", {**data, "why": why.strip(", ")}
        if self.state in ("inactive", "deactivating"):
            return "systemd.unit_inactive", {**data, "why": f"Result: {self.result}" if self.result else ""}
        if self.state == "activating":
            return "systemd.unit_starting", {**data, "why": self.sub or ""}
        if self.state in ("active", "reloading"):
            return "systemd.unit_active", {**data, "why": self.sub or ""}
        return None


class SystemctlStatusReader(Reader):
    """``systemctl status`` blocks and ``systemctl --failed`` rows: each unit's state."""

    name = "systemd.status"
    title = "systemctl status"
    triggers = (
        r"(?m:^[ \t]*(?:[●×○↻*][ \t]+)?[\w@.:\\-]+\.(?:service|socket|scope|mount|timer|target) - )",
        r"(?m:^[ \t]*Active: (?:active|inactive|failed|activating|deactivating|reloading|maintenance)\b)",
        r"(?m:^[ \t]*Loaded: (?:not-found|masked|bad-setting|error)\b)",
        r"(?m:^[ \t]*[●×○↻*][ \t]+[\w@.:\\-]+\.(?:service|socket)[ \t\r]*$)",
        r"\.service[ \t]+(?:loaded|not-found)[ \t]+(?:failed|inactive)[ \t]+(?:failed|dead)\b",
    )
    signals: ClassVar[dict[str, Signal]] = {
        k: SIGNALS[k]
        for k in (
            "systemd.unit_failed",
            "systemd.unit_inactive",
            "systemd.unit_not_found",
            "systemd.unit_starting",
            "systemd.unit_oom",
            "systemd.unit_crashloop",
        )
    }

    def __init__(self) -> None:
        self._unit: _Unit | None = None
        self._results: dict[tuple[str, str], tuple[int, tuple[str, ...], dict[str, Any]]] = {}

    def end_block(self) -> None:
        self._close()

    def feed(self, line: str) -> bool:
        listed = re.search(
            rf"(?P<unit>{_UNIT})\s+(?P<load>loaded|not-found)\s+(?P<active>failed|inactive)\s+(?P<sub>failed|dead)\b",
            line,
        )
        if listed:
            self._close()
            unit = _Unit(
                listed.group("unit"),
                [quote_line(line)],
                loaded=listed.group("load"),
                state=listed.group("active"),
                sub=listed.group("sub"),
            )
            self._unit = unit
            self._close()
            return False
        head = _STATUS_HEAD.match(line)
        if head and not line.lstrip().startswith(("Loaded:", "Active:")):
            self._close()
            self._unit = _Unit(head.group("unit"), [quote_line(line)])
            return True
        if self._unit is None:
            self._unit = _Unit("?")
        unit = self._unit
        if not line.strip():
            self._close()
            return False
        loaded, active, main = _LOADED.match(line), _ACTIVE.match(line), _MAIN_PID.match(line)
        if loaded:
            unit.loaded = loaded.group("state")
        elif active:
            unit.state, unit.sub, unit.result = active.group("state"), active.group("sub"), active.group("result")
        elif main:
            unit.main = {k: v for k, v in main.groupdict().items() if v and k != "comm"}
        elif not re.match(r"^\s*[\w ]+:\s|^\s+[│├└─|`]", line):
            self._close()
            return False
        if (loaded or active or main) and len(unit.lines) < 5:
            unit.lines.append(quote_line(line))
        return True

    def _close(self) -> None:
        unit, self._unit = self._unit, None
        if unit is None:
            return
        verdict = unit.classify()
        if verdict is None:
            return
        kind, data = verdict
        key = (kind, unit.name)
        count, _, _ = self._results.get(key, (0, (), {}))
        self._results[key] = (count + 1, tuple(redact(x) for x in unit.lines), data)

    def findings(self) -> list[Finding]:
        self._close()
        return [
            _finding(kind, unit, count, evidence, data, reader=self.name)
            for (kind, unit), (count, evidence, data) in self._results.items()
        ]


_STATE_KIND = {
    "failed": "systemd.unit_failed",
    "inactive": "systemd.unit_inactive",
    "activating": "systemd.unit_starting",
    "deactivating": "systemd.unit_inactive",
    "unknown": "systemd.unit_not_found",
    "active": "systemd.unit_active",
    "reloading": "systemd.unit_active",
}


class SystemctlIsActiveReader(Reader):
    """``systemctl is-active/is-failed UNIT…``: one state word per unit, under a header naming them."""

    name = "systemd.is_active"
    title = "systemctl is-active / is-failed"
    header = r"systemctl\s+(?:[-\w]+\s+)*is-(?:active|failed)\b"
    signals: ClassVar[dict[str, Signal]] = {
        k: SIGNALS[k]
        for k in ("systemd.unit_failed", "systemd.unit_inactive", "systemd.unit_not_found", "systemd.unit_starting")
    }

    def __init__(self) -> None:
        self._units: list[str] = []
        self._header = ""
        self.tally = Tally()

    def start_block(self, header: str) -> None:
        self._header = header
        tail = re.split(r"is-(?:active|failed)\b", header, maxsplit=1)[-1]
        self._units = [u if _UNIT_RX.fullmatch(u) else f"{u}.service" for u in tail.split() if not u.startswith("-")]

    def end_block(self) -> None:
        self._units = []

    def feed(self, line: str) -> bool:
        state = line.strip()
        kind = _STATE_KIND.get(state)
        if kind is None:
            return False
        unit = self._units.pop(0) if self._units else "?"
        self.tally.add(kind, f"### {self._header}", unit, state=state)
        self.tally.add(kind, line, unit)
        return False

    def findings(self) -> list[Finding]:
        return [
            _finding(
                kind,
                key,
                max(1, count // 2),
                evidence,
                {**data, "why": f"is-active: {data['state']}"},
                reader=self.name,
            )
            for kind, key, count, evidence, data in self.tally.items()
        ]


def _j(kind: str, trigger: str, unless: str | None = None) -> LinePattern:
    return LinePattern(f"systemd.{kind}", trigger, "", Severity.CRITICAL, key="unit", unless=unless)


class SystemdJournalReader(PatternReader):
    """Lines systemd writes to the journal about a unit's failures, restarts and OOM kills."""

    name = "systemd.journal"
    title = "systemd journal (unit failures, restarts, OOM kills)"
    patterns = (
        _j("unit_oom", r"A process of this unit has been killed by the OOM killer|Failed with result 'oom-kill'"),
        _j(
            "unit_crashloop",
            r"Start request repeated too quickly|Failed with result 'start-limit-hit'"
            r"|Scheduled restart job, restart counter is at \d+",
        ),
        _j("unit_killed", r"Main process exited, code=killed, status=9/KILL"),
        _j("unit_not_found", r"Unit \S+ (?:could not be found|not found)"),
        _j(
            "unit_failed",
            r"Main process exited, code=(?:exited|killed|dumped), status=(?:[1-9]\d*)/"
            r"|Failed with result '[\w-]+'|Failed to start \S|Job for \S+ failed\b",
            unless=r"status=(?:0|143)/|status=15/TERM",
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        k: SIGNALS[k]
        for k in (
            "systemd.unit_oom",
            "systemd.unit_crashloop",
            "systemd.unit_killed",
            "systemd.unit_not_found",
            "systemd.unit_failed",
        )
    }

    def __init__(self) -> None:
        super().__init__()
        self._restarts: dict[str, int] = {}

    def on_match(self, pattern: LinePattern, line: str, data: dict[str, Any]) -> None:
        if "restarts" in data:
            unit = str(data.get("unit", ""))
            self._restarts[unit] = max(self._restarts.get(unit, 0), data["restarts"])

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        unit = _UNIT_RX.search(line)
        started = re.search(r"Failed to start (.+?)\.?\s*$", line)
        if unit:
            data["unit"] = unit.group(1)
        elif started:
            data["unit"] = started.group(1)
        counter = re.search(r"restart counter is at (\d+)", line)
        if counter:
            data["restarts"] = int(counter.group(1))
        result = re.search(r"Failed with result '([\w-]+)'", line)
        if result:
            data["result"] = result.group(1)
        exited = re.search(r"code=(\w+), status=([\w/]+)", line)
        if exited:
            data["main_code"], data["main_status"] = exited.group(1), exited.group(2)
        return data

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for kind, key, count, evidence, data in self.tally.items():
            why = []
            if data.get("result"):
                why.append(f"Result: {data['result']}")
            if data.get("main_status"):
                why.append(f"code={data.get('main_code')}, status={data['main_status']}")
            extra: dict[str, Any] = {}
            if kind == "systemd.unit_crashloop" and key in self._restarts:
                extra["restarts"] = self._restarts[key]
                why.append(f"restart counter at {extra['restarts']}")
            if count > 1:
                why.append(f"{count} journal lines")
            out.append(
                _finding(kind, key or "?", count, evidence, {**data, **extra, "why": ", ".join(why)}, reader=self.name)
            )
        return out


READERS = (SystemctlStatusReader, SystemctlIsActiveReader, SystemdJournalReader)
