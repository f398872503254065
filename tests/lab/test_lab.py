"""The fault lab against the real programs: every scenario breaks the site for real (the status nginx
answers and the signature line in the right log), repairs back to 200, and ``down`` leaves nothing.

One lab serves the module; its fixture always runs ``down``, whatever the tests did. With
``INCIDENT_BOT_LAB_CAPTURE=1`` the scenario tests also write what each break produced to
``tests/fixtures/lab/<scenario>/`` (see ``tests/fixtures/lab/SOURCES.md``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.lab import SCENARIOS, Lab, LabNotRunning, UnknownScenario, probe
from bot.lab import postgres as lab_postgres
from bot.lab.process import process_state, processes_mentioning
from tests.labfixture import new_lab_dir, running_lab

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lab"
CAPTURE = os.environ.get("INCIDENT_BOT_LAB_CAPTURE") == "1"

# More lines each scenario must leave, beyond the scenario table's own signature: (log, fragment).
ALSO: dict[str, list[tuple[str, str]]] = {
    "upstream_down": [("nginx_error", "connect() to unix:")],
    "upstream_crashed": [("gunicorn", "exited with code 1")],
    "upstream_timeout": [("nginx_access", "upstream_status=504")],
    "app_exception": [("gunicorn", "Error handling request GET /"), ("nginx_access", "upstream_status=500")],
    "upstream_bad_response": [("nginx_access", " 502 ")],
    "db_down": [("postgresql", "database system is shut down"), ("gunicorn", "psycopg.OperationalError")],
    "db_connections_exhausted": [("postgresql", "FATAL:  sorry, too many clients already")],
    "disk_full": [("gunicorn", "No space left on device")],
    "rate_limited": [("nginx_error", 'by zone "lab_rate"'), ("nginx_access", "upstream_status=-")],
    "maintenance_mode": [("nginx_access", "upstream_status=-")],
    "permission_denied": [("nginx_error", "connect() to unix:")],
    "worker_saturation": [("nginx_access", " 502 ")],
}

FIXTURE_NAMES = {
    "nginx_error": ("nginx-error.log", "nginx error.log"),
    "nginx_access": ("nginx-access.log", "nginx access.log"),
    "gunicorn": ("gunicorn.log", "gunicorn error log"),
    "postgresql": ("postgresql.log", "postgresql.log"),
}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as the_lab:
        yield the_lab


def curl(url: str) -> tuple[int, str, str]:
    """A real ``curl`` probe: the status, and the command and output as they would be pasted."""
    argv = [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "--max-time",
        "15",
        "-w",
        "code=%{http_code} time_total=%{time_total}\\n",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    last = done.stdout.strip().splitlines()[-1]
    code = int(last.split()[0].removeprefix("code="))
    shown = " ".join(f"'{a}'" if "%" in a else a for a in argv)
    return code, shown, done.stdout.replace("\r\n", "\n")


def _offsets(lab: Lab) -> dict[str, int]:
    return {name: (path.stat().st_size if path.exists() else 0) for name, path in lab.paths.log_files().items()}


def _new_text(lab: Lab, offsets: dict[str, int]) -> dict[str, str]:
    text = {}
    for name, path in lab.paths.log_files().items():
        with open(path, "rb") as handle:
            handle.seek(offsets[name])
            text[name] = handle.read().decode("utf-8", errors="replace")
    return text


def _wait_for_lines(lab: Lab, offsets: dict[str, int], wanted: list[tuple[str, str]]) -> dict[str, str]:
    """Logs are written asynchronously by other processes: poll briefly until every fragment is there."""
    deadline = time.monotonic() + 5
    while True:
        text = _new_text(lab, offsets)
        if all(fragment in text[log] for log, fragment in wanted) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def _save_fixture(name: str, status: int, curl_cmd: str, curl_out: str, text: dict[str, str]) -> None:
    out = FIXTURES / name
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        stale.unlink()
    blocks = []
    for log, (file_name, title) in FIXTURE_NAMES.items():
        if text[log].strip():
            (out / file_name).write_text(text[log])
            blocks.append(f"### {title}\n{text[log].rstrip()}\n")
    (out / "curl.txt").write_text(f"### $ {curl_cmd}\n{curl_out.rstrip()}\n")
    blocks.append(f"### $ {curl_cmd}\n{curl_out.rstrip()}\n")
    (out / "evidence.txt").write_text("\n".join(blocks))
    (out / "status.txt").write_text(f"{status}\n")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_breaks_the_site_for_real_then_repairs_to_200(lab: Lab, name: str) -> None:
    """Each break makes nginx answer the scenario's status, with its signature line in the named log."""
    scenario = SCENARIOS[name]
    if scenario.needs_root and os.geteuid() != 0:
        pytest.skip(f"{name} needs root (tmpfs)")
    assert probe(lab.url)[0] == 200
    offsets = _offsets(lab)
    lab.break_(name)
    try:
        assert lab.status().scenario == name
        # rate_limited: the first request of a burst still gets through; the next ones are refused.
        tries = 3 if name == "rate_limited" else 1
        results = [curl(lab.url) for _ in range(tries)]
        status, curl_cmd, curl_out = results[-1]
        assert status == scenario.status, curl_out
        wanted = [(scenario.log, scenario.signature), *ALSO[name]]
        text = _wait_for_lines(lab, offsets, wanted)
        for log, fragment in wanted:
            assert fragment in text[log], f"{fragment!r} not in {log}:\n{text[log]}"
        if name == "maintenance_mode":
            assert "Retry-After: 120" in curl_out
        if name == "db_down":
            assert not lab_postgres.is_ready(lab.paths, lab.state.ports["postgres"])
        if name == "worker_saturation":
            assert all(process_state(pid) in ("T", "t") for pid in lab.state.stopped_workers)
        if CAPTURE:
            shown = curl_cmd if tries == 1 else f"for i in $(seq {tries}); do {curl_cmd}; done"
            _save_fixture(name, status, shown, "".join(r[2] for r in results), text)
    finally:
        lab.repair()
    assert lab.status().scenario is None
    assert curl(lab.url)[0] == 200


