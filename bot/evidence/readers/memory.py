"""Memory: ``free`` tables and the kernel OOM killer's lines.

``free`` (procps) is read by its column names, in all three header generations: procps ≤ 3.3.9
(``buffers cached`` and a ``-/+ buffers/cache:`` row), procps-ng 3.3.10–3.3.16 and 3.3.17/4.x
(``buff/cache available``, one more leading space), with ``-w`` (``buffers cache``), ``-b/-k/-m/-g``
and ``-h`` units (``Gi``, ``Mi``, ``B``; older releases print ``G``, ``M``). Layouts:
shared/reference/error-messages.md §7.3.

Kernel OOM lines, every era (§6.1): ``Out of memory: Kill process N (x) score N or sacrifice child``
(≤ 4.x), ``Killed process N (x) total-vm:…`` (all; RHEL 6 prints ``Killed process N, UID N, (x)``),
``oom-kill:constraint=…,task=x,pid=N,uid=N`` (≥ 4.19), ``Memory cgroup out of memory: …``,
``x invoked oom-killer: …`` and ``oom_reaper: reaped process N (x)``, behind any prefix (``dmesg``
``[ 123.456]``, ``dmesg -T`` ``[Tue Mar 24 03:17:42 2020]``, ``journalctl -k`` / syslog
``Mar 24 03:17:42 host kernel:``). The process named in ``invoked oom-killer`` is the one that
asked for memory, not the victim; the victim comes from the kill lines. systemd-oomd's
``Killed … due to memory pressure`` is read too. systemd's own unit lines about OOM kills
(``Failed with result 'oom-kill'``) belong to the systemd reader.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader, Tally

#: ``available`` below this share of ``total`` is low memory.
LOW_AVAILABLE_PCT = 5.0
#: ...when swap is absent or at least this full.
SWAP_FULL_PCT = 75.0

_FREE_HEADER = r"total\s+used\s+free\s+shared\s+(?:buff/cache|buffers)"
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_CELL = re.compile(r"^(\d+(?:[.,]\d+)?)([KMGTPkmgtp]?)i?[Bb]?$")


def _amount(cell: str) -> float | None:
    """A ``free`` cell as a number in the table's own unit (``-h`` cells become bytes)."""
    match = _CELL.match(cell)
    if match is None:
        return None
    return float(match.group(1).replace(",", ".")) * _UNITS[match.group(2).lower()]


class FreeReader(Reader):
    """``free``: memory available and swap in use."""

    name = "memory.free"
    title = "free (memory and swap)"
    triggers = (_FREE_HEADER,)
    signals: ClassVar[dict[str, Signal]] = {"memory.low": Signal(cause="oom_kill", weight=0.3)}

    def __init__(self) -> None:
        self._columns: list[str] | None = None
        self._lines: list[str] = []
        self._rows: dict[str, dict[str, float]] = {}
        self._worst: tuple[float, dict[str, Any], tuple[str, ...]] | None = None

    def end_block(self) -> None:
        self._finish()

    def feed(self, line: str) -> bool:
        if re.search(_FREE_HEADER, line):
            self._finish()
            self._columns = line.split()
            self._lines = [quote_line(line)]
            return True
        if self._columns is None:
            return False
        match = re.match(r"\s*(Mem|Swap|Total|Low|High|-/\+ buffers/cache):\s*(.*)$", line)
        if match is None:
            self._finish()
            return False
        label, cells = match.group(1), match.group(2).split()
        columns = ["used", "free"] if label.startswith("-/+") else self._columns
        values = {col: v for col, cell in zip(columns, cells, strict=False) if (v := _amount(cell)) is not None}
        self._rows[label] = values
        self._lines.append(quote_line(line))
        return True

    def _finish(self) -> None:
        if self._columns is None:
            return
        mem = self._rows.get("Mem", {})
        total = mem.get("total")
        if total:
            available = mem.get("available")
            basis = "available"
            if available is None:
                cache = self._rows.get("-/+ buffers/cache")
                if cache and "free" in cache:
                    available, basis = cache["free"], "free (-/+ buffers/cache)"
                else:
                    available = mem.get("free", 0.0) + mem.get("buffers", 0.0) + mem.get("cached", 0.0)
                    basis = "free+buffers+cached"
            swap = self._rows.get("Swap", {})
            swap_total = swap.get("total", 0.0)
            swap_used_pct = round(100.0 * swap.get("used", 0.0) / swap_total, 1) if swap_total else None
            avail_pct = round(100.0 * available / total, 1)
            data: dict[str, Any] = {
                "available_pct": avail_pct,
                "available_basis": basis,
                "swap_used_pct": swap_used_pct,
                "swap": bool(swap_total),
            }
            evidence = tuple(redact(x) for x in self._lines)
            if self._worst is None or avail_pct < self._worst[0]:
                self._worst = (avail_pct, data, evidence)
        self._columns = None
        self._rows = {}
        self._lines = []

    def findings(self) -> list[Finding]:
        self._finish()
        if self._worst is None:
            return []
        avail_pct, data, evidence = self._worst
        swap_pct = data["swap_used_pct"]
        swap_text = "no swap" if swap_pct is None else f"swap {swap_pct:.0f}% used"
        low = avail_pct < LOW_AVAILABLE_PCT and (swap_pct is None or swap_pct >= SWAP_FULL_PCT)
        if low:
            return [
                Finding(
                    kind="memory.low",
                    severity=Severity.WARNING,
                    summary=f"memory nearly exhausted: {avail_pct:.1f}% available, {swap_text} "
                    "(the OOM killer is next)",
                    evidence=evidence,
                    data=data,
                    reader=self.name,
                )
            ]
        return [
            Finding(
                kind="memory.ok",
                severity=Severity.OK,
                summary=f"{avail_pct:.0f}% of memory available, {swap_text}",
                evidence=evidence,
                data=data,
                reader=self.name,
            )
        ]


