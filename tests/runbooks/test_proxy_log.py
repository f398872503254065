"""proxy_log on tails recorded from the fault lab (upstream_down) and on this machine as an unprivileged user."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.core.commands import Command, CommandResult
from bot.testing import Canned, drive
from runbooks.proxy_log import TAIL_SCRIPT, Clock, LogParams, ProxyLog, line_time
from tests.runbooks.record import asked, replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "proxy_log"
ERROR_LOG = "/tmp/rbcap/lab/logs/nginx/error.log"
FACTS = {"nginx_error_log": ERROR_LOG}


def test_upstream_down_tail_names_the_refused_gunicorn_socket() -> None:
    """The lab's nginx error log after `lab break upstream_down`: connect() to the unix socket refused."""
    findings = drive(ProxyLog, {}, replies(FIXTURES / "lab_upstream_down.json"), facts=FACTS)
    refused = [f for f in findings if f.kind == "nginx.upstream_refused"]
    assert refused and refused[0].data["upstream"] == "unix:/tmp/rbcap/lab/run/gunicorn.sock"
    assert (
        "connect() to unix:/tmp/rbcap/lab/run/gunicorn.sock failed (111: Connection refused)" in refused[0].evidence[0]
    )
    read = [f for f in findings if f.kind == "proxy_log.read"]
    assert read[0].data["path"] == ERROR_LOG


def test_lines_older_than_the_window_are_dropped_by_the_hosts_clock() -> None:
    """With a 5-minute window only the errors of the last 5 minutes (host time) are counted."""
    all_time = drive(ProxyLog, {"since_minutes": 600}, replies(FIXTURES / "lab_upstream_down.json"), facts=FACTS)
    recent = drive(ProxyLog, {"since_minutes": 5}, replies(FIXTURES / "lab_upstream_down.json"), facts=FACTS)
    count = {f.kind: f.data for f in all_time}
    count_recent = {f.kind: f.data for f in recent}
    assert count_recent["proxy_log.read"]["lines_in_window"] < count["proxy_log.read"]["lines_in_window"]
    assert count_recent["nginx.upstream_refused"]["count"] < count["nginx.upstream_refused"]["count"]


def test_the_tail_is_one_fixed_script_with_the_paths_as_arguments() -> None:
    """Paths (from facts and Params) reach the host only as positional arguments of a constant script."""
    path = "/var/log/x;$(id)`id`.log"
    commands, _ = asked(ProxyLog, {"paths": [path], "lines": 50}, {f"tail -n 50 {path} {ERROR_LOG}": ""}, FACTS)
    assert commands[0].argv == ("sh", "-c", TAIL_SCRIPT, "sh", "50", path, ERROR_LOG)
    assert not commands[0].sudo


def test_unreadable_log_is_retried_with_sudo_and_a_refusal_is_reported() -> None:
    """Recorded as `nobody`: /var/log/apache2 is root:adm 0750, so the log is retried with sudo -n."""
    apache = "/var/log/apache2/error.log"
    as_nobody = (FIXTURES / "tail_as_nobody.txt").read_text()
    refused = CommandResult(command=Command.of("x"), host="h", exit_status=None, error="sudo_not_allowed")
    canned: dict[str | tuple[str, ...], Canned] = {f"tail -n 2000 {apache} {ERROR_LOG}": as_nobody}
    canned[f"tail -n 2000 {apache}"] = refused
    commands, findings = asked(ProxyLog, {"paths": [apache]}, canned, FACTS)
    assert [c.sudo for c in commands] == [False, True]
    assert commands[1].argv[-1] == apache
    failed = [f for f in findings if f.kind == "runbook.command_failed"]
    assert failed and "sudo" in failed[0].summary
    assert any(f.kind == "proxy_log.read" and f.data["path"] == ERROR_LOG for f in findings)


def test_no_facts_means_the_distribution_defaults() -> None:
    """Without facts, the well-known nginx/Apache/HAProxy paths are tried; none there is an INFO finding."""
    commands, findings = asked(
        ProxyLog, {}, {"tail -n 2000 " + " ".join(ProxyLog.DEFAULTS): "1796016663 2026-11-30 05:31:03\n"}
    )
    assert commands[0].argv[5:] == ProxyLog.DEFAULTS
    assert [f.kind for f in findings] == ["proxy_log.none"]


@pytest.mark.parametrize(
    "bad", ["relative/error.log", "/var/log/x\nrm -rf /", "/var/log/\x00x", "$(id)", "`id`", "-n /etc/shadow"]
)
def test_params_reject_paths_that_are_not_plain_absolute_paths(bad: str) -> None:
    """Relative paths, control characters (newline, NUL) and option-looking values fail validation."""
    with pytest.raises(ValidationError):
        LogParams.model_validate({"paths": [bad]})


def test_params_bounds() -> None:
    with pytest.raises(ValidationError):
        LogParams.model_validate({"lines": 0})
    with pytest.raises(ValidationError):
        LogParams.model_validate({"since_minutes": "30; id"})
    with pytest.raises(ValidationError):
        LogParams.model_validate({"unknown": 1})


def test_invalid_fact_is_reported_not_used() -> None:
    """A fact with a newline is ignored with a finding; the defaults are used instead."""
    canned = {"tail -n 2000 " + " ".join(ProxyLog.DEFAULTS): "1796016663 2026-11-30 05:31:03\n"}
    commands, findings = asked(ProxyLog, {}, canned, {"nginx_error_log": "/x\n$(id)"})
    assert commands[0].argv[5:] == ProxyLog.DEFAULTS
    assert any(f.kind == "runbook.bad_fact" for f in findings)


def test_timestamps_of_each_log_format() -> None:
    """nginx and Apache stamp local time; access logs and RFC 3339 carry their zone."""
    clock = Clock.parse("1796016663 2026-11-30 05:31:03")
    assert clock is not None
    assert clock.age("2026/11/30 05:30:03 [error] 1#1: x") == 60
    assert clock.age("[Mon Nov 30 05:21:03.123456 2026] [proxy:error] [pid 1] AH00957: x") == 600
    assert clock.age('127.0.0.1 - - [30/Nov/2026:06:30:03 +0100] "GET / HTTP/1.1" 502 1') == 60
    assert clock.age("2026-11-30T05:31:02.5+00:00 host haproxy[1]: x") == 1
    assert clock.age("Nov 30 05:30:03 host haproxy[1]: x") == 60
    assert line_time("no timestamp here", 2026) is None
