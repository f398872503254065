"""disk: df -hP/-iP and the data_dir's own filesystem; the lab's full 2 MB tmpfs is disk.full."""

from __future__ import annotations

from bot.testing import drive
from runbooks.disk import Disk

from ._fixtures import LAB, fx, result

DATA = f"{LAB}/data"


def _replies(state: str) -> dict[str | tuple[str, ...], object]:
    return {
        ("df", "-hP"): fx("disk", f"df-hP-{state}.txt"),
        ("df", "-iP"): fx("disk", f"df-iP-{state}.txt"),
        ("df", "-P", "--", DATA): fx("disk", f"df-P-data-dir-{state}.txt"),
        ("df", "-iP", "--", DATA): fx("disk", "df-iP-data-dir.txt"),
    }


def test_the_full_data_dir_tmpfs_is_one_disk_full_finding() -> None:
    findings = drive(Disk, None, _replies("disk-full"), facts={"data_dir": DATA})  # type: ignore[arg-type]
    full = [f for f in findings if f.kind == "disk.full"]
    assert len(full) == 1, findings
    assert full[0].data["mount"] == DATA and full[0].data["use_pct"] == 100
    assert any(DATA in line and "100%" in line for line in full[0].evidence)


def test_a_healthy_host_is_disk_ok() -> None:
    findings = drive(Disk, None, _replies("healthy"), facts={"data_dir": DATA})  # type: ignore[arg-type]
    assert [f.kind for f in findings] == ["disk.ok"]


def test_without_data_dir_only_the_tables_run_and_a_failure_is_a_finding() -> None:
    findings = drive(Disk, None, {
        ("df", "-hP"): fx("disk", "df-hP-healthy.txt"),
        ("df", "-iP"): result(error="command_timeout", exit_status=None),
    })
    assert {f.kind for f in findings} == {"disk.ok", "runbook.command_failed"}


def test_an_invalid_data_dir_fact_never_reaches_the_host() -> None:
    for bad in ("data", "/x\n/y", "/x\x00", "-P"):
        findings = drive(Disk, None, {("df", "-hP"): "", ("df", "-iP"): ""}, facts={"data_dir": bad})
        assert "runbook.bad_fact" in {f.kind for f in findings}
    hostile = "/srv/$(id);`id`"
    findings = drive(Disk, None, {("df", "-hP"): "", ("df", "-iP"): "", ("df", "-P", "--", hostile): "",
                                  ("df", "-iP", "--", hostile): ""}, facts={"data_dir": hostile})
    assert "runbook.bad_fact" not in {f.kind for f in findings}
