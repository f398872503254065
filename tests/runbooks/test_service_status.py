"""service_status: systemd when it is the init system, supervisor/pm2 when installed, else the process table
and the app's pid file (real outputs from the fault lab, which runs with no systemd)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.evidence.readers.processes import Pm2List, ProcessTable, SupervisorStatus, program_of
from bot.testing import drive, read
from runbooks.service_status import PS_TABLE, ServiceStatus

from ._fixtures import LAB, fx, result

PROBE = "probe: init system, supervisorctl, pm2"
PID_FILE = f"{LAB}/run/gunicorn.pid"
FACTS = {"app_pid_file": PID_FILE}


def test_healthy_lab_reports_gunicorn_alive_from_its_pid_file() -> None:
    findings = drive(ServiceStatus, None, {
        PROBE: "",
        PS_TABLE: fx("service_status", "ps-healthy.txt"),
        ("cat", "--", PID_FILE): fx("service_status", "cat-pid-healthy.txt"),
        ("ps", "-p", "20168", "-o", "pid,stat,args"): fx("service_status", "ps-p-healthy.txt"),
    }, facts=FACTS)
    kinds = {f.kind: f for f in findings}
    assert "process.not_running" not in kinds
    assert kinds["process.alive"].summary.startswith("gunicorn (pid 20168 from")
    running = kinds["process.running"].data["programs"]
    assert running["gunicorn"]["pids"] == [20168] and running["gunicorn"]["children"] == 2
    assert {"nginx", "postgres"} <= set(running)


def test_upstream_down_names_gunicorn_not_running_with_the_stale_pid() -> None:
    """The lab's upstream_down: gunicorn is gone, its pid file still says 20168, ps -p finds nothing."""
    findings = drive(ServiceStatus, None, {
        PROBE: "",
        PS_TABLE: fx("service_status", "ps-upstream-down.txt"),
        ("cat", "--", PID_FILE): fx("service_status", "cat-pid-upstream-down.txt"),
        ("ps", "-p", "20168", "-o", "pid,stat,args"): result(fx("service_status", "ps-p-upstream-down.txt"),
                                                             exit_status=1),
    }, facts=FACTS)
    down = [f for f in findings if f.kind == "process.not_running"]
    assert len(down) == 1
    assert down[0].summary == f"gunicorn (pid 20168 from {PID_FILE}) is not running"
    assert down[0].data["pid"] == 20168 and "20168" in down[0].evidence
    assert "gunicorn" not in next(f for f in findings if f.kind == "process.running").data["programs"]


def test_a_missing_pid_file_means_not_running_when_no_process_mentions_it() -> None:
    missing = f"cat: {PID_FILE}: No such file or directory\n"
    findings = drive(ServiceStatus, None, {
        PROBE: "",
        PS_TABLE: fx("service_status", "ps-upstream-down.txt"),
        ("cat", "--", PID_FILE): result(stderr=missing, exit_status=1),
    }, facts=FACTS)
    down = next(f for f in findings if f.kind == "process.not_running")
    assert down.summary.startswith(f"gunicorn is not running: its pid file {PID_FILE} is missing")
    assert down.evidence == (missing.strip(),)


def test_worker_saturation_shows_the_stopped_gunicorn_workers() -> None:
    findings = drive(ServiceStatus, None, {PROBE: "", PS_TABLE: fx("service_status", "ps-worker-saturation.txt")})
    stopped = next(f for f in findings if f.kind == "process.stopped")
    assert stopped.data == {"program": "gunicorn", "count": 2}
    assert all(" T " in line for line in stopped.evidence)


def test_systemd_units_are_asked_with_is_active_then_status_for_those_not_active() -> None:
    status = fx("service_status", "systemctl-status-failed.txt")
    findings = drive(ServiceStatus, {"units": ["gunicorn", "nginx"]}, {
        PROBE: "init=systemd\n",
        ("systemctl", "is-active", "--", "gunicorn", "nginx"): result("failed\nactive\n", exit_status=3),
        ("systemctl", "status", "--no-pager", "--full", "-n", "20", "--", "gunicorn"): result(status, exit_status=3),
    })
    kinds = {f.kind for f in findings}
    assert "systemd.unit_failed" in kinds and "systemd.unit_active" in kinds


def test_without_systemd_and_facts_only_the_process_table_is_read() -> None:
    findings = drive(ServiceStatus, None, {PROBE: "", PS_TABLE: fx("service_status", "ps-healthy.txt")})
    assert [f.kind for f in findings] == ["process.running"]


