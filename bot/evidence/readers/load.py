"""CPU load: ``uptime``/``top``/``w`` load averages, ``/proc/loadavg``, CPU counts and steal time.

Lines (shared/reference/error-messages.md §7.4; fixtures from real runs, tests/fixtures/load):

- ``load average: 9.04, 2.89, 1.04`` (procps ``uptime``, ``w``, the first line of ``top -b``); the
  decimal separator follows the locale (``load average: 0,05, 0,10, 0,15``); BSD and macOS print
  ``load averages: 1.49 1.62 1.68``.
- ``/proc/loadavg``: ``9.04 2.89 1.04 13/264 19952``.
- ``nproc`` prints a bare number, readable only under a header naming it (``### $ nproc``);
  ``lscpu`` has ``CPU(s):  2``; a header may state the count (``### uptime (4 cores)``).
- ``top``'s CPU line: ``%Cpu(s):  0.0 us, … 0.0 st`` (procps-ng) or ``Cpu(s):  0.3%us, … 0.0%st``
  (procps 3.2); ``st`` is the time the hypervisor gave this guest's CPUs to someone else.

The findings are measurements (``host.load``, ``host.cpu_count``, ``host.cpu_steal``) with no signal
of their own: the ``load_versus_cores`` rule compares them.
"""

from __future__ import annotations

import re
from typing import Any

from bot.core.models import Finding, Severity, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader

#: Load per core from which the load finding is a warning (the rule scores it).
OVERLOAD_RATIO = 2.0
STEAL_WARNING = 20.0

_NUM = r"(\d+[.,]\d+)"
_LOAD = re.compile(rf"load averages?:\s*{_NUM},?\s+{_NUM},?\s+{_NUM}")
_PROC_LOADAVG = re.compile(r"^\s*(\d+\.\d+) (\d+\.\d+) (\d+\.\d+) \d+/\d+ \d+\s*$")
_HEADER_CORES = re.compile(r"(\d+)\s*(?:v?cpus?|cores?|processors?)\b", re.I)
_LSCPU = re.compile(r"^\s*CPU\(s\):\s+(\d+)\s*$")
_CPU_LINE = re.compile(r"%?Cpu\(s\):(?P<rest>.*)$")
_CPU_FIELD = re.compile(r"(\d+[.,]\d+)\s*%?\s*(us|sy|ni|id|wa|hi|si|st)\b")


def _f(text: str) -> float:
    return float(text.replace(",", "."))


class LoadAverageReader(Reader):
    """Load averages from ``uptime``, ``w``, ``top`` and ``/proc/loadavg``; the worst one is kept."""

    name = "load.average"
    title = "load average (uptime, top, /proc/loadavg)"
    triggers = (
        r"load averages?:\s*\d+[.,]\d+",
        r"(?m:^[ \t]*\d+\.\d+ \d+\.\d+ \d+\.\d+ \d+/\d+ \d+[ \t\r]*$)",
    )
    header = r"\b(?:uptime|loadavg|load average|top)\b"

    def __init__(self) -> None:
        self._block_cores: int | None = None
        self._worst: tuple[float, dict[str, Any], str] | None = None
        self._samples = 0

    def start_block(self, header: str) -> None:
        found = _HEADER_CORES.search(header)
        self._block_cores = int(found.group(1)) if found else None

    def end_block(self) -> None:
        self._block_cores = None

    def feed(self, line: str) -> bool:
        match = _LOAD.search(line) or _PROC_LOADAVG.match(line)
        if match is None:
            return False
        load1, load5, load15 = (_f(g) for g in match.groups())
        data: dict[str, Any] = {"load1": load1, "load5": load5, "load15": load15}
        if self._block_cores:
            data["cores"] = self._block_cores
        self._samples += 1
        worst = max(load1, load5)
        if self._worst is None or worst > self._worst[0]:
            self._worst = (worst, data, line)
        return False

    def findings(self) -> list[Finding]:
        if self._worst is None:
            return []
        _, data, line = self._worst
        data = {**data, "samples": self._samples}
        text = f"load average {data['load1']:.2f}, {data['load5']:.2f}, {data['load15']:.2f} (1/5/15 min)"
        cores = data.get("cores")
        if cores:
            ratio = max(data["load1"], data["load5"]) / cores
            severity = Severity.WARNING if ratio >= OVERLOAD_RATIO else Severity.OK
            text += f" on {cores} CPUs ({ratio:.1f}× the cores)"
        else:
            severity = Severity.INFO
        return [
            Finding(
                kind="host.load",
                severity=severity,
                summary=text,
                evidence=(redact(quote_line(line)),),
                data=data,
                reader=self.name,
            )
        ]


