"""The fault lab: real sshd, nginx, gunicorn and PostgreSQL on 127.0.0.1, and the moves that break them.

``Lab(dir).up()`` starts everything and checks the whole hop chain answers 200; ``break_(name)``
reproduces one scenario of :data:`bot.lab.scenarios.SCENARIOS` for real; ``repair()`` undoes it and
waits for 200 again; ``down()`` stops every process by pid and process group and unmounts the tmpfs,
keeping the logs (``purge=True`` removes the directory). Every method works from a fresh process: what
``up`` started is found again through ``<lab>/state.json``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bot.lab import app_server, nginx, postgres, sshd
from bot.lab import state as state_file
from bot.lab.errors import LabError, LabNotRunning, ScenarioUnavailable, UnknownScenario
from bot.lab.paths import LabPaths, default_lab_dir
from bot.lab.process import (
    free_port,
    is_root,
    pid_alive,
    processes_mentioning,
    run,
    spawn_detached,
    terminate,
    wait_until,
)
from bot.lab.scenarios import SCENARIOS, Scenario
from bot.lab.state import LabState
from bot.lab.status import LabStatus, config_yaml, ssh_config

TMPFS_SIZE = "2m"
HOLDER = "holder"
PROCESSES = ("sshd", "nginx", "gunicorn", "postgres")
OUR_PROGRAMS = ("bot.lab.", "sshd", "nginx", "postgres", "gunicorn")


def probe(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``; the status, headers and body, whatever the status."""
    request = urllib.request.Request(url, headers={"User-Agent": "incident-bot-lab"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), dict(exc.headers.items()), exc.read()


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return any(line.split()[1] == target for line in mounts if len(line.split()) > 1)


class Lab:
    """One lab directory and what runs from it."""

    def __init__(self, lab_dir: Path | None = None) -> None:
        self.paths = LabPaths((lab_dir or default_lab_dir()).absolute())
        self._state: LabState | None = state_file.load(self.paths.state)

    # ---- bookkeeping -------------------------------------------------------------------------------

    @property
    def state(self) -> LabState:
        if self._state is None or not self._state.running:
            raise LabNotRunning(str(self.paths.root))
        return self._state

    def _save(self) -> None:
        if self._state is not None:
            state_file.save(self.paths.state, self._state)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state.ports['http']}/"

    def alive(self) -> dict[str, bool]:
        pids = self._state.pids if self._state else {}
        names = [*PROCESSES, HOLDER] if HOLDER in pids else list(PROCESSES)
        return {name: pid_alive(pids.get(name)) for name in names}

    # ---- up ------------------------------------------------------------------------------------------

    def up(self) -> LabStatus:
        """Start the lab (a no-op when it already runs whole); on any failure nothing is left running."""
        if self._state is not None and self._state.running:
            if all(self.alive().values()):
                return self.status()
            self.down()
        self._prepare_dir()
        user = pwd.getpwuid(os.geteuid()).pw_name
        self._state = LabState(user=user, root=is_root(), started_at=datetime.now(UTC).isoformat(), running=True,
                               ports={"ssh": 0, "http": 0, "postgres": 0})
        self._save()
        try:
            self._start_all()
        except BaseException:
            with contextlib.suppress(LabError):  # the start failure is the error worth reporting
                self.down()
            raise
        return self.status()

    def _prepare_dir(self) -> None:
        root = self.paths.root
        if root.exists() and any(root.iterdir()) and not self.paths.state.exists():
            raise LabError(f"{root} is not empty and is not a lab directory; choose another INCIDENT_BOT_LAB_DIR")
        if _mounted(self.paths.data):
            subprocess.run(["umount", str(self.paths.data)], check=False, capture_output=True)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        root.chmod(0o755)
        if is_root():
            blocked = [p for p in root.parents if not os.stat(p).st_mode & 0o001]
            if blocked:
                raise LabError(f"{blocked[0]} is not searchable by other users, so nginx (nobody) and PostgreSQL "
                               f"(postgres) cannot reach {root}; set INCIDENT_BOT_LAB_DIR under /var/tmp or /tmp")
        for directory in (self.paths.logs, self.paths.nginx_error_log.parent, self.paths.run, self.paths.data):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)

    def _start_all(self) -> None:
        st = self.state
        used: set[int] = set()
        for name in ("ssh", "http", "postgres"):
            port = _fresh_port(used)
            st.ports[name] = port
        if is_root():
            run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(self.paths.data)])
            st.tmpfs = True
        self._save()
        postgres.init(self.paths, st.ports["postgres"])
        st.pids["postgres"] = postgres.start(self.paths)
        self._save()
        self.start_app_server()
        st.pids["nginx"] = nginx.start(self.paths, st.ports["http"])
        self._save()
        st.pids["sshd"] = sshd.start(self.paths, st.ports["ssh"], st.user)
        self._save()
        self.paths.config.write_text(config_yaml(self.paths, user=st.user, ssh_port=st.ports["ssh"],
                                                 http_port=st.ports["http"], pg_port=st.ports["postgres"]))
        self.paths.ssh_config.write_text(ssh_config(self.paths, user=st.user, ssh_port=st.ports["ssh"]))
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until the site answers 200 through the whole chain (nginx, gunicorn, PostgreSQL, disk)."""
        last: list[str] = []

        def ok() -> bool:
            try:
                code, _, _ = probe(self.url, timeout=5)
            except OSError as exc:
                last[:] = [str(exc)]
                return False
            last[:] = [str(code)]
            return code == 200

        try:
            wait_until(ok, timeout=timeout, what=f"{self.url} to answer 200", interval=0.2)
        except LabError as exc:
            raise LabError(f"{exc.user_message()} (last answer: {last[0] if last else 'none'})") from None

    # ---- scenarios -----------------------------------------------------------------------------------

    def break_(self, name: str) -> Scenario:
        """Reproduce scenario ``name`` for real (repairing the one in force first)."""
        scenario = SCENARIOS.get(name)
        if scenario is None:
            raise UnknownScenario(name, SCENARIOS)
        st = self.state
        if scenario.needs_root and not st.tmpfs:
            raise ScenarioUnavailable(name, "it needs root to mount a small tmpfs for the app's data")
        if st.scenario:
            self.repair()
        scenario.breaks(self)
        st.scenario = name
        self._save()
        return scenario

    def repair(self) -> str | None:
        """Undo the scenario in force and wait for the site to answer 200; returns its name."""
        st = self.state
        name = st.scenario
        if name is None:
            return None
        SCENARIOS[name].repairs(self)
        st.scenario = None
        self._save()
        self.wait_healthy()
        return name

    # ---- the moves (bot.lab.scenarios.Controls) ---------------------------------------------------------

    def rotate_logs(self) -> None:
        """Empty every log in place, as logrotate's ``copytruncate`` does: the servers keep writing
        (they append), and what a diagnosis reads afterwards is only what happened since."""
        for path in self.paths.log_files().values():
            if path.exists():
                with path.open("r+b") as handle:
                    handle.truncate(0)

    def set_app_flag(self, flag: str | None) -> None:
        if flag is None:
            self.paths.app_flag.unlink(missing_ok=True)
        else:
            self.paths.app_flag.write_text(flag + "\n")

    def stop_app_server(self) -> None:
        app_server.stop(self.state.pids.pop("gunicorn", None))
        self._save()

    def kill_app_server(self) -> None:
        app_server.kill(self.state.pids.pop("gunicorn", None))
        self._save()

    def start_app_server(self) -> None:
        self.state.pids["gunicorn"] = app_server.start(self.paths, postgres.conninfo(self.state.ports["postgres"]))
        self._save()

    def stop_database(self) -> None:
        postgres.stop(self.paths)
        self.state.pids.pop("postgres", None)
        self._save()

    def start_database(self) -> None:
        self.state.pids["postgres"] = postgres.start(self.paths)
        self._save()

    def _start_holder(self, kind: str, target: str, expect: str) -> None:
        ready = self.paths.run / "holder.ready"
        ready.unlink(missing_ok=True)
        pid = spawn_detached([sys.executable, "-m", "bot.lab.holder", kind, target, str(ready)],
                             log=self.paths.helper_log, cwd=self.paths.root,
                             env=app_server.environment(self.paths, postgres.conninfo(self.state.ports["postgres"])))
        self.state.pids[HOLDER] = pid
        self._save()
        wait_until(lambda: ready.exists() or not pid_alive(pid), timeout=20, what=f"the {kind} connection holder")
        report = ready.read_text().strip() if ready.exists() else "the helper died"
        if expect not in report:
            raise LabError(f"the {kind} connection holder did not fill the queue: {report}; "
                           f"see {self.paths.helper_log}")

    def _stop_holder(self) -> None:
        terminate(self.state.pids.pop(HOLDER, None))
        self._save()

    def exhaust_database(self) -> None:
        self._start_holder("postgres", postgres.conninfo(self.state.ports["postgres"]), "too many clients")

    def release_database(self) -> None:
        self._stop_holder()

    def fill_disk(self) -> None:
        """Write a ballast file until the tmpfs refuses even one byte."""
        fd = os.open(self.paths.data / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (1 << 20, 1 << 16, 4096, 512, 64, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        written = os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    if written < size:
                        break
        finally:
            os.close(fd)

    def free_disk(self) -> None:
        (self.paths.data / "ballast").unlink(missing_ok=True)

    def set_rate_limit(self, on: bool) -> None:
        nginx.set_rate_limit(self.paths, self.state.pids["nginx"], on)

    def set_maintenance(self, on: bool) -> None:
        if on:
            self.paths.maintenance_flag.write_text(f"maintenance since {datetime.now(UTC).isoformat()}\n")
            self.paths.maintenance_flag.chmod(0o644)
        else:
            self.paths.maintenance_flag.unlink(missing_ok=True)

    def lock_app_socket(self) -> None:
        sock = self.paths.gunicorn_socket
        self.state.socket_mode = sock.stat().st_mode & 0o7777
        # Root's nginx workers run as nobody: 600 shuts them out. Unprivileged, they are us: 000 does.
        sock.chmod(0o600 if is_root() else 0o000)
        self._save()

    def unlock_app_socket(self) -> None:
        mode = self.state.socket_mode
        self.paths.gunicorn_socket.chmod(0o777 if mode is None else mode)
        self.state.socket_mode = None
        self._save()

    def saturate_workers(self) -> None:
        master = self.state.pids.get("gunicorn")
        if not pid_alive(master):
            raise LabError("gunicorn is not running")
        assert master is not None
        self.state.stopped_workers = app_server.stop_workers(master)
        self._save()
        self._start_holder("socket", str(self.paths.gunicorn_socket), "EAGAIN")

    def release_workers(self) -> None:
        self._stop_holder()
        app_server.continue_workers(self.state.stopped_workers)
        self.state.stopped_workers = []
        self._save()

    # ---- down and status -------------------------------------------------------------------------------

    def down(self, *, purge: bool = False) -> None:
        """Stop everything the lab started, by pid and process group; unmount the tmpfs. Idempotent."""
        st = self._state
        errors: list[str] = []
        if st is not None:
            app_server.continue_workers(st.stopped_workers)
            for name in (HOLDER, "sshd", "nginx", "gunicorn"):
                try:
                    terminate(st.pids.get(name))
                except LabError as exc:
                    errors.append(exc.user_message())
            try:
                postgres.stop(self.paths)
            except LabError as exc:
                errors.append(exc.user_message())
        # Safety net for what the pids missed (a crashed `up`, a lost state file): our own programs only,
        # never e.g. a person's `tail -f` of a lab log.
        for pid, line in processes_mentioning(str(self.paths.root) + "/"):
            if any(marker in line for marker in OUR_PROGRAMS):
                terminate(pid)
        if _mounted(self.paths.data):
            done = subprocess.run(["umount", str(self.paths.data)], check=False, capture_output=True, text=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.paths.data)], check=False, capture_output=True)
        if st is not None:
            st.pids.clear()
            st.stopped_workers = []
            st.scenario = None
            st.tmpfs = False
            st.running = False
            if self.paths.root.exists():
                self._save()
        if purge and self.paths.root.exists():
            shutil.rmtree(self.paths.root)
        if errors:
            raise LabError("; ".join(errors))

    def status(self) -> LabStatus:
        st = self._state
        running = st is not None and st.running
        ports = st.ports if st else {}
        return LabStatus(
            lab_dir=str(self.paths.root), running=running, scenario=st.scenario if st else None,
            user=st.user if st else pwd.getpwuid(os.geteuid()).pw_name,
            ssh_port=ports.get("ssh") if running else None,
            identity=str(self.paths.user_key), known_hosts=str(self.paths.known_hosts),
            url=f"http://127.0.0.1:{ports['http']}/" if running and ports.get("http") else None,
            config=str(self.paths.config), ssh_config=str(self.paths.ssh_config),
            processes=self.alive() if running else {},
            pids=dict(st.pids) if st and running else {},
            logs={name: str(path) for name, path in self.paths.log_files().items()},
        )


def _fresh_port(used: set[int]) -> int:
    for _ in range(50):
        port = free_port()
        if port not in used:
            used.add(port)
            return port
        time.sleep(0.01)
    raise LabError("could not find a free port on 127.0.0.1")