_VICTIM = re.compile(
    r"(?:Kill(?:ed)? process|reaped process) (?P<pid>\d+),?(?: UID \d+,)? \((?P<name>[^)]*)\)"
    r"|oom-kill:[^\n]*?,task=(?P<task>[^,]+),pid=(?P<tpid>\d+)"
)
_MEMCG = re.compile(r"task_memcg=(?P<memcg>[^,\s]+)|Task in (?P<old>\S+) killed as a result of limit")
_INVOKER = re.compile(r"(?P<name>\S+) invoked oom-killer")
_OOMD = re.compile(r"systemd-oomd\[\d+\]: Killed (?P<cgroup>\S+) due to")

_OOM_TRIGGERS = (
    r"(?:Out of memory|Memory cgroup out of memory)(?: \(oom_kill_allocating_task\))?: Kill(?:ed)? process \d+",
    r"Killed process \d+,? (?:UID \d+, )?\(",
    r"oom-kill:constraint=",
    # A kill line wrapped by the person pasting it ("Out of memory: Killed pr" / "ocess 11438 (gunicorn)").
    r"(?:Out of memory|Memory cgroup out of memory): Kill",
    r"invoked oom-killer",
    r"oom_reaper: reaped process \d+",
    r"killed as a result of limit of",
    r"systemd-oomd\[\d+\]: Killed \S+ due to",
)


class OomKillerReader(Reader):
    """Kernel (and systemd-oomd) OOM kills: which process died, how often, in which cgroup."""

    name = "memory.oom_killer"
    title = "kernel OOM killer (dmesg, journalctl -k, syslog)"
    triggers = _OOM_TRIGGERS
    signals: ClassVar[dict[str, Signal]] = {"memory.oom_kill": Signal(cause="oom_kill", weight=0.9)}

    def __init__(self) -> None:
        self.tally = Tally()
        self._victims: dict[str, dict[str, Any]] = {}
        self._events = 0
        self._invokers: list[str] = []
        self._memcg: str | None = None

    def feed(self, line: str) -> bool:
        self._events += 1
        victim = _VICTIM.search(line)
        self.tally.add("memory.oom_kill", line, "kill" if victim or _OOMD.search(line) else "context")
        if victim:
            name = victim.group("name") or victim.group("task") or "?"
            pid = victim.group("pid") or victim.group("tpid")
            entry = self._victims.setdefault(name, {"pids": [], "name": name})
            if pid and int(pid) not in entry["pids"] and len(entry["pids"]) < 16:
                entry["pids"].append(int(pid))
        oomd = _OOMD.search(line)
        if oomd:
            cgroup = oomd.group("cgroup")
            self._victims.setdefault(cgroup, {"pids": [], "name": cgroup})
        invoker = _INVOKER.search(line)
        if invoker and invoker.group("name") not in self._invokers and len(self._invokers) < 8:
            self._invokers.append(invoker.group("name"))
        memcg = _MEMCG.search(line)
        if memcg:
            self._memcg = memcg.group("memcg") or memcg.group("old")
        return False

    def findings(self) -> list[Finding]:
        items = self.tally.items()
        if not items:
            return []
        by_key = {key: lines for _, key, _, lines, _ in items}
        evidence = by_key.get("kill", ()) + by_key.get("context", ())[:1]
        victims = list(self._victims.values())
        data: dict[str, Any] = {"count": self._events}
        if victims:
            first = victims[0]
            data["victim"] = first["name"]
            if first["pids"]:
                data["pid"] = first["pids"][0]
            data["victims"] = [v["name"] for v in victims[:16]]
            kills = sum(max(1, len(v["pids"])) for v in victims)
            names = ", ".join(
                f"{v['name']} (pid {', '.join(str(p) for p in v['pids'][:3])})" if v["pids"] else v["name"]
                for v in victims[:4]
            )
            summary = f"the OOM killer killed {names}" + (f" — {kills} kills in all" if kills > 1 else "")
        else:
            summary = "the kernel OOM killer ran (victim not in the excerpt)"
        if self._invokers:
            data["invoked_by"] = self._invokers
        if self._memcg:
            data["cgroup"] = self._memcg
            summary += f" in cgroup {self._memcg}"
        return [
            Finding(
                kind="memory.oom_kill",
                severity=Severity.CRITICAL,
                summary=summary,
                evidence=evidence,
                data=data,
                reader=self.name,
            )
        ]


READERS = (FreeReader, OomKillerReader)
