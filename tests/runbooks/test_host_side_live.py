"""The host-side runbooks over real SSH against the fault lab (which has no systemd: the process table
and the app's pid file stand in for ``systemctl``).

One lab serves the module (a fresh directory under /tmp, as tests/lab does) and always goes ``down``.
Each test breaks one scenario, makes a real request through nginx so the app logs it, runs the runbooks
through ``run_diagnose`` with the lab's own ``incident-bot.yaml``, and repairs. The app log keeps what
earlier tests provoked (inside app_log's 30-minute window), so disk_full runs after app_exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bot.lab import Lab, probe
from tests.labfixture import findings_of, run_runbooks, running_lab

pytestmark = [pytest.mark.usefixtures("audit_in_tmp")]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-hs-") as the_lab:
        yield the_lab


def test_healthy_lab_every_host_side_runbook_reports_without_failures(lab: Lab) -> None:
    names = ("service_status", "sockets", "disk", "memory", "load", "recent_changes", "app_log")
    found = run_runbooks(lab.paths.config, names)
    assert {f.runbook for f in found.findings} == set(names), [f.summary for f in found.findings]
    bad = [f.summary for f in found.findings if f.kind in ("runbook.crashed", "runbook.bad_fact")]
    assert not bad
    alive = findings_of(found, "process.alive", "service_status")
    assert alive and alive[0].data["pid"] == lab.state.pids["gunicorn"]


def test_app_exception_finds_the_traceback(lab: Lab) -> None:
    lab.break_("app_exception")
    try:
        assert probe(lab.url)[0] == 500
        found = run_runbooks(lab.paths.config, ("app_log",), status=500)
    finally:
        lab.repair()
    exc = findings_of(found, "app.python_exception", "app_log")
    assert exc and "ZeroDivisionError: division by zero" in exc[0].evidence, [f.summary for f in found.findings]
    assert found.causes[0].id == "app_exception"


@pytest.mark.skipif(os.geteuid() != 0, reason="disk_full needs root (tmpfs)")
def test_disk_full_names_the_data_dir_and_quotes_enospc(lab: Lab) -> None:
    lab.break_("disk_full")
    try:
        assert probe(lab.url)[0] == 500
        found = run_runbooks(lab.paths.config, ("disk", "app_log"), status=500)
    finally:
        lab.repair()
    full = findings_of(found, "disk.full", "disk")
    assert [f.data["mount"] for f in full] == [str(lab.paths.data)], [f.summary for f in found.findings]
    enospc = findings_of(found, "disk.enospc", "app_log")
    assert enospc and any("No space left on device" in line for line in enospc[0].evidence)
    assert found.causes[0].id == "disk_full"


def test_upstream_down_says_gunicorn_is_not_running(lab: Lab) -> None:
    pid = lab.state.pids["gunicorn"]
    lab.break_("upstream_down")
    try:
        assert probe(lab.url)[0] == 502
        found = run_runbooks(lab.paths.config, ("service_status",), status=502)
    finally:
        lab.repair()
    down = findings_of(found, "process.not_running", "service_status")
    assert down, [f.summary for f in found.findings]
    assert down[0].data["program"] == "gunicorn"
    # gunicorn left its pid file behind (the pid is gone, or a zombie for a moment), or removed it.
    pid_file = lab.paths.pid_file("gunicorn")
    assert down[0].summary.startswith(
        (
            f"gunicorn (pid {pid} from {pid_file}) is not running",
            f"gunicorn is not running: its pid file {pid_file} is missing",
        )
    )
    assert found.causes[0].id == "upstream_down"
