"""gunicorn serving :mod:`bot.lab.app` on a unix socket in the lab directory, with two sync workers."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from gunicorn.config import KNOWN_SETTINGS  # type: ignore[import-untyped]

from bot.lab.errors import LabError
from bot.lab.paths import LabPaths
from bot.lab.process import (
    children,
    pid_alive,
    process_state,
    read_pid_file,
    signal_pid,
    spawn_detached,
    terminate,
    wait_until,
)

WORKERS = 2
BACKLOG = 4  # small, so a few held connections fill it (worker_saturation)
TIMEOUT = 60  # gunicorn's worker timeout: a stopped worker is killed (WORKER TIMEOUT) after this
APP = "bot.lab.app:application"


def command(paths: LabPaths) -> list[str]:
    return [
        *_gunicorn(),
        "--bind", f"unix:{paths.gunicorn_socket}",
        "--workers", str(WORKERS),
        "--worker-class", "sync",
        "--backlog", str(BACKLOG),
        "--timeout", str(TIMEOUT),
        "--graceful-timeout", "5",
        "--pid", str(paths.pid_file("gunicorn")),
        "--error-logfile", str(paths.gunicorn_log),
        "--log-level", "info",
        "--capture-output",
        "--chdir", str(paths.root),
        *_control_socket(paths),
        APP,
    ]


def _gunicorn() -> list[str]:
    """The ``gunicorn`` script beside our interpreter, so the process is named gunicorn (``ps``, ``ss -p``)."""
    script = Path(sys.executable).parent / "gunicorn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gunicorn"]


def _control_socket(paths: LabPaths) -> list[str]:
    """Recent gunicorn opens a control socket, by default in ``~/.gunicorn``: keep it in the lab."""
    if any(setting.name == "control_socket" for setting in KNOWN_SETTINGS):
        return ["--control-socket", str(paths.run / "gunicorn.ctl")]
    return []


def environment(paths: LabPaths, pg_conninfo: str) -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env["INCIDENT_BOT_LAB_DIR"] = str(paths.root)
    env["INCIDENT_BOT_LAB_PG"] = pg_conninfo
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(paths: LabPaths, pg_conninfo: str) -> int:
    """Start gunicorn detached; return the master's pid once its workers are up and the socket exists."""
    paths.pid_file("gunicorn").unlink(missing_ok=True)
    pid = spawn_detached(command(paths), log=paths.gunicorn_log, cwd=paths.root,
                         env=environment(paths, pg_conninfo))

    def ready() -> bool:
        if not pid_alive(pid):
            raise LabError(f"gunicorn exited at start; see {paths.gunicorn_log}")
        return paths.gunicorn_socket.is_socket() and len(children(pid)) >= WORKERS

    try:
        wait_until(ready, timeout=20, what="gunicorn and its workers")
    except LabError:
        terminate(pid)
        raise
    return pid


def stop(pid: int | None) -> None:
    """Graceful stop (SIGTERM): gunicorn removes its socket, as it does on ``systemctl stop``."""
    terminate(pid, timeout=10)


def kill(pid: int | None) -> None:
    """SIGKILL the master and its workers, as the OOM killer or a crash would: nothing cleans up, so the
    unix socket file stays behind with no listener and connecting to it is refused (ECONNREFUSED)."""
    terminate(pid, timeout=10, sig=signal.SIGKILL)


def master_pid(paths: LabPaths) -> int | None:
    pid = read_pid_file(paths.pid_file("gunicorn"))
    return pid if pid_alive(pid) else None


def stop_workers(master: int) -> list[int]:
    """SIGSTOP every worker: they hold their slot but accept nothing more. Returns the workers stopped."""
    workers = children(master)
    for worker in workers:
        signal_pid(worker, signal.SIGSTOP)
    wait_until(lambda: all(process_state(w) in ("T", "t", None) for w in workers), timeout=5,
               what="the gunicorn workers to stop")
    return workers


def continue_workers(workers: list[int]) -> None:
    for worker in workers:
        signal_pid(worker, signal.SIGCONT)