def test_pm2_and_supervisor_are_asked_when_installed() -> None:
    findings = drive(ServiceStatus, None, {
        PROBE: "init=systemd\nhas=pm2\nhas=supervisorctl\n",
        ("systemctl", "list-units", "--failed", "--no-legend", "--plain", "--no-pager"): "",
        ("supervisorctl", "status"): result(fx("service_status", "supervisorctl-status.txt"), exit_status=3),
        ("pm2", "jlist"): fx("service_status", "pm2-jlist.json"),
    })
    kinds = {f.kind: f for f in findings}
    assert kinds["pm2.app_errored"].summary == "pm2 app worker is waiting restart, 2 restarts"
    assert kinds["supervisor.fatal"].data["program"] == "crasher"


def test_unit_names_and_pid_file_facts_are_validated_before_anything_runs() -> None:
    for bad in (["$(id)"], ["a;b"], ["`id`"], ["x\ny"], ["-H"], ["a b"]):
        with pytest.raises(ValidationError):
            drive(ServiceStatus, {"units": bad}, {})
    findings = drive(ServiceStatus, None, {PROBE: "", PS_TABLE: ""},
                     facts={"app_pid_file": "run/x.pid; rm -rf /", "units": "ok,$(id)"})
    assert sum(f.kind == "runbook.bad_fact" for f in findings) == 2


def test_a_hostile_pid_file_path_is_passed_as_one_argument() -> None:
    path = "/tmp/$(touch x)`id`;\"'.pid"
    findings = drive(ServiceStatus, None, {
        PROBE: "", PS_TABLE: "", ("cat", "--", path): result(stderr=f"cat: {path}: No such file or directory",
                                                              exit_status=1),
    }, facts={"app_pid_file": path})
    # drive() matched the argv exactly: the path reached cat as one argument, unparsed.
    assert "runbook.bad_fact" not in {f.kind for f in findings}


def test_process_names_come_from_the_executable_not_from_arguments() -> None:
    assert program_of("/venv/bin/python3 /venv/bin/gunicorn --bind unix:/run/g.sock app:app") == "gunicorn"
    assert program_of("bash -c tail -n 100 -- /var/log/gunicorn.log") is None
    assert program_of("nginx: worker process") == "nginx"
    assert program_of("[kworker/0:1-events]") is None


def test_readers_read_the_same_outputs_pasted_into_explain() -> None:
    text = (f"### $ cat {PID_FILE}\n{fx('service_status', 'cat-pid-upstream-down.txt')}"
            f"### $ ps -p 20168 -o pid,stat,args\n{fx('service_status', 'ps-p-upstream-down.txt')}")
    assert "process.not_running" in {f.kind for f in read(text, [ProcessTable])}
    assert {f.kind for f in read(fx("service_status", "supervisorctl-status.txt"), [SupervisorStatus])} >= {
        "supervisor.fatal"}
    assert "pm2.app_errored" in {f.kind for f in read(fx("service_status", "pm2-jlist.json"), [Pm2List])}


def test_near_misses_a_running_app_is_not_reported_down() -> None:
    healthy = f"### $ cat -- {PID_FILE}\n{fx('service_status', 'cat-pid-healthy.txt')}" \
              f"### $ ps -p 20168 -o pid,stat,args\n{fx('service_status', 'ps-p-healthy.txt')}"
    assert {f.kind for f in read(healthy, [ProcessTable])} == {"process.alive", "process.running"}
    running_only = "\n".join(line for line in fx("service_status", "supervisorctl-status.txt").splitlines()
                             if "RUNNING" in line)
    assert [f.kind for f in read(running_only, [SupervisorStatus])] == ["supervisor.running"]
    online = fx("service_status", "pm2-jlist.json").replace('"status":"waiting restart"', '"status":"online"')
    assert [f.kind for f in read(online, [Pm2List])] == ["pm2.running"]


def test_the_new_readers_load_in_the_registry() -> None:
    from bot.evidence.registry import load

    registry = load()
    names = {cls.name for cls in registry.readers}
    assert {"process.table", "supervisor.status", "pm2.list", "sockets.listeners", "load.pressure",
            "changes.process_starts", "changes.units", "changes.files", "changes.packages"} <= names
    assert not [k for k in registry.broken if any(m in k for m in ("processes", "listeners", "pressure", "changes"))]
