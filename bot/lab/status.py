"""What ``lab status`` reports, and the client files a running lab leaves for the bot:
``<lab>/incident-bot.yaml`` (DESIGN §4.5) and ``<lab>/ssh_config`` (``Host lab``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from bot.lab.paths import LabPaths


@dataclass(frozen=True)
class LabStatus:
    lab_dir: str
    running: bool
    scenario: str | None
    user: str
    ssh_port: int | None
    identity: str
    known_hosts: str
    url: str | None
    config: str
    ssh_config: str
    processes: dict[str, bool] = field(default_factory=dict)  # name -> alive
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def ssh_target(self) -> str | None:
        return f"{self.user}@127.0.0.1:{self.ssh_port}" if self.ssh_port else None

    @property
    def diagnose_args(self) -> list[str]:
        """What to pass to ``incident-bot diagnose`` to reach the lab."""
        if not self.ssh_target:
            return []
        args = [self.ssh_target, "-i", self.identity, "--known-hosts", self.known_hosts]
        return [*args, "--url", self.url] if self.url else args

    def to_json(self) -> dict[str, Any]:
        return {
            "lab_dir": self.lab_dir, "running": self.running, "scenario": self.scenario,
            "ssh_target": self.ssh_target, "identity": self.identity, "known_hosts": self.known_hosts,
            "url": self.url, "config": self.config, "ssh_config": self.ssh_config,
            "diagnose_args": self.diagnose_args, "processes": self.processes, "pids": self.pids, "logs": self.logs,
        }

    def render(self) -> str:
        lines = [f"lab: {self.lab_dir} ({'up' if self.running else 'down'})",
                 f"scenario: {self.scenario or 'none'}"]
        if self.ssh_target:
            lines += [
                f"ssh target: {self.ssh_target}",
                f"  -i {self.identity}",
                f"  --known-hosts {self.known_hosts}",
                f"diagnose: incident-bot diagnose {' '.join(self.diagnose_args)}",
                f"   or:    incident-bot diagnose lab --config {self.config}",
                f"ssh:      ssh -F {self.ssh_config} lab",
            ]
        if self.url:
            lines.append(f"site: {self.url}")
        if self.processes:
            lines.append("processes:")
            for name, alive in self.processes.items():
                pid = self.pids.get(name)
                lines.append(f"  {name:<12} {'up' if alive else 'DOWN'}" + (f" (pid {pid})" if pid else ""))
        lines.append("logs:")
        lines += [f"  {name:<12} {path}" for name, path in self.logs.items()]
        return "\n".join(lines) + "\n"


def facts(paths: LabPaths, pg_port: int) -> dict[str, str | int]:
    """Where things are on the lab host, for runbooks that do not discover them."""
    return {
        "nginx_error_log": str(paths.nginx_error_log),
        "nginx_access_log": str(paths.nginx_access_log),
        "nginx_conf": str(paths.nginx_conf),
        "app_log": str(paths.gunicorn_log),
        "app_socket": str(paths.gunicorn_socket),
        "app_pid_file": str(paths.pid_file("gunicorn")),
        "postgresql_log": str(paths.postgresql_log),
        "pg_host": "127.0.0.1",
        "pg_port": pg_port,
        "data_dir": str(paths.data),
        "maintenance_flag": str(paths.maintenance_flag),
    }


def config_yaml(paths: LabPaths, *, user: str, ssh_port: int, http_port: int, pg_port: int) -> str:
    """An incident-bot config (DESIGN §4.5) with one host ``lab`` and one service ``lab``."""
    document = {
        "ssh": {"user": user, "identity": str(paths.user_key), "known_hosts": str(paths.known_hosts),
                "connect_timeout": 5, "command_timeout": 15, "deadline": 60},
        "hosts": {"lab": {
            "address": "127.0.0.1", "port": ssh_port, "user": user, "identity": str(paths.user_key),
            "known_hosts": str(paths.known_hosts), "roles": ["proxy", "app", "db"],
            "facts": facts(paths, pg_port),
        }},
        "services": {"lab": {
            "match": {"labels": {"service": "lab"}, "url_host": f"127.0.0.1:{http_port}"},
            "hosts": ["lab"],
            "url": f"http://127.0.0.1:{http_port}/",
        }},
    }
    header = f"# incident-bot fault lab ({paths.root}); written by `incident-bot lab up`\n"
    return header + yaml.safe_dump(document, sort_keys=False)


def ssh_config(paths: LabPaths, *, user: str, ssh_port: int) -> str:
    return "\n".join([
        "# incident-bot fault lab: ssh -F <this file> lab",
        "Host lab",
        "    HostName 127.0.0.1",
        f"    Port {ssh_port}",
        f"    User {user}",
        f"    IdentityFile {paths.user_key}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {paths.known_hosts}",
        "    StrictHostKeyChecking yes",
        "    BatchMode yes",
        "",
    ])
