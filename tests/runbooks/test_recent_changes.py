"""recent_changes: unit restarts, process starts, files changed in app_dir, package changes, by the host's clock."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.evidence.readers.changes import PackageChanges, UnitChanges
from bot.testing import drive, read
from runbooks.recent_changes import RecentChanges

from ._fixtures import LAB, fx, result

DATE = ("date", "+%Y-%m-%dT%H:%M:%S")
PS = ("ps", "-eo", "pid,lstart,args")
PACKAGES = "grep install|upgrade|remove /var/log/dpkg.log | tail -n 50"
FIND = f"find {LAB} -xdev -maxdepth 3 -type f -mmin -120"


def _lab() -> dict[str | tuple[str, ...], object]:
    return {
        DATE: fx("recent_changes", "date.txt"),
        PS: fx("recent_changes", "ps-lstart.txt"),
        PACKAGES: fx("recent_changes", "dpkg-actions.txt"),
        FIND: fx("recent_changes", "find-app-dir.txt"),
    }


def test_the_lab_shows_what_started_and_changed_in_the_window() -> None:
    findings = drive(RecentChanges, None, _lab(), facts={"app_dir": LAB})  # type: ignore[arg-type]
    kinds: dict[str, list[object]] = {}
    for finding in findings:
        kinds.setdefault(finding.kind, []).append(finding)
    started = {f.data["program"]: f for f in kinds["changes.process_started"]}  # type: ignore[attr-defined]
    assert {"gunicorn", "nginx", "postgres"} <= set(started)
    assert started["gunicorn"].data["recent"] and "min ago" in started["gunicorn"].summary  # type: ignore[attr-defined]
    files = kinds["changes.files_modified"][0]
    assert files.data["count"] == 50 and files.data["code_or_config"] > 0  # type: ignore[attr-defined]
    packages = kinds["changes.packages"][0]
    assert packages.data["newest"].startswith("install sudo:amd64")  # type: ignore[attr-defined]


def test_units_are_shown_with_restart_counts_when_systemd_answers() -> None:
    show = "Id=gunicorn.service\nNRestarts=3\nActiveEnterTimestamp=Mon 2026-11-30 05:25:48 UTC\n"
    findings = drive(RecentChanges, None, {
        **_lab(),
        ("systemctl", "show", "-p", "Id,ActiveEnterTimestamp,NRestarts", "--", "gunicorn"): show,
    }, facts={"units": "gunicorn"})  # type: ignore[arg-type]
    unit = next(f for f in findings if f.kind == "changes.unit_restarted")
    assert unit.data["restarts"] == 3 and unit.data["recent"]


def test_no_systemd_is_not_a_finding() -> None:
    failed = result(stderr=fx("service_status", "systemctl-no-systemd.txt"), exit_status=1)
    findings = drive(RecentChanges, None, {
        **_lab(),
        ("systemctl", "show", "-p", "Id,ActiveEnterTimestamp,NRestarts", "--", "gunicorn"): failed,
    }, facts={"units": "gunicorn"})  # type: ignore[arg-type]
    assert not any(f.kind.startswith("changes.unit") or f.kind == "runbook.command_failed" for f in findings)


def test_apt_history_is_read_too() -> None:
    found = read("### $ tail -n 50 /var/log/apt/history.log\n" + fx("recent_changes", "apt-history.txt"),
                 [PackageChanges])
    assert found[0].data["newest"] == "install sudo"


def test_a_unit_block_alone_is_read_in_explain() -> None:
    text = "### $ systemctl show -p Id,ActiveEnterTimestamp,NRestarts -- nginx\nId=nginx.service\nNRestarts=0\n" \
           "ActiveEnterTimestamp=Mon 2026-11-30 05:25:48 UTC\n"
    assert [f.kind for f in read(text, [UnitChanges])] == ["changes.unit_started"]


def test_facts_and_params_are_validated_and_values_go_in_as_arguments() -> None:
    with pytest.raises(ValidationError):
        drive(RecentChanges, {"since_minutes": "1; reboot"}, {})
    findings = drive(RecentChanges, None, {DATE: "", PS: "", PACKAGES: ""},
                     facts={"units": "$(id)", "app_dir": "srv/app"})
    assert [f.kind for f in findings] == ["runbook.bad_fact", "runbook.bad_fact"]
    hostile = "/srv/`id`;$(reboot)"
    findings = drive(RecentChanges, None, {DATE: "", PS: "", PACKAGES: "",
                                           f"find {hostile} -xdev -maxdepth 3 -type f -mmin -120": ""},
                     facts={"app_dir": hostile})
    assert findings == []
