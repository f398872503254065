"""The datastore runbooks over real SSH: PostgreSQL in the fault lab, MariaDB and Redis on loopback.

One lab serves the module (a fresh directory under /tmp, as tests/lab does) and always goes ``down``.
The postgres runbook runs through ``run_diagnose`` with the lab's own ``incident-bot.yaml`` (sshd on
127.0.0.1 with its generated key and known_hosts; the lab user is root, the cluster trusts loopback,
so psql runs as the SSH user with ``-U postgres`` after the adapter refuses sudo): healthy, then
``db_connections_exhausted``, then ``db_down``, each repaired. The lab has no MySQL or Redis, so the
module starts ``mariadbd`` and ``redis-server`` on 127.0.0.1 in a temp directory (the same machine
as the lab's sshd) and runs the mysql and redis runbooks against them over the same SSH target, with
a copy of the config whose facts point at them; then it stops each server and runs them again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from bot.core.models import Diagnosis
from bot.lab import Lab, probe
from bot.lab import postgres as lab_postgres
from tests.labfixture import missing, run_runbooks, running_lab

NEEDED = ("/usr/sbin/sshd", "/usr/sbin/nginx", "ssh-keygen", "mariadbd", "mariadb-install-db", "redis-server")


pytestmark = pytest.mark.usefixtures("audit_in_tmp")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if missing(NEEDED):
        pytest.fail(f"the datastore live tests need {', '.join(missing(NEEDED))}: run ./dev setup")
    with running_lab("ibl-ds-") as the_lab:
        yield the_lab


def _diagnose(config: Path, runbooks: tuple[str, ...]) -> Diagnosis:
    return run_runbooks(config, runbooks, status=500)


def _kinds(diagnosis: Diagnosis, runbook: str) -> set[str]:
    return {f.kind for f in diagnosis.findings if f.runbook == runbook}


def _evidence(diagnosis: Diagnosis, kind: str) -> list[str]:
    return [line for f in diagnosis.findings if f.kind == kind for line in f.evidence]


def test_postgres_healthy_exhausted_down_over_ssh(lab: Lab) -> None:
    """Healthy: ready and a connection count. Exhausted: psql and the log say ``too many clients``.
    Down: pg_isready no response, the log shows the shutdown. Each names its cause first."""
    healthy = _diagnose(lab.paths.config, ("postgres",))
    assert _kinds(healthy, "postgres") == {"postgres.ready", "postgres.connections"}, healthy.findings
    count = next(f for f in healthy.findings if f.kind == "postgres.connections")
    assert count.data["max_connections"] == lab_postgres.MAX_CONNECTIONS

    lab.break_("db_connections_exhausted")
    try:
        assert probe(lab.url)[0] == 500
        exhausted = _diagnose(lab.paths.config, ("postgres",))
    finally:
        lab.repair()
    assert "postgres.too_many_clients" in _kinds(exhausted, "postgres"), exhausted.findings
    assert any("sorry, too many clients already" in line for line in _evidence(exhausted, "postgres.too_many_clients"))
    assert exhausted.causes[0].id == "db_connections_exhausted"

    lab.break_("db_down")
    try:
        assert probe(lab.url)[0] == 500
        down = _diagnose(lab.paths.config, ("postgres",))
    finally:
        lab.repair()
    assert {"postgres.no_response", "postgres.server_stopped"} <= _kinds(down, "postgres"), down.findings
    assert not any("psql" in f.summary for f in down.findings if f.kind == "runbook.command_failed")
    assert any("database system is shut down" in line for line in _evidence(down, "postgres.server_stopped"))
    assert down.causes[0].id == "db_down"

    assert "postgres.ready" in _kinds(_diagnose(lab.paths.config, ("postgres",)), "postgres")


# -- MariaDB and Redis on loopback, reached through the lab's sshd --------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come up in {timeout:g} s")


def _answers(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10).returncode == 0


class _Servers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mysql_port = _free_port()
        self.redis_port = _free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        data = self.root / "mysql"
        subprocess.run(
            ["mariadb-install-db", f"--datadir={data}", "--user=root", "--auth-root-authentication-method=normal"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        self.procs["mysql"] = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={self.root / 'mysql.sock'}",
             f"--port={self.mysql_port}", "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
             f"--log-error={self.root / 'mysql.err'}", f"--pid-file={self.root / 'mysql.pid'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.procs["redis"] = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.root), "--logfile", str(self.root / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        _wait(lambda: _answers("redis-cli", "-p", str(self.redis_port), "ping"), "redis-server")
        _wait(
            lambda: _answers("mysqladmin", "--host=127.0.0.1", f"--port={self.mysql_port}", "--protocol=tcp", "ping"),
            "mariadbd",
        )

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def servers(lab: Lab) -> Iterator[tuple[_Servers, Path]]:
    root = Path(tempfile.mkdtemp(prefix="ibl-ds-srv-", dir="/tmp"))
    running = _Servers(root)
    try:
        running.start()
        document = yaml.safe_load(lab.paths.config.read_text())
        document["hosts"]["lab"]["facts"].update(
            {"mysql_host": "127.0.0.1", "mysql_port": running.mysql_port,
             "redis_host": "127.0.0.1", "redis_port": running.redis_port}
        )  # fmt: skip
        config = root / "incident-bot.yaml"
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        yield running, config
    finally:
        for name in list(running.procs):
            running.stop(name)
        shutil.rmtree(root, ignore_errors=True)


def test_mysql_and_redis_over_ssh_alive_then_down(servers: tuple[_Servers, Path]) -> None:
    """Alive: mysqld is alive with its connection count, Redis PONG with a healthy INFO. Stopped:
    mysqladmin cannot connect and redis-cli is refused, both db_down."""
    running, config = servers
    alive = _diagnose(config, ("mysql", "redis"))
    assert _kinds(alive, "mysql") == {"mysql.alive", "mysql.connections"}, alive.findings
    assert _kinds(alive, "redis") == {"redis.pong", "redis.healthy"}, alive.findings

    running.stop("redis")
    running.stop("mysql")
    down = _diagnose(config, ("mysql", "redis"))
    assert _kinds(down, "mysql") == {"mysql.ping_failed"}, down.findings
    assert _kinds(down, "redis") == {"redis.connect_refused"}, down.findings
    assert any(f"127.0.0.1:{running.redis_port}: Connection refused" in line
               for line in _evidence(down, "redis.connect_refused"))  # fmt: skip
    assert down.causes[0].id == "db_down"