class CpuCountReader(Reader):
    """The number of CPUs: ``lscpu``'s ``CPU(s):``, ``nproc`` under its header, or a header's count."""

    name = "load.cpu_count"
    title = "CPU count (nproc, lscpu)"
    triggers = (r"(?m:^[ \t]*CPU\(s\):[ \t]+\d+[ \t\r]*$)",)
    header = r"\b(?:nproc|lscpu|getconf\s+_NPROCESSORS_ONLN|cpuinfo|uptime|cores?|v?cpus)\b"

    def __init__(self) -> None:
        self._in_nproc = False
        self._cores: int | None = None
        self._line = ""

    def start_block(self, header: str) -> None:
        self._in_nproc = bool(re.search(r"\b(?:nproc|_NPROCESSORS_ONLN|grep\s+-c\s+\S*processor)", header))
        stated = _HEADER_CORES.search(header)
        if stated:
            self._set(int(stated.group(1)), f"### {header}")

    def end_block(self) -> None:
        self._in_nproc = False

    def _set(self, cores: int, line: str) -> None:
        if cores > 0:
            self._cores, self._line = cores, line

    def feed(self, line: str) -> bool:
        lscpu = _LSCPU.match(line)
        if lscpu:
            self._set(int(lscpu.group(1)), line)
        elif self._in_nproc and re.fullmatch(r"\s*\d{1,5}\s*", line):
            self._set(int(line), line)
            self._in_nproc = False
        return False

    def findings(self) -> list[Finding]:
        if self._cores is None:
            return []
        return [
            Finding(
                kind="host.cpu_count",
                severity=Severity.INFO,
                summary=f"{self._cores} CPUs",
                evidence=(redact(quote_line(self._line)),),
                data={"cores": self._cores},
                reader=self.name,
            )
        ]


class CpuStealReader(Reader):
    """``top``'s ``%Cpu(s):`` line: steal time (and idle / I/O wait for context)."""

    name = "load.cpu_steal"
    title = "CPU steal time (top)"
    triggers = (r"%?Cpu\(s\):[^\n]*\bst\b",)

    def __init__(self) -> None:
        self._worst: tuple[float, dict[str, Any], str] | None = None

    def feed(self, line: str) -> bool:
        match = _CPU_LINE.search(line)
        if match is None:
            return False
        fields = {name: _f(value) for value, name in _CPU_FIELD.findall(match.group("rest"))}
        if "st" not in fields:
            return False
        data: dict[str, Any] = {"steal": fields["st"]}
        for short, long in (("id", "idle"), ("wa", "iowait"), ("us", "user"), ("sy", "system")):
            if short in fields:
                data[long] = fields[short]
        if self._worst is None or data["steal"] > self._worst[0]:
            self._worst = (data["steal"], data, line)
        return False

    def findings(self) -> list[Finding]:
        if self._worst is None:
            return []
        steal, data, line = self._worst
        severity = Severity.WARNING if steal >= STEAL_WARNING else Severity.OK
        summary = f"{steal:.1f}% CPU steal time"
        if "idle" in data:
            summary += f", {data['idle']:.1f}% idle"
        if "iowait" in data:
            summary += f", {data['iowait']:.1f}% I/O wait"
        return [
            Finding(
                kind="host.cpu_steal",
                severity=severity,
                summary=summary,
                evidence=(redact(quote_line(line)),),
                data=data,
                reader=self.name,
            )
        ]


READERS = (LoadAverageReader, CpuCountReader, CpuStealReader)
