"""A throwaway PostgreSQL cluster: ``initdb`` into ``<lab>/pg``, run as ``postgres`` when we are root."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from bot.lab.errors import LabError
from bot.lab.paths import LabPaths
from bot.lab.process import as_user, is_root, pid_alive, read_pid_file, run, terminate

MAX_CONNECTIONS = 12
SEARCH = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin",
          "/usr/lib/postgresql/14/bin", "/usr/lib/postgresql/13/bin")


def bin_dir() -> Path:
    """The directory of ``initdb``/``pg_ctl`` (Debian keeps them out of PATH)."""
    for candidate in SEARCH:
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise LabError("PostgreSQL server binaries (initdb, pg_ctl) not found (Debian: apt-get install postgresql)")


def os_user() -> str | None:
    """The user the cluster runs as: ``postgres`` when root (PostgreSQL refuses to run as root)."""
    return "postgres" if is_root() else None


def superuser() -> str:
    """The cluster's superuser role: initdb names it after the operating-system user that ran it."""
    return os_user() or pwd.getpwuid(os.geteuid()).pw_name


def conninfo(port: int) -> str:
    return f"host=127.0.0.1 port={port} user={superuser()} dbname=postgres connect_timeout=2"


def settings(paths: LabPaths, port: int) -> str:
    return "\n".join([
        "",
        "# incident-bot fault lab",
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{paths.pg_socket_dir}'",
        f"max_connections = {MAX_CONNECTIONS}",
        "shared_buffers = 16MB",
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "log_timezone = 'UTC'",
        "",
    ])


def _chown(path: Path) -> None:
    user = os_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _pg_ctl(paths: LabPaths, *args: str) -> list[str]:
    return as_user([str(bin_dir() / "pg_ctl"), "-D", str(paths.pg_data), *args], os_user())


def init(paths: LabPaths, port: int) -> None:
    """``initdb`` a fresh cluster (trust auth on loopback only) and append the lab's settings."""
    for directory in (paths.pg_data, paths.pg_socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
        _chown(directory)
    paths.pg_data.chmod(0o700)
    paths.postgresql_log.touch()
    _chown(paths.postgresql_log)
    run(as_user([str(bin_dir() / "initdb"), "-D", str(paths.pg_data), "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync", "--no-instructions"], os_user()), cwd=paths.root, timeout=120)
    conf = paths.pg_data / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as handle:
        handle.write(settings(paths, port))


def start(paths: LabPaths) -> int:
    """``pg_ctl start -w`` with the server log in ``<lab>/logs/postgresql.log``; returns the postmaster pid."""
    run(_pg_ctl(paths, "-l", str(paths.postgresql_log), "-w", "-t", "30", "start"), cwd=paths.root, timeout=60)
    pid = postmaster_pid(paths)
    if pid is None:
        raise LabError(f"PostgreSQL did not start; see {paths.postgresql_log}")
    return pid


def stop(paths: LabPaths, *, mode: str = "fast") -> None:
    """``pg_ctl stop -m fast`` (what db_down does), falling back to signals if pg_ctl cannot."""
    pid = postmaster_pid(paths)
    if pid is None:
        return
    try:
        run(_pg_ctl(paths, "-m", mode, "-w", "-t", "30", "stop"), cwd=paths.root, timeout=60)
    except LabError:
        terminate(pid)


def postmaster_pid(paths: LabPaths) -> int | None:
    pid = read_pid_file(paths.pg_data / "postmaster.pid")
    return pid if pid_alive(pid) else None


def is_ready(paths: LabPaths, port: int) -> bool:
    """``pg_isready`` over TCP, as a runbook would ask."""
    try:
        run([str(bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2"], timeout=10)
    except LabError:
        return False
    return True
