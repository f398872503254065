"""Load: is the host CPU-starved? (``uptime``, ``nproc``, ``top``, ``/proc/pressure/cpu``)

What it checks, and why: a load average far above the number of cores, CPU steal time on a busy
hypervisor, or tasks waiting for a CPU most of the time (PSI) make every request slow: 504s while
nothing is broken (cpu_starvation). ``top -b -n 2 -d 0.5`` is read from its SECOND sample only: the
first one averages since boot (or shows 100 % idle) and says nothing about now.

Needs: nothing. Sudo: none.
"""

from __future__ import annotations

from typing import ClassVar

from bot.evidence.readers.load import CpuCountReader, CpuStealReader, LoadAverageReader
from bot.evidence.readers.pressure import PressureReader
from bot.runbook.api import Command, CommandResult, Finding, Reader, Runbook, Shape, Steps


def second_sample(top: str) -> str:
    """The summary lines (up to the first blank line) of ``top``'s second sample; "" with fewer."""
    starts = [i for i, line in enumerate(top.splitlines()) if line.startswith("top - ")]
    if len(starts) < 2:
        return ""
    lines = top.splitlines()[starts[1] :]
    summary: list[str] = []
    for line in lines:
        if not line.strip():
            break
        summary.append(line)
    return "\n".join(summary) + "\n"


class Load(Runbook):
    name = "load"
    title = "Load versus cores, CPU steal, CPU pressure"
    readers: ClassVar[tuple[type[Reader], ...]] = (LoadAverageReader, CpuCountReader, CpuStealReader, PressureReader)
    shapes = (
        Shape("uptime"),
        Shape("nproc"),
        Shape("top", "-b", "-n", "2", "-d", "0.5"),
        Shape("cat", "/proc/pressure/cpu"),
    )

    def steps(self) -> Steps:
        replies = yield (
            Command.of("uptime", timeout=10),
            Command.of("nproc", timeout=10),
            Command.of("top", "-b", "-n", "2", "-d", "0.5", timeout=15),
            Command.of("cat", "/proc/pressure/cpu", timeout=5),
        )
        assert isinstance(replies, tuple)
        uptime, nproc, top, pressure = replies
        findings: list[Finding] = []
        cores = nproc.stdout.strip() if nproc.ok and nproc.stdout.strip().isdigit() else None
        if not nproc.ok:
            findings.append(self.failed(nproc))
        else:
            findings.extend(self.read(nproc, CpuCountReader, header="nproc"))
        if uptime.ok:
            header = f"uptime ({cores} cores)" if cores else "uptime"
            findings.extend(self.read(uptime, LoadAverageReader, header=header))
        else:
            findings.append(self.failed(uptime))
        sample = second_sample(top.stdout) if top.ok else ""
        if sample:
            findings.extend(self.read(_with(top, sample), CpuStealReader, header="top -b -n 2 -d 0.5 (second sample)"))
        elif not top.ok:
            findings.append(self.failed(top))
        if pressure.ok:  # absent before Linux 4.20 or with psi=0: nothing to say
            findings.extend(self.read(pressure, PressureReader))
        return findings


def _with(result: CommandResult, stdout: str) -> CommandResult:
    return result.model_copy(update={"stdout": stdout, "stderr": ""})
