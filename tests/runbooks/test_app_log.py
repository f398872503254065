"""app_log: the app's log over the incident window, read by the app and database readers."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from bot.testing import drive
from runbooks.app_log import AppLog, host_now, stamp, within

from ._fixtures import LAB, fx, result

LOG = f"{LAB}/logs/gunicorn.log"
DATE = ("date", "+%Y-%m-%dT%H:%M:%S%z")
NOW = fx("app_log", "date.txt")


def test_disk_full_quotes_the_no_space_left_on_device_line() -> None:
    findings = drive(AppLog, None, {DATE: NOW, ("tail", "-n", "2000", "--", LOG): fx("app_log", "tail-disk-full.txt")},
                     facts={"app_log": LOG})
    kinds = {f.kind: f for f in findings}
    assert "OSError: [Errno 28] No space left on device" in kinds["disk.enospc"].evidence
    assert "gunicorn.request_error" in kinds
    assert kinds["app.python_exception"].data["exceptions"]


def test_app_exception_finds_the_traceback() -> None:
    findings = drive(AppLog, None, {DATE: NOW, ("tail", "-n", "2000", "--", LOG): fx("app_log",
                                                                                    "tail-app-exception.txt")},
                     facts={"app_log": LOG})
    exc = next(f for f in findings if f.kind == "app.python_exception")
    assert "ZeroDivisionError: division by zero" in exc.evidence


def test_lines_older_than_the_window_are_left_out() -> None:
    text = fx("app_log", "tail-app-exception.txt")
    later = host_now("2026-11-30T09:00:00+0000")
    kept, dated = within(text, later, 30)
    assert dated and kept == ""
    findings = drive(AppLog, {"since_minutes": 30}, {DATE: "2026-11-30T09:00:00+0000\n",
                                                      ("tail", "-n", "2000", "--", LOG): text},
                     facts={"app_log": LOG})
    assert [f.kind for f in findings] == ["app_log.nothing_found"]


def test_timestamps_in_common_layouts_are_read() -> None:
    now = host_now("2026-11-30T05:33:26+0000")
    assert now is not None
    for line in ("[2026-11-30 05:19:29 +0000] [29626] [ERROR] x", "2026-11-30 05:19:29,123 ERROR x",
                 "2026-11-30 05:19:29.123 UTC [1] FATAL:  x", "[30-Nov-2026 05:19:29] WARNING: [pool www] x",
                 "2026/11/30 05:19:29 [error] 1#1: x", "Mon Nov 30 05:19:29 2026 - x", "Nov 30 05:19:29 web-1 app: x"):
        assert stamp(line, now) == datetime.fromisoformat("2026-11-30T05:19:29+00:00"), line


def test_unreadable_log_is_retried_with_sudo_then_reported() -> None:
    denied = result(stderr=f"tail: cannot open '{LOG}' for reading: Permission denied\n", exit_status=1)
    findings = drive(AppLog, None, {DATE: NOW, ("tail", "-n", "2000", "--", LOG): denied}, facts={"app_log": LOG})
    assert [f.kind for f in findings] == ["runbook.command_failed"]


def test_params_and_facts_are_validated() -> None:
    for bad in ({"lines": "$(id)"}, {"since_minutes": 0}, {"lines": 10**9}, {"path": "/etc/shadow"}):
        with pytest.raises(ValidationError):
            drive(AppLog, bad, {})
    findings = drive(AppLog, None, {DATE: NOW}, facts={"app_log": "logs/x.log,/a\nb"})
    assert [f.kind for f in findings] == ["runbook.bad_fact", "runbook.bad_fact", "runbook.skipped"]
    assert [f.kind for f in drive(AppLog, None, {})] == ["runbook.skipped"]
