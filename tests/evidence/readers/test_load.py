"""load readers: load averages (uptime, top, /proc/loadavg), CPU counts, steal time, and the rule they feed."""

from __future__ import annotations

import subprocess

import pytest

from bot.diagnosis.rules import Context, load_versus_cores
from bot.evidence.readers.load import CpuCountReader, CpuStealReader, LoadAverageReader
from bot.testing import explain, read
from tests.evidence.readers._host_fixtures import fixture

LOAD_READERS = [LoadAverageReader, CpuCountReader, CpuStealReader]


@pytest.mark.parametrize("name", ["uptime-overloaded.txt", "top-b-overloaded.txt", "proc-loadavg-overloaded.txt"])
def test_real_overloaded_load_average_is_read_from_every_source(name: str) -> None:
    (finding,) = read(fixture("load", name), [LoadAverageReader])
    assert finding.kind == "host.load"
    assert (finding.data["load1"], finding.data["load5"], finding.data["load15"]) == (9.04, 2.89, 1.04)


def test_lscpu_cpu_count_is_read_but_not_numa_or_online_lists() -> None:
    (finding,) = read(fixture("load", "lscpu.txt"), [CpuCountReader])
    assert finding.kind == "host.cpu_count"
    assert finding.data["cores"] == 2


def test_bare_nproc_output_is_read_only_under_its_header() -> None:
    nproc = fixture("load", "nproc.txt")
    assert read(nproc, [CpuCountReader]) == []
    (finding,) = read(f"### $ nproc\n{nproc}", [CpuCountReader])
    assert finding.data["cores"] == 2


def test_a_header_stating_cores_gives_the_load_finding_its_core_count() -> None:
    text = "### uptime (2 cores)\n" + fixture("load", "uptime-overloaded.txt")
    findings = {f.kind: f for f in read(text, LOAD_READERS)}
    assert findings["host.load"].data["cores"] == 2
    assert findings["host.load"].severity.value == "warning"


def test_real_load_of_9_on_2_cores_with_a_504_ranks_cpu_starvation_first() -> None:
    text = fixture("load", "top-b-overloaded.txt") + "### $ lscpu\n" + fixture("load", "lscpu.txt")
    diagnosis = explain(text, 504)
    assert diagnosis.causes[0].id == "cpu_starvation"
    assert diagnosis.causes[0].confidence >= 0.6


def test_real_idle_host_is_not_cpu_starved() -> None:
    """Near miss: a load of 0.23 on 2 CPUs is healthy even with the CPU count known."""
    text = fixture("load", "uptime-idle.txt") + fixture("load", "lscpu.txt")
    diagnosis = explain(text, 504)
    assert all(c.id != "cpu_starvation" for c in diagnosis.causes if c.evidence)


def test_overloaded_load_without_a_core_count_is_only_information() -> None:
    """Without the CPU count a load of 9 may be fine (a 16-core host); the rule needs >= 32 then."""
    findings = read(fixture("load", "uptime-overloaded.txt"), LOAD_READERS)
    ctx = Context(findings, 504, {})
    assert list(load_versus_cores(ctx)) == []


def test_locale_comma_decimals_are_read() -> None:
    line = " 10:05:01 up 3 days,  2:10,  1 user,  load average: 0,05, 0,10, 0,15\n"
    (finding,) = read(line, [LoadAverageReader])
    assert (finding.data["load1"], finding.data["load5"], finding.data["load15"]) == (0.05, 0.10, 0.15)


def test_top_cpu_line_gives_steal_idle_and_iowait() -> None:
    (finding,) = read(fixture("load", "top-b-idle.txt"), [CpuStealReader])
    assert finding.kind == "host.cpu_steal"
    assert finding.data == {"steal": 0.0, "idle": 100.0, "iowait": 0.0, "user": 0.0, "system": 0.0}
    assert finding.severity.value == "ok"


def test_live_uptime_on_this_machine_is_understood() -> None:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
    (finding,) = read(out, [LoadAverageReader])
    assert finding.kind == "host.load"
    assert finding.data["load1"] >= 0
