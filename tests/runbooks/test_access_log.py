"""access_log on the lab's access log recorded after `lab break upstream_down`."""

from __future__ import annotations

from pathlib import Path

from bot.testing import drive
from runbooks.access_log import AccessLog
from runbooks.proxy_log import TAIL_SCRIPT
from tests.runbooks.record import asked, replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "access_log"
ACCESS_LOG = "/tmp/rbcap/lab/logs/nginx/access.log"


def test_upstream_down_access_log_shows_the_502_rate() -> None:
    """The 502s nginx answered while gunicorn was down are counted with their rate."""
    findings = drive(
        AccessLog, {}, replies(FIXTURES / "lab_upstream_down.json"), facts={"nginx_access_log": ACCESS_LOG}
    )
    errors = [f for f in findings if f.kind == "http.access_5xx"]
    assert errors and errors[0].data["by_status"] == {502: errors[0].data["count"]}
    assert 0 < errors[0].data["rate"] <= 1


def test_access_log_window_uses_the_zone_in_each_line() -> None:
    """A one-minute window at the recorded host clock keeps fewer requests than a long one."""
    recorded = replies(FIXTURES / "lab_upstream_down.json")
    facts = {"nginx_access_log": ACCESS_LOG}
    wide = {f.kind: f.data for f in drive(AccessLog, {"since_minutes": 600}, recorded, facts=facts)}
    narrow = {f.kind: f.data for f in drive(AccessLog, {"since_minutes": 1}, recorded, facts=facts)}
    assert narrow["access_log.read"]["lines_in_window"] < wide["access_log.read"]["lines_in_window"]


def test_defaults_and_argv() -> None:
    """With no facts the distribution defaults are tailed, as arguments of the fixed script."""
    canned = {"tail -n 2000 " + " ".join(AccessLog.DEFAULTS): "1796016663 2026-11-30 05:31:03\n"}
    commands, findings = asked(AccessLog, {}, canned)
    assert commands[0].argv == ("sh", "-c", TAIL_SCRIPT, "sh", "2000", *AccessLog.DEFAULTS)
    assert [f.kind for f in findings] == ["access_log.none"]
