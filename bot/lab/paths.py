"""Where every file of the lab lives: one place, so the components, the status and the tests agree.

Layout of a lab directory::

    state.json                 pids, ports, current scenario (the lab's own bookkeeping)
    incident-bot.yaml          a config for `incident-bot diagnose lab` (DESIGN §4.5)
    ssh_config                 `Host lab` for ssh -F and `diagnose --ssh-config`
    sshd_config  authorized_keys  known_hosts
    keys/                      ssh_host_ed25519_key(.pub), id_ed25519(.pub) (the bot's key)
    nginx/nginx.conf           nginx prefix: nginx.conf, ratelimit.conf (toggled), html/, tmp/
    run/                       pid files, gunicorn.sock; run/postgresql/ holds PostgreSQL's socket
    logs/                      nginx/error.log, nginx/access.log, gunicorn.log, postgresql.log, sshd.log
    pg/                        the throwaway PostgreSQL cluster
    data/                      the app's data dir: a 2 MB tmpfs when root
    app.flag                   the app's misbehaviour for the current scenario (read per request)
    maintenance.flag           present = nginx answers 503 with the maintenance page
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "INCIDENT_BOT_LAB_DIR"


def default_lab_dir() -> Path:
    """``$INCIDENT_BOT_LAB_DIR``, else ``~/.cache/incident-bot/lab``.

    As root, the workers that must reach the lab (nginx as ``nobody``, PostgreSQL as ``postgres``)
    cannot pass a private home (``/root`` is 0700), so root's default is ``/var/tmp/incident-bot/lab``
    when the home directory is not searchable by others.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser().absolute()
    home = Path.home()
    if os.geteuid() == 0 and not os.stat(home).st_mode & 0o001:
        return Path("/var/tmp/incident-bot/lab")
    return home / ".cache" / "incident-bot" / "lab"


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def config(self) -> Path:
        return self.root / "incident-bot.yaml"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def host_key(self) -> Path:
        return self.keys / "ssh_host_ed25519_key"

    @property
    def user_key(self) -> Path:
        return self.keys / "id_ed25519"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.nginx / "nginx.conf"

    @property
    def nginx_ratelimit(self) -> Path:
        return self.nginx / "ratelimit.conf"

    @property
    def html(self) -> Path:
        return self.nginx / "html"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pg_socket_dir(self) -> Path:
        return self.run / "postgresql"

    @property
    def gunicorn_socket(self) -> Path:
        return self.run / "gunicorn.sock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nginx_error_log(self) -> Path:
        return self.logs / "nginx" / "error.log"

    @property
    def nginx_access_log(self) -> Path:
        return self.logs / "nginx" / "access.log"

    @property
    def gunicorn_log(self) -> Path:
        return self.logs / "gunicorn.log"

    @property
    def postgresql_log(self) -> Path:
        return self.logs / "postgresql.log"

    @property
    def sshd_log(self) -> Path:
        return self.logs / "sshd.log"

    @property
    def helper_log(self) -> Path:
        return self.logs / "helpers.log"

    @property
    def pg_data(self) -> Path:
        return self.root / "pg"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def app_flag(self) -> Path:
        return self.root / "app.flag"

    @property
    def maintenance_flag(self) -> Path:
        return self.root / "maintenance.flag"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log_files(self) -> dict[str, Path]:
        """The logs a person (or a runbook) reads, by name."""
        return {
            "nginx_error": self.nginx_error_log,
            "nginx_access": self.nginx_access_log,
            "gunicorn": self.gunicorn_log,
            "postgresql": self.postgresql_log,
            "sshd": self.sshd_log,
        }
