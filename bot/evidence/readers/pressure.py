"""Pressure stall information: ``/proc/pressure/cpu`` (Linux ≥ 4.20 with PSI enabled).

Layout (``Documentation/accounting/psi.rst``)::

    some avg10=1.37 avg60=0.92 avg300=8.32 total=210695765
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0

``some avg60`` is the share of the last minute in which at least one runnable task waited for a CPU.
Unlike the load average it is not inflated by tasks blocked on disk, so a high value is CPU starvation
itself. The memory and io files share the layout; the reader names the resource from the
``### $ cat /proc/pressure/<resource>`` header and reads only CPU pressure as a cause (the line alone
does not say which resource it is about).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader

#: ``some avg60`` (percent) from which tasks wait for a CPU often enough to slow every request.
CPU_PRESSURE_HIGH = 40.0
_LINE = re.compile(
    r"^\s*(?P<kind>some|full) avg10=(?P<avg10>\d+\.\d+) avg60=(?P<avg60>\d+\.\d+) "
    r"avg300=(?P<avg300>\d+\.\d+)"
)


class PressureReader(Reader):
    """``/proc/pressure/cpu``: how much of the last minute tasks waited for a CPU."""

    name = "load.pressure"
    title = "pressure stall information (/proc/pressure/cpu)"
    header = r"/proc/pressure/(?:cpu|memory|io)\b"
    signals: ClassVar[dict[str, Signal]] = {"host.cpu_pressure_high": Signal(cause="cpu_starvation", weight=0.5)}

    def __init__(self) -> None:
        self._resource: str | None = None
        self._seen: dict[str, tuple[dict[str, Any], str]] = {}

    def start_block(self, header: str) -> None:
        found = re.search(r"/proc/pressure/(cpu|memory|io)\b", header)
        self._resource = found.group(1) if found else None

    def end_block(self) -> None:
        self._resource = None

    def feed(self, line: str) -> bool:
        found = _LINE.match(line)
        if found and self._resource is not None and found.group("kind") == "some":
            data: dict[str, Any] = {k: float(found.group(k)) for k in ("avg10", "avg60", "avg300")}
            data["resource"] = self._resource
            self._seen[self._resource] = (data, line)
        return self._resource is not None

    def findings(self) -> list[Finding]:
        out = []
        for resource, (data, line) in self._seen.items():
            high = resource == "cpu" and max(data["avg10"], data["avg60"]) >= CPU_PRESSURE_HIGH
            what = "waited for a CPU" if resource == "cpu" else f"stalled on {resource}"
            out.append(
                Finding(
                    kind="host.cpu_pressure_high" if high else f"host.{resource}_pressure",
                    severity=Severity.WARNING if high else Severity.INFO,
                    summary=f"tasks {what} {data['avg10']:.0f}% of the last 10 s and {data['avg60']:.0f}% of the "
                    "last minute (PSI some)",
                    evidence=(redact(quote_line(line)),),
                    data=data,
                    reader=self.name,
                )
            )
        return out


READERS = (PressureReader,)