def ssh(lab: Lab, key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh",
        "-i",
        str(key),
        "-o",
        f"UserKnownHostsFile={lab.paths.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=10",
        "-p",
        str(lab.state.ports["ssh"]),
        f"{lab.state.user}@127.0.0.1",
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_sshd_accepts_the_bot_key_and_checks_the_host_key(lab: Lab) -> None:
    done = ssh(lab, lab.paths.user_key, "cat", str(lab.paths.nginx_conf))
    assert done.returncode == 0, done.stderr
    assert "proxy_pass http://gunicorn;" in done.stdout
    via_config = subprocess.run(
        ["ssh", "-F", str(lab.paths.ssh_config), "lab", "true"], capture_output=True, text=True, timeout=30, check=False
    )
    assert via_config.returncode == 0, via_config.stderr


def test_sshd_rejects_another_key(lab: Lab, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    done = ssh(lab, other, "true")
    assert done.returncode == 255
    assert "Permission denied (publickey)" in done.stderr


def test_the_running_nginx_config_is_discoverable_from_the_master_process(lab: Lab) -> None:
    """What a runbook does on a host: read the master's command line, then ``nginx -T`` with it."""
    master = lab.state.pids["nginx"]
    # nginx rewrites its argv into a title: "nginx: master process /usr/sbin/nginx -p ... -c ...".
    title = Path(f"/proc/{master}/cmdline").read_bytes().decode().strip("\0")
    assert title.startswith("nginx: master process ")
    argv = title.removeprefix("nginx: master process ").split()
    assert argv[argv.index("-c") + 1] == str(lab.paths.nginx_conf)
    done = subprocess.run([argv[0], "-T", *argv[1:]], capture_output=True, text=True, timeout=30, check=True)
    assert f"error_log {lab.paths.nginx_error_log} info;" in done.stdout
    assert f"server unix:{lab.paths.gunicorn_socket}" in done.stdout
    assert "proxy_read_timeout 2s;" in done.stdout


def test_status_and_client_files_say_how_to_reach_the_lab(lab: Lab) -> None:
    status = lab.status()
    ports = lab.state.ports
    assert status.running and all(status.processes.values())
    assert status.ssh_target == f"{lab.state.user}@127.0.0.1:{ports['ssh']}"
    assert status.diagnose_args[:5] == [
        status.ssh_target,
        "-i",
        str(lab.paths.user_key),
        "--known-hosts",
        str(lab.paths.known_hosts),
    ]
    assert f"diagnose: incident-bot diagnose {status.ssh_target} -i " in status.render()
    config = yaml.safe_load(lab.paths.config.read_text())
    host = config["hosts"]["lab"]
    assert (host["address"], host["port"], host["user"]) == ("127.0.0.1", ports["ssh"], lab.state.user)
    assert host["roles"] == ["proxy", "app", "db"]
    assert host["facts"]["nginx_error_log"] == str(lab.paths.nginx_error_log)
    assert config["services"]["lab"] == {
        "match": {"labels": {"service": "lab"}, "url_host": f"127.0.0.1:{ports['http']}"},
        "hosts": ["lab"],
        "url": f"http://127.0.0.1:{ports['http']}/",
    }
    assert f"Port {ports['ssh']}" in lab.paths.ssh_config.read_text()


def test_cli_lab_status_json_and_unknown_scenario_exit_2(lab: Lab) -> None:
    env = {**os.environ, "INCIDENT_BOT_LAB_DIR": str(lab.paths.root)}
    status = subprocess.run(
        [sys.executable, "-m", "bot", "lab", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["ssh_target"] == lab.status().ssh_target
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "lab", "break", "no_such_fault"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "unknown scenario 'no_such_fault'; valid scenarios: app_exception," in bad.stderr
    with pytest.raises(UnknownScenario):
        lab.break_("no_such_fault")


def test_down_leaves_no_process_and_no_mount_even_mid_scenario() -> None:
    """A second lab, taken down while workers are stopped and a helper holds the backlog."""
    lab_dir = new_lab_dir()
    lab = Lab(lab_dir)
    try:
        lab.up()
        pids = dict(lab.state.pids)
        lab.break_("worker_saturation")
        pids.update(lab.state.pids)
        lab.down()
        lab.down()  # idempotent
        assert processes_mentioning(str(lab_dir)) == []
        assert all(process_state(pid) in (None, "Z") for pid in pids.values())
        assert str(lab_dir) not in Path("/proc/self/mounts").read_text()
        assert lab_dir.joinpath("logs", "nginx", "error.log").exists()  # what a person reads is kept
        assert not lab.status().running
        with pytest.raises(LabNotRunning):
            lab.break_("db_down")
        assert Lab(lab_dir).status().processes == {}
    finally:
        lab.down(purge=True)
        shutil.rmtree(lab_dir.parent, ignore_errors=True)
    assert not lab_dir.exists()


def test_a_failed_up_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd refuses its config (a real ``sshd -t`` failure) after PostgreSQL, gunicorn and nginx are up."""
    from bot.lab import LabError, sshd

    real = sshd.sshd_config
    monkeypatch.setattr(sshd, "sshd_config", lambda *a: real(*a) + "NoSuchOption yes\n")
    lab_dir = new_lab_dir()
    lab = Lab(lab_dir)
    try:
        with pytest.raises(LabError, match=r"sshd failed: .*bad configuration option"):
            lab.up()
        assert processes_mentioning(str(lab_dir)) == []
        assert str(lab_dir) not in Path("/proc/self/mounts").read_text()
        assert not lab.status().running
    finally:
        lab.down(purge=True)
        shutil.rmtree(lab_dir.parent, ignore_errors=True)
