"""restart_unit: refuses a unit the ``units`` fact does not list, says so on a host without systemd, and
otherwise restarts through sudo and reports the unit's state (tests/fixtures/runbooks/restart_unit/SOURCES.md:
real runs on this machine, where systemd is installed but not running; public systemctl captures for
the rest)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.runbook.registry import load
from bot.testing import drive
from runbooks.restart_unit import PROBE, RestartUnit, RestartUnitParams, allowed_units, unit_name
from tests.runbooks._datastores import replay

from ._fixtures import fx, result

FACTS = {"units": "nginx.service,gunicorn.service"}
GUNICORN = RestartUnitParams(unit="gunicorn")
RESTART = ("systemctl", "restart", "--", "gunicorn.service")
IS_ACTIVE = ("systemctl", "is-active", "--", "gunicorn.service")


def _status(unit: str) -> tuple[str, ...]:
    return ("systemctl", "status", "--no-pager", "--full", "-n", "20", "--", unit)


def test_a_unit_not_in_the_units_fact_is_refused_naming_the_fact_and_nothing_runs() -> None:
    """drive() fails on any command it was not given: the refusal ran nothing at all."""
    [finding] = drive(RestartUnit, {"unit": "postgresql"}, {}, facts=FACTS)
    assert finding.kind == "action.refused"
    assert finding.summary == (
        "did not restart postgresql.service: it is not in this host's `units` fact "
        "(nginx.service, gunicorn.service); add it there to allow restarting it"
    )
    assert finding.data["fact"] == "units"


def test_a_host_without_a_units_fact_restarts_nothing() -> None:
    [finding] = drive(RestartUnit, {"unit": "gunicorn.service"}, {}, facts={"app_pid_file": "/run/app.pid"})
    assert finding.kind == "action.refused" and "(the host has none)" in finding.summary


def test_units_are_compared_as_systemctl_names_them() -> None:
    """`gunicorn` is `gunicorn.service` on both sides; a unit of another type keeps it; invalid fact entries
    are left out as service_status leaves them out."""
    assert unit_name("gunicorn") == "gunicorn.service"
    assert unit_name("app@2") == "app@2.service"
    assert unit_name("app.v2") == "app.v2.service"
    assert unit_name("nginx.socket") == "nginx.socket"
    assert allowed_units({"units": " gunicorn , nginx.service,$(id),gunicorn.service,-x"}) == [
        "gunicorn.service",
        "nginx.service",
    ]
    found, asked = replay(RestartUnit, "restart_unit", "no-systemd", facts={"units": "gunicorn"}, params=GUNICORN)
    assert [c.argv for c in asked] == [PROBE]
    assert [f.kind for f in found] == ["action.unsupported"]


def test_without_systemd_it_says_so_and_runs_nothing_else() -> None:
    """The real run here: `test -d /run/systemd/system` exits 1, and that is the only command."""
    found, asked = replay(RestartUnit, "restart_unit", "no-systemd", facts=FACTS, params=GUNICORN)
    assert [c.argv for c in asked] == [PROBE]
    [finding] = found
    assert finding.kind == "action.unsupported" and finding.severity.value == "warning"
    assert finding.summary == (
        "did not restart gunicorn.service on capture: systemd is not the init system there "
        "(/run/systemd/system is absent)"
    )


def test_a_systemd_directory_without_a_running_systemd_is_recognised_from_systemctls_words() -> None:
    """In a namespace with /run/systemd/system but no systemd, the sudo restart answers `Failed to connect
    to bus`: said so, nothing else asked."""
    found, asked = replay(RestartUnit, "restart_unit", "systemd-not-running", facts=FACTS, params=GUNICORN)
    assert [(c.argv, c.sudo) for c in asked] == [(PROBE, False), (RESTART, True)]
    [finding] = found
    assert finding.kind == "action.unsupported"
    assert finding.summary.endswith("(Failed to connect to bus: No such file or directory)")


def test_without_sudo_allowed_the_restart_is_tried_once_as_the_login_user() -> None:
    """sudo_not_allowed (never sent), then the same argv without sudo: what a root login needs."""
    found, asked = replay(RestartUnit, "restart_unit", "systemd-not-running-no-sudo", facts=FACTS, params=GUNICORN)
    assert [(c.argv, c.sudo) for c in asked] == [(PROBE, False), (RESTART, True), (RESTART, False)]
    assert [f.kind for f in found] == ["action.unsupported"]


def test_systemctls_not_booted_message_is_read_as_no_systemd() -> None:
    """The real message of systemctl here (systemd installed, not PID 1) after a `test -d` that passed."""
    said = fx("restart_unit", "systemctl-restart-not-booted.txt")
    [finding] = drive(RestartUnit, GUNICORN, {PROBE: "", RESTART: result(stderr=said, exit_status=1)},
                      facts=FACTS, host="app-1")  # fmt: skip
    assert finding.kind == "action.unsupported"
    assert "System has not been booted with systemd as init system (PID 1)" in finding.summary


def test_a_restart_sudo_refuses_is_reported_and_not_checked_further() -> None:
    said = fx("restart_unit", "sudo-refused.txt")
    [finding] = drive(RestartUnit, GUNICORN, {PROBE: "", RESTART: result(stderr=said, exit_status=1)},
                      facts=FACTS, host="app-1")  # fmt: skip
    assert finding.kind == "action.unit_restart_failed" and finding.severity.value == "critical"
    assert finding.summary == (
        "restart of gunicorn.service on app-1 failed: sudo refused it (sudo: a password is required): "
        "install deploy/sudoers/incident-bot on the host"
    )
    assert finding.evidence == ("sudo: a password is required",)


def test_a_restart_that_leaves_the_unit_active_is_one_ok_finding() -> None:
    """systemctl restart prints nothing when the job succeeds; is-active prints the state word."""
    findings = drive(RestartUnit, GUNICORN, {PROBE: "", RESTART: "", IS_ACTIVE: "active\n"}, facts=FACTS, host="app-1")
    [finding] = findings
    assert finding.kind == "action.unit_restarted" and finding.severity.value == "ok"
    assert finding.summary == "restarted gunicorn.service on app-1: active again"
    assert finding.data == {"unit": "gunicorn.service", "state": "active", "sudo": True}


def test_a_failed_restart_quotes_systemctl_and_reads_the_units_status() -> None:
    """The job failed (the public mailcow capture: systemctl's line and the unit's journal): the outcome
    quotes systemctl, and the status readers name the failure as service_status would."""
    lines = fx("../systemd", "mailcow-php70-journal.txt").splitlines()
    job = next(line for line in lines if "Job for" in line).split("# ", 1)[1]
    journal = "\n".join(line for line in lines if "Job for" not in line) + "\n"
    unit = "php7.0-fpm.service"
    facts = {"units": "nginx,php7.0-fpm"}
    findings = drive(RestartUnit, {"unit": unit}, {
        PROBE: "",
        ("systemctl", "restart", "--", unit): result(stderr=job + "\n", exit_status=1),
        ("systemctl", "is-active", "--", unit): result("failed\n", exit_status=3),
        _status(unit): result(journal, exit_status=3),
    }, facts=facts, host="app-1")  # fmt: skip
    outcome = findings[0]
    assert outcome.kind == "action.unit_restart_failed"
    assert outcome.summary == (
        "restart of php7.0-fpm.service on app-1 failed: "
        "Job for php7.0-fpm.service failed because the control process exited with error code."
    )
    assert outcome.data["state"] == "failed" and outcome.data["exit_status"] == 1
    kinds = {f.kind for f in findings[1:]}
    assert "systemd.unit_failed" in kinds, kinds
    assert all(f.runbook == "restart_unit" and f.host == "app-1" for f in findings)


def test_a_unit_that_is_down_right_after_a_clean_restart_is_a_failure_with_its_status() -> None:
    """restart exits 0 (the job started) but the unit is failed when asked: not reported as restarted."""
    unit = "jasmin-web.service"
    findings = drive(RestartUnit, {"unit": "jasmin-web"}, {
        PROBE: "",
        ("systemctl", "restart", "--", unit): "",
        ("systemctl", "is-active", "--", unit): result("failed\n", exit_status=3),
        _status(unit): result(fx("../systemd", "jasmin-web-failed.txt"), exit_status=3),
    }, facts={"units": "jasmin-web.service"}, host="web-1")  # fmt: skip
    assert findings[0].summary == "restart of jasmin-web.service on web-1 failed: it is failed right after the restart"
    failed = [f for f in findings if f.kind == "systemd.unit_failed"]
    assert failed and failed[0].data["unit"] == "jasmin-web.service"


def test_a_restart_that_times_out_still_reports_the_state_the_unit_is_in() -> None:
    findings = drive(RestartUnit, GUNICORN, {
        PROBE: "",
        RESTART: result(exit_status=None, error="command_timeout"),
        IS_ACTIVE: result("activating\n", exit_status=3),
        _status("gunicorn.service"): result("", exit_status=3),
    }, facts=FACTS, host="app-1")  # fmt: skip
    assert findings[0].kind == "action.unit_restart_failed"
    assert findings[0].summary == (
        "restart of gunicorn.service on app-1 failed: systemctl did not finish within 200 s; the unit is activating"
    )
    assert "systemd.unit_starting" in {f.kind for f in findings}


def test_a_probe_that_cannot_run_is_a_command_failure_and_nothing_restarts() -> None:
    [finding] = drive(RestartUnit, GUNICORN, {PROBE: result(exit_status=None, error="connection_lost")}, facts=FACTS)
    assert finding.kind == "runbook.command_failed"


@pytest.mark.parametrize("bad", ["$(id)", "a;b", "-H", "a b", "gunicorn*", "x\ny", "", "../etc"])
def test_unit_names_are_validated_before_anything_runs(bad: str) -> None:
    with pytest.raises(ValidationError):
        drive(RestartUnit, {"unit": bad}, {}, facts={"units": bad})


def test_an_unknown_parameter_is_refused() -> None:
    with pytest.raises(ValidationError):
        RestartUnitParams.model_validate({"unit": "gunicorn", "force": "yes"})


def test_only_a_named_request_selects_a_mutating_runbook() -> None:
    """A diagnosis (no runbook named) never runs restart_unit or clear_cache; naming one does."""
    catalog = load()
    assert catalog.runbooks["restart_unit"].mutating and catalog.runbooks["clear_cache"].mutating
    every = {rb.name for rb in catalog.select(None, ())}
    assert every and not every & {"restart_unit", "clear_cache"}
    assert not {rb.name for rb in catalog.select(502, ("app",))} & {"restart_unit", "clear_cache"}
    assert [rb.name for rb in catalog.select(None, (), ("restart_unit",))] == ["restart_unit"]
