"""load: uptime against nproc, top's SECOND sample for steal/idle, /proc/pressure/cpu."""

from __future__ import annotations

from bot.evidence.readers.pressure import PressureReader
from bot.testing import drive, read
from runbooks.load import Load, second_sample

from ._fixtures import fx, result

TOP = ("top", "-b", "-n", "2", "-d", "0.5")


def _replies(**over: object) -> dict[str | tuple[str, ...], object]:
    replies: dict[str | tuple[str, ...], object] = {
        ("uptime",): fx("load", "uptime.txt"),
        ("nproc",): fx("load", "nproc.txt"),
        TOP: fx("load", "top-b-n2.txt"),
        ("cat", "/proc/pressure/cpu"): fx("load", "pressure-cpu.txt"),
    }
    keys = {"top": TOP, "psi": ("cat", "/proc/pressure/cpu")}
    replies.update({keys[name]: value for name, value in over.items()})
    return replies


def test_load_is_compared_with_the_cores_and_steal_comes_from_the_second_sample() -> None:
    findings = drive(Load, None, _replies())  # type: ignore[arg-type]
    kinds = {f.kind: f for f in findings}
    assert kinds["host.cpu_count"].data["cores"] == 2
    assert kinds["host.load"].data["cores"] == 2
    second = second_sample(fx("load", "top-b-n2.txt"))
    assert kinds["host.cpu_steal"].evidence[0] in second
    first = fx("load", "top-b-n2.txt").split("\n\n", 1)[0]
    assert kinds["host.cpu_steal"].evidence[0] not in first or first.count("%Cpu") == 0
    assert kinds["host.cpu_pressure"].data["resource"] == "cpu"


def test_only_one_top_sample_means_no_steal_reading() -> None:
    one = fx("load", "top-b-n2.txt").split("\ntop - ", 1)[0]
    findings = drive(Load, None, _replies(top=one))  # type: ignore[arg-type]
    assert "host.cpu_steal" not in {f.kind for f in findings}


def test_no_psi_file_is_silently_skipped() -> None:
    missing = result(stderr="cat: /proc/pressure/cpu: No such file or directory\n", exit_status=1)
    findings = drive(Load, None, _replies(psi=missing))  # type: ignore[arg-type]
    assert {f.kind for f in findings} == {"host.cpu_count", "host.load", "host.cpu_steal"}


def test_high_cpu_pressure_is_cpu_starvation_and_memory_pressure_is_not() -> None:
    line = fx("load", "pressure-cpu.txt").splitlines()[0]
    high = line.split(" avg10=")[0] + " avg10=73.10 avg60=64.52 avg300=20.00 total=1"
    assert {f.kind for f in read(f"### $ cat /proc/pressure/cpu\n{high}\n", [PressureReader])} == {
        "host.cpu_pressure_high"}
    assert {f.kind for f in read(f"### $ cat /proc/pressure/memory\n{high}\n", [PressureReader])} == {
        "host.memory_pressure"}
    assert read(high + "\n", [PressureReader]) == []
